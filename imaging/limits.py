"""The upload rules' limits: the ground every receiver of an image stands on.

The gateway checks them from the header before it forwards the bytes; the decode step inside Triton checks them
again before it decodes (its config carries them); ``GATEWAY_MAX_IMAGE_PIXELS`` and friends default to these.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_IMAGE_BYTES = 10 * 1024 * 1024  # an encoded file: what the gateway's body limit admits by default
MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 8
MAX_ASPECT_RATIO = 20.0


@dataclass(frozen=True)
class Limits:
    max_pixels: int = MAX_IMAGE_PIXELS
    min_side: int = MIN_IMAGE_SIDE
    max_aspect_ratio: float = MAX_ASPECT_RATIO
