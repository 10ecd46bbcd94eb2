"""Figures the reliability suite measures, as records: the figure's name, what was measured (and its unit), the goal
the README states for it with the verdict, and the test that measured it. Every run prints them at the end;
``make reliability`` also writes them to ``docs/reliability/`` (``tests/support/reliability_report.py``). Beside
them, the instruments that measure while the load runs (peak RSS, a normal request beside each hostile one).

Recording a figure::

    hold("Triton kill -> first 503", to_503, KILL_TO_503)  # judged against its goal, held to its bound
    record("soak requests", total, unit="requests", detail=f"in {seconds:.0f} s, statuses {dict(statuses)}")

A goal (``tests/support/goals.py``) carries the README's target, which decides the verdict in the report, and the
looser bound a test asserts with ``hold``: one that catches a hang or a mechanism that broke, never a slow machine.
Two tests of the same fact share one goal (a new fact: a new constant there). ``record`` with a goal judges without
asserting; with none, the figure is a measurement, reported without a verdict. ``hold_rss`` holds a gateway's
peak RSS to what its settings imply.

The older form still works, as a measurement::

    FIGURES["queue-full burst"] = dict(statuses)

To convert one: the text's number becomes ``measured`` (with its unit), the rest of the text ``detail``, and a goal
the README states for it goes in ``goal``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import httpx
import psutil

T = TypeVar("T")
Measured = float | int | str | dict[Any, Any] | list[Any] | None


@dataclass(frozen=True)
class Goal:
    """A target the README states for a figure (``at_most`` or ``at_least``, in ``unit``) and ``bound``, the looser
    limit in the same direction that tests assert: past it something is broken, whatever the machine."""

    unit: str
    at_most: float | None = None
    at_least: float | None = None
    bound: float | None = None

    def met(self, value: float) -> bool:
        return (self.at_most is None or value <= self.at_most) and (self.at_least is None or value >= self.at_least)

    def within_bound(self, value: float) -> bool:
        if self.bound is None:
            return True
        return value <= self.bound if self.at_most is not None else value >= self.bound

    def __str__(self) -> str:
        target = f"<= {_number(self.at_most)}" if self.at_most is not None else f">= {_number(self.at_least)}"
        return f"{target} {self.unit}".strip()


@dataclass(frozen=True)
class Figure:
    name: str
    measured: Measured
    unit: str = ""
    goal: Goal | None = None
    detail: str = ""
    test: str = ""  # the pytest node id of the test that measured it

    @property
    def verdict(self) -> str | None:
        """ "met" or "missed" for a figure with a goal and a number, else None (a measurement)."""
        if self.goal is None or not isinstance(self.measured, int | float):
            return None
        return "met" if self.goal.met(self.measured) else "missed"

    def value_text(self) -> str:
        if isinstance(self.measured, dict):
            text = ", ".join(f"{key}: {value}" for key, value in self.measured.items())
        else:
            text = _number(self.measured) if isinstance(self.measured, int | float) else str(self.measured)
        return f"{text} {self.unit}".strip()

    def to_json(self) -> dict[str, object]:
        fields = asdict(self) | {"measured": _jsonable(self.measured), "verdict": self.verdict}
        return fields | {"goal": asdict(self.goal) if self.goal else None}

    def __str__(self) -> str:
        judged = f" (goal {self.goal}: {self.verdict})" if self.goal else ""
        return f"{self.value_text()}{judged}" + (f"; {self.detail}" if self.detail else "")


def _number(value: float | None) -> str:
    """Three significant digits below 100, whole numbers with thousands separators above."""
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def _jsonable(value: object) -> object:
    """``value`` with every mapping key a string and bytes decoded, as JSON takes it."""
    if isinstance(value, dict):
        return {str(_jsonable(key)): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value.decode("latin-1") if isinstance(value, bytes) else value


def current_test() -> str:
    """The node id of the test running now (pytest sets PYTEST_CURRENT_TEST while a test or its fixtures run)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


class Figures(dict[str, Figure]):
    """The run's figures by name; a plain value assigned is recorded as a measurement of the test running now."""

    def __setitem__(self, name: str, value: object) -> None:
        if not isinstance(value, Figure):
            value = Figure(name, value if isinstance(value, int | float | str | dict | list) else str(value))
        if not value.test:
            value = Figure(value.name, value.measured, value.unit, value.goal, value.detail, current_test())
        super().__setitem__(name, value)


FIGURES = Figures()


def record(name: str, measured: Measured, goal: Goal | None = None, *, unit: str = "", detail: str = "") -> Figure:
    """Keep a figure for the report; ``goal`` judges it (its unit is the figure's)."""
    figure = Figure(name, measured, goal.unit if goal else unit, goal, detail)
    FIGURES[name] = figure
    return FIGURES[name]


def hold(name: str, measured: float, goal: Goal, *, detail: str = "") -> Figure:
    """``record``, then fail the test if the figure is past the goal's bound (missing the goal itself only shows
    in the report)."""
    figure = record(name, measured, goal, detail=detail)
    past = f"{name}: {figure.value_text()}, past the bound {goal.bound:g} {goal.unit}"
    assert goal.within_bound(measured), past + (f"; {detail}" if detail else "")
    return figure


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
    """Record the gateway's peak RSS against the figure its settings imply (the goal and the bound alike)."""
    implied = implied_rss_mib(url)
    hold(name, round(peak.mib), Goal("MiB", at_most=implied, bound=implied))


class Beside:
    """A normal request sent together with each hostile one, from a thread of its own: its outcomes, and its
    slowest answer with the case it went with."""

    def __init__(self, normal: Callable[[], object]) -> None:
        self.normal = normal
        self.outcomes: Counter[object] = Counter()
        self.worst_s, self.worst_case = 0.0, ""
        self.worst_outcome: object = None
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
