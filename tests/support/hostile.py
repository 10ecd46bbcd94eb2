"""A corpus of hostile and malformed requests, each with the 4xx the gateway must answer."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    kwargs: dict[str, Any] = field(default_factory=dict)


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _pillow(frames: list[np.ndarray], fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(buffer, fmt, save_all=len(images) > 1, append_images=images[1:], **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width x height`` pixels, with almost no data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims another size."""
    at = jpeg.index(b"\xff\xc0")
    return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]


def _png_chunks_around(png: bytes, before: bytes, after: bytes) -> bytes:
    """The PNG with ``before`` inserted after its IHDR and ``after`` after its last image data chunk."""
    end_of_ihdr, iend = 8 + 25, png.rindex(b"IEND") - 4
    return png[:end_of_ihdr] + before + png[end_of_ihdr:iend] + after + png[iend:]


def _text_bomb(inflated: int) -> bytes:
    """A zTXt chunk of a few KB that inflates to ``inflated`` bytes."""
    return _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * inflated, 9))


def _progressive_scans(photo: np.ndarray, scans: int) -> bytes:
    """A small progressive JPEG whose last scan is repeated ``scans`` times: each costs libjpeg a full pass."""
    data = cv2.imencode(".jpg", photo[:64, :64], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    last = data.rindex(b"\xff\xda")  # entropy-coded data never holds FF DA (0xFF is stuffed)
    return data[:last] + data[last:-2] * scans + data[-2:]


def _tiff_chain(photo: np.ndarray, directories: int) -> bytes:
    """A TIFF whose first directory links to a chain of ``directories`` one-entry directories (frame counting)."""
    data = bytearray(_pillow([cv2.cvtColor(photo[:64, :64], cv2.COLOR_BGR2RGB)], "TIFF"))
    first = struct.unpack_from("<I", data, 4)[0]
    next_at = first + 2 + 12 * struct.unpack_from("<H", data, first)[0]
    struct.pack_into("<I", data, next_at, len(data))
    next_offsets = [len(data) + 18 * i for i in range(1, directories)] + [0]
    return bytes(data) + b"".join(struct.pack("<HHHIII", 1, 256, 4, 1, 64, at) for at in next_offsets)


def _tiff_wide_directory(photo: np.ndarray, entries: int) -> bytes:
    """A TIFF whose first directory declares ``entries`` entries (Pillow loads each in Python)."""
    data = _pillow([cv2.cvtColor(photo[:64, :64], cv2.COLOR_BGR2RGB)], "TIFF")
    first = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, first)[0]
    end = first + 2 + 12 * count
    extra = b"".join(struct.pack("<HHII", 50_000 + i % 10_000, 3, 1, 0) for i in range(entries - count))
    return data[:first] + struct.pack("<H", entries) + data[first + 2 : end] + extra + b"\0\0\0\0" + data[end + 4 :]


def _gif_comments(photo: np.ndarray, size: int) -> bytes:
    """A GIF with ``size`` bytes of one-byte comment blocks before its image (Pillow walks them in Python)."""
    gif = _pillow([cv2.cvtColor(photo[:64, :64], cv2.COLOR_BGR2RGB)], "GIF")
    at = gif.index(b"\x2c")  # the image descriptor
    return gif[:at] + b"\x21\xfe\x01a\x00" * (size // 5) + gif[at:]


def abusive_structure(photo: np.ndarray, size: int) -> list[tuple[str, bytes, str, int]]:
    """``(name, file, media type, status)`` for files of up to ``size`` bytes whose structure made Pillow, libjpeg
    or libpng work for seconds (measured before the bounded walks: 6 to 50 s each). The gateway refuses most
    from the header; a few only Triton's decode step sees (its refusal comes back as the same 4xx)."""
    rgb = cv2.cvtColor(photo[:64, :64], cv2.COLOR_BGR2RGB)
    jpeg, png = _jpeg(photo[:64, :64]), _png(photo[:64, :64])
    empty_chunk = _chunk(b"abCd", b"")
    return [
        ("jpeg: 10 MB of empty APP1 segments", jpeg[:2] + b"\xff\xe1\x00\x02" * (size // 4) + jpeg[2:],
         "image/jpeg", 422),
        ("jpeg: 10 MB of fill bytes", jpeg[:2] + b"\xff" * size + jpeg[2:], "image/jpeg", 422),
        ("jpeg: 10 MB of FF 00 pairs", jpeg[:2] + b"\xff\x00" * (size // 2) + jpeg[2:], "image/jpeg", 422),
        ("progressive jpeg with 3,000 scans", _progressive_scans(photo, 3000), "image/jpeg", 422),
        ("png: 10 MB of empty chunks before the image data", _png_chunks_around(png, empty_chunk * (size // 12), b""),
         "image/png", 422),
        ("png: 10 MB of empty chunks after the image data", _png_chunks_around(png, b"", empty_chunk * (size // 12)),
         "image/png", 422),
        ("png: 1,000 text bombs before the image data", _png_chunks_around(png, _text_bomb(1 << 20) * 1000, b""),
         "image/png", 422),
        ("tiff: 500,000 chained directories", _tiff_chain(photo, 500_000), "image/tiff", 422),
        ("tiff: 65,535 entries in the first directory", _tiff_wide_directory(photo, 65_535), "image/tiff", 422),
        ("gif: 10 MB of comment blocks", _gif_comments(photo, size), "image/gif", 415),
        ("webp: animated, 300 frames", _pillow([rgb, rgb[::-1]] * 150, "WEBP"), "image/webp", 422),
    ]  # fmt: skip


def _raw(data: bytes, content_type: str | None, **headers: str) -> dict[str, Any]:
    sent = dict(headers)
    if content_type is not None:
        sent["content-type"] = content_type
    return {"content": data, "headers": sent}


def _multipart(body: bytes, boundary: str = "b0undary", declared: str | None = None) -> dict[str, Any]:
    content_type = f"multipart/form-data; boundary={declared or boundary}"
    return {"content": body, "headers": {"content-type": content_type}}


def _part(name: str, filename: str, data: bytes, boundary: str = "b0undary") -> bytes:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
    return head.encode() + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def corpus(photo: np.ndarray, max_body_bytes: int) -> list[Case]:
    """At least 40 requests that must each get a 4xx with the JSON error shape, and never a 5xx."""
    rng = np.random.default_rng(0)
    jpeg, png = _jpeg(photo), _png(photo)
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    webp = cv2.imencode(".webp", photo)[1].tobytes()
    corrupt_png = png[:16] + b"\xff\xff\xff\xff" + png[20:]  # IHDR width/height overwritten: CRC mismatch
    corrupt_jpeg_header = jpeg[:2] + b"\xff\xc0\x00\x03" + rng.bytes(200)
    classify, edges, items = "/v1/classify", "/v1/edges", "/v1/items"
    huge = "x" * 30_000
    cases = [
        Case("empty jpeg body", "POST", classify, 422, _raw(b"", "image/jpeg")),
        Case("empty png body", "POST", classify, 422, _raw(b"", "image/png")),
        Case("random bytes as jpeg", "POST", classify, 415, _raw(rng.bytes(4096), "image/jpeg")),
        Case("random bytes as png", "POST", classify, 415, _raw(rng.bytes(4096), "image/png")),
        Case("random bytes as octet-stream", "POST", classify, 415, _raw(rng.bytes(4096), "application/octet-stream")),
        Case("jpeg cut in half", "POST", classify, 422, _raw(jpeg[: len(jpeg) // 2], "image/jpeg")),
        Case("jpeg cut after 100 bytes", "POST", classify, 422, _raw(jpeg[:100], "image/jpeg")),
        Case("jpeg with a corrupt frame header", "POST", classify, 422, _raw(corrupt_jpeg_header, "image/jpeg")),
        Case("png cut in half", "POST", classify, 422, _raw(png[: len(png) // 2], "image/png")),
        Case("png with a corrupt header chunk", "POST", classify, 422, _raw(corrupt_png, "image/png")),
        Case("webp cut in half", "POST", classify, 422, _raw(webp[: len(webp) // 2], "image/webp")),
        Case("webp header then noise", "POST", classify, 422, _raw(webp[:30] + rng.bytes(2000), "image/webp")),
        Case("gif (unsupported format)", "POST", classify, 415, _raw(_pillow([rgb], "GIF"), "image/gif")),
        Case("animated gif", "POST", classify, 415, _raw(_pillow([rgb, rgb[::-1]], "GIF"), "image/gif")),
        Case("animated webp", "POST", classify, 422, _raw(_pillow([rgb, rgb[::-1]], "WEBP"), "image/webp")),
        Case("animated png (apng)", "POST", classify, 422, _raw(_pillow([rgb, rgb[::-1]], "PNG"), "image/png")),
        Case("multi-page tiff", "POST", classify, 422, _raw(_pillow([rgb, rgb], "TIFF"), "image/tiff")),
        Case("png bomb 50000x50000 by header", "POST", classify, 413, _raw(png_bomb(50_000, 50_000), "image/png")),
        Case("png 8000x6000 by header", "POST", classify, 413, _raw(png_bomb(8000, 6000), "image/png")),
        Case("jpeg bomb 60000x60000 by header", "POST", classify, 413,
             _raw(jpeg_claiming(jpeg, 60_000, 60_000), "image/jpeg")),
        Case("1x1 png", "POST", classify, 422, _raw(_png(photo[:1, :1]), "image/png")),
        Case("1x300 png", "POST", classify, 422, _raw(_png(photo[:1, :300]), "image/png")),
        Case("300x1 png", "POST", classify, 422, _raw(_png(photo[:300, :1]), "image/png")),
        Case("400x10 png (aspect ratio)", "POST", classify, 422, _raw(_png(photo[:10, :400]), "image/png")),
        Case("jpeg sent as application/json", "POST", classify, 415, _raw(jpeg, "application/json")),
        Case("jpeg sent as text/plain", "POST", classify, 415, _raw(jpeg, "text/plain")),
        Case("jpeg without content type", "POST", classify, 415, _raw(jpeg, None)),
        Case("body over the limit (declared)", "POST", classify, 413,
             _raw(rng.bytes(max_body_bytes + 1), "image/jpeg")),
        Case("body over the limit (chunked)", "POST", classify, 413,
             {"content": iter([rng.bytes(1 << 20)] * (max_body_bytes // (1 << 20) + 2)),
              "headers": {"content-type": "image/jpeg"}}),
        Case("multipart without boundary", "POST", classify, 422,
             {"content": _part("file", "a.jpg", jpeg), "headers": {"content-type": "multipart/form-data"}}),
        Case("multipart with a wrong boundary", "POST", classify, 422,
             _multipart(_part("file", "a.jpg", jpeg) + b"--b0undary--\r\n", declared="other")),
        Case("multipart without a file part", "POST", classify, 422,
             _multipart(b'--b0undary\r\nContent-Disposition: form-data; name="x"\r\n\r\nhello\r\n--b0undary--\r\n')),
        Case("multipart with an empty file", "POST", classify, 422,
             _multipart(_part("file", "a.jpg", b"") + b"--b0undary--\r\n")),
        Case("multipart file of random bytes", "POST", classify, 415,
             _multipart(_part("file", "a.jpg", rng.bytes(3000)) + b"--b0undary--\r\n")),
        Case("two files to the single route", "POST", classify, 422,
             _multipart(_part("file", "a.jpg", jpeg) + _part("file", "b.jpg", jpeg) + b"--b0undary--\r\n")),
        Case("batch over the file count", "POST", "/v1/classify/batch", 422,
             _multipart(b"".join(_part("files", f"{i}.jpg", b"x") for i in range(40)) + b"--b0undary--\r\n")),
        Case("batch with one corrupt image", "POST", "/v1/classify/batch", 422,
             _multipart(_part("files", "ok.jpg", jpeg) + _part("files", "bad.jpg", jpeg[:300]) + b"--b0undary--\r\n")),
        Case("top_k=0", "POST", f"{classify}?top_k=0", 422, _raw(jpeg, "image/jpeg")),
        Case("top_k=1000", "POST", f"{classify}?top_k=1000", 422, _raw(jpeg, "image/jpeg")),
        Case("top_k not a number", "POST", f"{classify}?top_k=abc", 422, _raw(jpeg, "image/jpeg")),
        Case("edges low above high", "POST", f"{edges}?low=200&high=100", 422, _raw(jpeg, "image/jpeg")),
        Case("edges negative threshold", "POST", f"{edges}?low=-5", 422, _raw(jpeg, "image/jpeg")),
        Case("edges unknown format", "POST", f"{edges}?format=gif", 422, _raw(jpeg, "image/jpeg")),
        Case("edges on random bytes", "POST", edges, 415, _raw(rng.bytes(999), "image/png")),
        Case("30 KB header beside random bytes", "POST", classify, 415,
             _raw(rng.bytes(100), "image/png", **{"x-padding": huge})),
        Case("30 KB content type", "POST", classify, 415, _raw(jpeg, "image/" + huge)),
        Case("unknown route", "GET", "/v1/nothing-here", 404),
        Case("wrong method on classify", "GET", classify, 405),
        Case("items: not UTF-8", "POST", items, 422, _raw(b'{"a": "\xff\xfe"}', "application/json")),
        Case("items: nested 10,000 deep", "POST", items, 422, _raw(_nested(10_000), "application/json")),
        Case("items: an array, not an object", "POST", items, 422, _raw(b"[1, 2, 3]", "application/json")),
        Case("items: not JSON", "POST", items, 422, _raw(b"{nope", "application/json")),
        Case("items: NaN", "POST", items, 422, _raw(b'{"a": NaN}', "application/json")),
        Case("items: over 64 KB", "POST", items, 413,
             _raw(b'{"a": "' + b"x" * 70_000 + b'"}', "application/json")),
        Case("items: id with a space", "PUT", f"{items}/bad%20id", 422, _raw(b'{"a": 1}', "application/json")),
        Case("items: id of 300 characters", "PUT", f"{items}/{'a' * 300}", 422, _raw(b'{"a": 1}', "application/json")),
        Case("items: limit=0", "GET", f"{items}?limit=0", 422),
        Case("items: garbage cursor", "GET", f"{items}?cursor=%%%garbage", 422),
        Case("items: unknown id", "GET", f"{items}/does-not-exist", 404),
    ]  # fmt: skip
    cases += [
        Case(name, "POST", classify, status, _raw(data, media_type))
        for name, data, media_type, status in abusive_structure(photo, max_body_bytes - (64 << 10))
    ]
    return cases


def unusual_but_valid(photo: np.ndarray) -> dict[str, tuple[bytes, str]]:
    """Images that look odd but are legitimate: the gateway converts them and answers 200."""
    rgb = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, "JPEG", quality=95)
    sixteen = _png(photo.astype(np.uint16) * 257)
    return {
        "16-bit png": (sixteen, "image/png"),
        "cmyk jpeg": (cmyk.getvalue(), "image/jpeg"),
        "png labelled image/jpeg": (_png(photo), "image/jpeg"),
        "bmp": (cv2.imencode(".bmp", photo)[1].tobytes(), "image/bmp"),
        "single-page tiff": (_pillow([rgb], "TIFF"), "image/tiff"),
        # 3 MB of text chunks inflating to 5 GB, which libpng inflated even after the pixels (30 s): dropped unread.
        "png with text bombs around the pixels": (
            _png_chunks_around(_png(photo), _text_bomb(1 << 20) * 8, _text_bomb(4 << 20) * 1200),
            "image/png",
        ),
    }
