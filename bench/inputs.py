"""The benchmark's images: real photographs at ImageNet-like sizes, JPEG-encoded once.

ImageNet validation photographs are mostly about 500x375; scikit-image ships a handful of real colour
photographs (no download needed), which are resized so the shorter side lands in that range and encoded the way
a camera or browser would (baseline JPEG, quality 90). Every scenario cycles through the same bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import cv2
import numpy as np

T = TypeVar("T")

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
SHORT_SIDE = (375, 500)  # ImageNet-like: the shorter side is brought within this range
JPEG_QUALITY = 90


def _imagenet_sized(bgr: np.ndarray) -> np.ndarray:
    height, width = bgr.shape[:2]
    target = min(max(min(height, width), SHORT_SIDE[0]), SHORT_SIDE[1])
    scale = target / min(height, width)
    if scale == 1:
        return bgr
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(bgr, (round(width * scale), round(height * scale)), interpolation=interpolation)


def photographs(names: Sequence[str] = PHOTOGRAPHS) -> dict[str, bytes]:
    """Name -> JPEG bytes of each photograph, shorter side within ``SHORT_SIDE``."""
    import skimage.data

    jpegs = {}
    for name in names:
        bgr = cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", _imagenet_sized(bgr), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"could not encode {name} as JPEG")
        jpegs[name] = encoded.tobytes()
    return jpegs


def decode(jpeg: bytes) -> np.ndarray:
    """What a client (or the gateway) does with the bytes: ``uint8 [H, W, 3]`` BGR."""
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


class RoundRobin(Generic[T]):
    """Hands out items in turn to every worker of a level, so all inputs are used evenly."""

    def __init__(self, items: Sequence[T]) -> None:
        if not items:
            raise ValueError("no inputs")
        self._next: Callable[[], T] = itertools.cycle(items).__next__

    def __call__(self) -> T:
        return self._next()
