"""Figures the reliability suite measures (cases tried, recovery times, memory), printed when the run ends, and the
instruments that measure them while the load runs.

A module of its own so the tests and conftest's summary hook import one and the same dict.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import httpx
import psutil

FIGURES: dict[str, object] = {}
T = TypeVar("T")


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


class PeakRss:
    """The highest RSS a process reaches while the block runs, sampled every 10 ms by a thread: a flood's peak
    comes and goes between a before and an after."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mib = rss_mib(pid)
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.mib = max(self.mib, rss_mib(self.pid))


def implied_rss_mib(url: str) -> float:
    """The peak RSS per process that the gateway's settings imply, from its own gauge."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("gateway_implied_peak_rss_bytes "):
            return float(line.split()[1]) / 2**20
    raise AssertionError("the gateway exposes no gateway_implied_peak_rss_bytes")


def hold_rss(name: str, url: str, peak: PeakRss) -> None:
    """Record the gateway's peak RSS beside the figure its settings imply, and hold it to that figure."""
    implied = implied_rss_mib(url)
    FIGURES[name] = f"peak {peak.mib:.0f} MiB; its settings imply {implied:.0f} MiB"
    assert peak.mib <= implied, (name, peak.mib, implied)


class Beside:
    """A normal request sent together with each hostile one, from a thread of its own: its outcomes, and its
    slowest answer with the case it went with."""

    def __init__(self, normal: Callable[[], object]) -> None:
        self.normal = normal
        self.outcomes: Counter[object] = Counter()
        self.worst_s, self.worst_outcome, self.worst_case = 0.0, None, ""
        self._thread = ThreadPoolExecutor(1)

    def __enter__(self) -> Beside:
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.shutdown()

    def send(self, case: str, hostile: Callable[[], T]) -> T:
        """``hostile()``, with the normal request started at the same moment."""
        normal = self._thread.submit(self._timed)
        try:
            return hostile()
        finally:
            seconds, outcome = normal.result()
            self.outcomes[outcome] += 1
            if seconds >= self.worst_s:
                self.worst_s, self.worst_outcome, self.worst_case = seconds, outcome, case

    def _timed(self) -> tuple[float, object]:
        started = time.perf_counter()
        outcome = self.normal()
        return time.perf_counter() - started, outcome

    def __str__(self) -> str:
        return (
            f"worst {self.worst_s:.2f} s ({self.worst_outcome}) beside {self.worst_case!r}; "
            f"outcomes {dict(self.outcomes)}"
        )
