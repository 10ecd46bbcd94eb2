"""Format, size and orientation from an image's header alone: limits are enforced before any pixel is decoded.

Pillow opens lazily (it parses the header and stops), so this costs tens of microseconds for a normal photo.
No process-wide setting is touched: the pixel limit is compared here, not through ``Image.MAX_IMAGE_PIXELS``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from imaging import structure
from imaging.errors import ImageError, Problem
from imaging.limits import Limits

# Pillow's format name -> the media type clients send. MPO is a JPEG with a second (preview) picture, as phones
# write them: it decodes as its first picture.
SUPPORTED_FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                     "BMP": "image/bmp", "TIFF": "image/tiff"}  # fmt: skip
MEDIA_TYPES = tuple(dict.fromkeys(SUPPORTED_FORMATS.values()))
URL_HINT = "URLs are not fetched; send the file's bytes (curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg')"
# The only Pillow plugins tried: other formats (GIF, PSD, ICNS...) are never parsed, only refused.
_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
_ORIENTATION_TAG = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


@dataclass(frozen=True)
class Header:
    format: str  # "JPEG" for MPO too: what the client sent, as the API reports it
    width: int  # as stored, before EXIF orientation
    height: int
    orientation: int = 1  # EXIF orientation, 1 (as stored) to 8

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def oriented_size(self) -> tuple[int, int]:
        """Width and height as the image is meant to be seen, which is how it is decoded."""
        if self.orientation in _TRANSPOSED:
            return self.height, self.width
        return self.width, self.height


def read_header(data: bytes, limits: Limits) -> Header:
    """The header, or an ``ImageError`` saying why the file is refused."""
    if not data:
        raise ImageError(Problem.EMPTY, "the request carries no image bytes")
    sniffed = _sniff(data)
    multipage = False
    try:
        # Bounded walks first: Pillow's own walks over markers and chunks are unbounded and in Python.
        if sniffed == "JPEG":
            structure.jpeg_scans(data, first_scan_only=True)
        elif sniffed == "PNG":
            data = structure.png_without_metadata(data, up_to_image_data=True)
        elif sniffed == "TIFF":
            multipage = structure.tiff_is_multipage(data)
        with Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS) as image:
            kind = image.format or ""
            width, height = image.size
            # is_animated is read from the header for PNG and WebP (no frame walk); TIFF's from its first
            # directory above. MPO's second picture is a preview, not a frame.
            animated = multipage if kind == "TIFF" else kind != "MPO" and getattr(image, "is_animated", False)
            orientation = _orientation(image) if kind in SUPPORTED_FORMATS else 1
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(Problem.TOO_LARGE, f"the image is over the limit of {limits.max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        if sniffed:
            raise ImageError(Problem.CORRUPT, f"this looks like a {sniffed} with a corrupt header") from None
        if data.lstrip()[:8].lower().startswith((b"http://", b"https://")):
            raise ImageError(Problem.UNSUPPORTED, f"this is a URL, not an image: {URL_HINT}") from None
        raise ImageError(Problem.UNSUPPORTED, f"not a supported image; send one of {', '.join(MEDIA_TYPES)}") from None
    except Exception as exc:  # a corrupt header: Pillow raises assorted errors
        raise ImageError(Problem.CORRUPT, f"the image header could not be read: {exc}") from None
    if kind not in SUPPORTED_FORMATS:
        raise ImageError(
            Problem.UNSUPPORTED, f"{kind or 'this'} images are not supported; send one of {', '.join(MEDIA_TYPES)}"
        )
    if animated:
        raise ImageError(Problem.ANIMATED, "animated or multi-frame images are not supported")
    header = Header("JPEG" if kind == "MPO" else kind, width, height, orientation)
    check_size(header.width, header.height, limits)
    return header


def _orientation(image: Image.Image) -> int:
    try:
        if image.format == "PNG":
            # Pillow's PNG getexif() decodes the whole image to look for an eXIf chunk after the pixels (seconds
            # for a crafted file, on the event loop): only the one before the pixels, as writers place it, counts.
            exif = Image.Exif()
            exif.load(image.info.get("exif", b""))
        else:
            exif = image.getexif()
        value = exif.get(_ORIENTATION_TAG, 1)
    except Exception:  # a corrupt EXIF block does not make the picture unreadable: show it as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def check_size(width: int, height: int, limits: Limits) -> None:
    """The size rules, for a header or for pixels sent decoded (Triton's raw-pixel entry points)."""
    if width * height > limits.max_pixels:
        raise ImageError(
            Problem.TOO_LARGE,
            f"{width}x{height} = {width * height:,} pixels is over the limit of {limits.max_pixels:,} pixels",
        )
    short, long = sorted((width, height))
    if short < limits.min_side:
        raise ImageError(Problem.TOO_SMALL, f"{width}x{height}: each side must be at least {limits.min_side} px")
    if long / short > limits.max_aspect_ratio:
        raise ImageError(
            Problem.BAD_ASPECT_RATIO, f"{width}x{height}: aspect ratios above {limits.max_aspect_ratio:g} are refused"
        )


def _sniff(data: bytes) -> str | None:
    """The format a file's first bytes announce, so a corrupt header is called corrupt, not unsupported."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)
