"""Waiting on a condition the test can observe, never on a sleep: a bound that catches a hang, not a slow machine."""

from __future__ import annotations

import time
from collections.abc import Callable

HANG_S = 60  # how long a condition that should come about in well under a second may take before it counts as hung


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = HANG_S) -> None:
    """Polls ``condition`` every 10 ms until it holds; fails, saying ``what`` never happened, after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not after {timeout_s:g} s: {what}"
        time.sleep(0.01)
