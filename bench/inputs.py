"""The benchmark's images: real photographs at ImageNet-like sizes, and at a phone camera's, JPEG-encoded once.

ImageNet validation photographs are mostly about 500x375; scikit-image ships a handful of real colour
photographs (no download needed), which are resized so the shorter side lands in that range and encoded the way
a camera or browser would (baseline JPEG, quality 90). Every scenario cycles through the same bytes.

A phone sends 12-megapixel JPEGs of 2 to 4 MB. The same photographs, cropped to 4:3 and upscaled, would be
too smooth to weigh that much (a JPEG's size is its detail), so a seeded sensor-like grain (per-pixel luminance
noise plus a coarser colour mottle) is added before encoding: deterministic, photo-like, 3.2-3.4 MB at quality
90. They take seconds to make, so they are cached under ``build/`` keyed by everything that shapes them.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import cv2
import numpy as np
from PIL import Image

T = TypeVar("T")

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
SHORT_SIDE = (375, 500)  # ImageNet-like: the shorter side is brought within this range
JPEG_QUALITY = 90
PHONE_PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket")
PHONE_SIZE = (4032, 3024)  # width, height: a 12 MP phone camera
GRAIN_SIGMA = 5.0  # per-pixel luminance noise, uint8 levels
MOTTLE_SIGMA = 3.0  # colour noise at a quarter of the resolution, upscaled
CACHE = Path(__file__).resolve().parent.parent / "build" / "bench-inputs"


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
    return {name: _encode(name, _imagenet_sized(cv2.cvtColor(_read_rgb(name), cv2.COLOR_RGB2BGR))) for name in names}


def _read_rgb(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]


def camera_sized(name: str, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A scikit-image photograph at ``size`` (width, height) as BGR: centre-cropped to the aspect, upscaled
    (bicubic), with seeded grain and mottle so its JPEG weighs what a camera's does."""
    width, height = size
    bgr = cv2.cvtColor(_read_rgb(name), cv2.COLOR_RGB2BGR)
    rows, cols = bgr.shape[:2]
    if cols * height > rows * width:
        keep = round(rows * width / height)
        bgr = bgr[:, (cols - keep) // 2 : (cols - keep) // 2 + keep]
    else:
        keep = round(cols * height / width)
        bgr = bgr[(rows - keep) // 2 : (rows - keep) // 2 + keep]
    pixels = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    rng = np.random.default_rng(seed)
    pixels += rng.normal(0, GRAIN_SIGMA, (height, width, 1)).astype(np.float32)
    mottle = rng.normal(0, MOTTLE_SIGMA, (height // 4, width // 4, 3)).astype(np.float32)
    pixels += cv2.resize(mottle, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _encode(name: str, bgr: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"could not encode {name} as JPEG")
    return encoded.tobytes()


def camera_photographs(
    size: tuple[int, int] = PHONE_SIZE, names: Sequence[str] = PHONE_PHOTOGRAPHS, cache: Path = CACHE
) -> dict[str, bytes]:
    """Name -> JPEG bytes of each photograph at a camera's ``size``, made once and cached."""
    recipe = f"{size}-{GRAIN_SIGMA}-{MOTTLE_SIGMA}-{JPEG_QUALITY}-{cv2.__version__}".encode()
    key = hashlib.sha256(recipe).hexdigest()[:12]
    jpegs = {}
    for name in names:
        path = cache / f"{name}-{size[0]}x{size[1]}-{key}.jpg"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".part").write_bytes(_encode(name, camera_sized(name, size)))
            path.with_suffix(".part").replace(path)  # a run interrupted mid-write leaves no truncated JPEG
        jpegs[name] = path.read_bytes()
    return jpegs


def distinct(jpegs: Sequence[bytes], count: int) -> list[bytes]:
    """``count`` JPEGs made from ``jpegs`` in turn, each with one pixel of its own near the centre inverted: photos
    that look the same but none of which is the bytes, or the network's input, of another (a pixel the centre crop
    drops would leave the input unchanged), so no cache can answer one from another."""
    found = []
    for index in range(count):
        pixels = decode(jpegs[index % len(jpegs)])
        row, col = divmod(index // len(jpegs), 64)
        pixels[pixels.shape[0] // 2 - 32 + row % 64, pixels.shape[1] // 2 - 32 + col] ^= 0xFF
        found.append(_encode("variant", pixels))
    return found


def megapixels(jpeg: bytes) -> float:
    """Width x height of an encoded image in millions of pixels, from its header."""
    with Image.open(io.BytesIO(jpeg)) as image:
        width, height = image.size
    return width * height / 1e6


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
