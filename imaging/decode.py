"""Encoded bytes -> ``uint8 [H, W, 3]`` BGR, at full resolution or at the smallest JPEG scale a model needs.

libjpeg-turbo decodes a JPEG at 1/2, 1/4 or 1/8 of its size for a fraction of the work (the DCT is scaled, which
also averages like an anti-aliased downscale): a 12 MP photo for a 256-pixel model costs ~10 ms instead of ~45.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import cv2
import numpy as np

from imaging import structure
from imaging.errors import ImageError, Problem
from imaging.header import Header, Limits, read_header

_SCALES = {
    8: cv2.IMREAD_REDUCED_COLOR_8,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    1: cv2.IMREAD_COLOR,
}
# EXIF orientation -> the steps that show the stored pixels upright, applied in this order: transpose (swap the
# axes), mirror (left-right), quarter turns counter-clockwise. Applied by us, for every format, so the gateway can
# tell the decoded size from the header alone; the GPU decoder applies the same table (imaging/gpu.py).
UPRIGHT: dict[int, tuple[bool, bool, int]] = {
    1: (False, False, 0),
    2: (False, True, 0),
    3: (False, False, 2),
    4: (False, True, 2),
    5: (True, False, 0),
    6: (False, False, 3),
    7: (True, False, 2),
    8: (False, False, 1),
}


def jpeg_scale(header: Header, min_side: int) -> int:
    """The largest of 8, 4, 2 whose scaled decode keeps the shorter side at ``min_side`` or more (libjpeg rounds
    scaled sizes up), else 1; always 1 for other formats or ``min_side`` 0."""
    if header.format != "JPEG" or min_side <= 0:
        return 1
    short = min(header.width, header.height)
    return next((scale for scale in (8, 4, 2) if -(-short // scale) >= min_side), 1)


def decode(data: bytes, limits: Limits, min_side: int = 0, header: Header | None = None) -> np.ndarray:
    """Every upload rule checked from the header first (pass ``header`` when it was read already), then the
    decode; ``ImageError`` for what is refused."""
    header = header or read_header(data, limits)
    data = decodable(data, header)
    flags = _SCALES[jpeg_scale(header, min_side)] | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None:
        raise ImageError(Problem.CORRUPT, f"the {header.format} data could not be decoded (truncated or corrupt)")
    return upright(image, header.orientation)


def decodable(data: bytes, header: Header) -> bytes:
    """The bytes to hand a decoder (any decoder: libjpeg, libpng, nvJPEG), after the checks the header read does
    not make: a truncated JPEG and one with too many progressive scans are refused, PNG text and ICC chunks (which
    libpng inflates even after the pixels: 50 s for a 10 MB file) are dropped. Linear in the file's size."""
    if header.format == "JPEG":
        if not data.rstrip(b"\0").endswith(b"\xff\xd9"):
            # libjpeg fills a truncated JPEG with grey and only warns: refuse it rather than classify grey.
            raise ImageError(Problem.CORRUPT, "the JPEG is truncated (no end-of-image marker)")
        structure.jpeg_scans(data, first_scan_only=False)
    elif header.format == "PNG":
        return structure.png_without_metadata(data, up_to_image_data=False)
    return data


def upright(image: Any, orientation: int, xp: ModuleType = np) -> Any:
    """The stored pixels turned as EXIF ``orientation`` says (what cv2.imread does for JPEG, for every format);
    ``xp`` is numpy, or CuPy for pixels on a GPU (imaging/gpu.py)."""
    transpose, mirror, turns = UPRIGHT.get(orientation, UPRIGHT[1])
    if transpose:
        image = image.transpose(1, 0, 2)
    if mirror:
        image = image[:, ::-1]
    return xp.ascontiguousarray(xp.rot90(image, turns))
