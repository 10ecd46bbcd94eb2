"""What can be wrong with an uploaded image, and how the reason crosses from Triton to the gateway."""

from __future__ import annotations

import re
from enum import Enum


class Problem(str, Enum):
    """Stable machine codes: the gateway answers them as its error codes, Triton as its message prefix.

    ``str, Enum`` with ``__str__`` rather than 3.11's ``StrEnum``: the decode step runs this package on the Triton
    image's Python 3.10, and a member formats as its code on both."""

    EMPTY = "empty_image"
    TOO_MANY_BYTES = "payload_too_large"  # the file itself, over the byte limit
    UNSUPPORTED = "unsupported_image"
    CORRUPT = "corrupt_image"
    ANIMATED = "animated_image"
    TOO_LARGE = "image_too_large"
    TOO_SMALL = "image_too_small"
    BAD_ASPECT_RATIO = "bad_aspect_ratio"
    TOO_COMPLEX = "image_too_complex"  # more markers, chunks, scans or directory entries than are walked

    def __str__(self) -> str:
        return self.value


_ON_THE_WIRE = re.compile(rf"\b({'|'.join(p.value for p in Problem)}): (.*)", re.DOTALL)


class ImageError(ValueError):
    """An image refused for a reason the client can fix."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(f"{problem.value}: {message}")
        self.problem = problem
        self.message = message

    @classmethod
    def from_message(cls, text: str) -> ImageError | None:
        """The error inside a Triton error message (which wraps it in ensemble and request context), if any."""
        found = _ON_THE_WIRE.search(text)
        return cls(Problem(found.group(1)), found.group(2).strip()) if found else None
