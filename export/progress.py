"""A step-by-step progress display for long build work: what runs now, for how long, and a summary."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Steps:
    """Numbered steps; on a terminal the current one shows a live elapsed time, elsewhere one line each."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.started = time.perf_counter()
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.done += 1
        prefix = f"[{self.done}/{self.total}] {label}"
        start = time.perf_counter()
        stop = threading.Event()
        ticker = None
        if self.stream.isatty():
            ticker = threading.Thread(target=self._tick, args=(prefix, start, stop), daemon=True)
            ticker.start()
        else:
            print(f"{prefix} ...", file=self.stream, flush=True)
        try:
            yield
        except BaseException:
            self._finish(prefix, start, stop, ticker, "FAILED")
            raise
        self._finish(prefix, start, stop, ticker, "ok")

    def _tick(self, prefix: str, start: float, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            print(f"\r{prefix} ... {time.perf_counter() - start:5.1f} s", end="", file=self.stream, flush=True)

    def _finish(
        self, prefix: str, start: float, stop: threading.Event, ticker: threading.Thread | None, word: str
    ) -> None:
        elapsed = time.perf_counter() - start
        stop.set()
        if ticker:
            ticker.join()
            print(f"\r{prefix} ... {word} ({elapsed:.1f} s)", file=self.stream, flush=True)
        else:
            print(f"    {word} ({elapsed:.1f} s)", file=self.stream, flush=True)
        self.timings.append((prefix, elapsed))

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
