"""bench.loadgen against in-process fake services: counting, windows, caps and hooks.

Durations are tenths of a second; assertions are on counts and bounds, never on speed. Each test runs
its own event loop with asyncio.run, so no asyncio plugin is needed.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time

import pytest

from bench.loadgen import (
    LevelResult,
    Observers,
    RequestFailed,
    Timing,
    background_load,
    progress_line,
    run_level,
    run_levels,
)
from bench.stats import LatencySummary


class _Recorder:
    """A window observer that notes what it was told, and when."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, float]] = []

    async def window_opened(self, concurrency: int) -> None:
        self.events.append(("opened", concurrency, time.perf_counter()))

    async def window_closed(self, concurrency: int) -> None:
        self.events.append(("closed", concurrency, time.perf_counter()))

    def calls(self) -> list[tuple[str, int]]:
        return [(name, concurrency) for name, concurrency, _ in self.events]


def test_errors_are_counted_by_kind_and_excluded_from_latency() -> None:
    calls = itertools.count()

    async def send() -> None:
        await asyncio.sleep(0)
        if next(calls) % 3 == 2:
            raise RequestFailed("http_503")

    result = asyncio.run(run_level(send, 8, Timing(warmup_s=0.05, window_s=0.2, drain_s=1.0)))
    errors = result.errors["http_503"]
    assert set(result.errors) == {"http_503"}
    assert result.requests > 0 and result.latency.count == result.requests
    assert abs(errors - (result.requests + errors) / 3) <= 10  # every third call, give or take the edges
    assert result.window_s == pytest.approx(0.2)
    assert result.throughput_rps == result.requests / result.window_s
    assert not result.capped and result.abandoned == 0


def test_warm_up_is_not_measured_and_latency_is_the_send_time() -> None:
    async def send() -> None:
        await asyncio.sleep(0.01)

    result = asyncio.run(run_level(send, 1, Timing(warmup_s=0.15, window_s=0.15, drain_s=1.0)))
    assert result.requests <= 15  # at most one per 10 ms of window
    assert result.issued >= result.requests + 3  # the warm-up's requests were sent but not counted
    assert result.latency.p50_ms >= 9.9 and result.latency.max_ms >= result.latency.p99_ms


def test_request_cap_closes_the_window_early() -> None:
    recorder = _Recorder()

    async def send() -> None:
        await asyncio.sleep(0.001)

    started = time.perf_counter()
    result = asyncio.run(run_level(send, 4, Timing(warmup_s=0, window_s=30, drain_s=30, max_requests=50), recorder))
    assert time.perf_counter() - started < 10  # nowhere near the 30 s window
    assert result.issued == 50 and result.capped
    assert 0 < result.window_s < 10
    assert result.requests + sum(result.errors.values()) <= 50
    assert recorder.calls() == [("opened", 4), ("closed", 4)]
    assert recorder.events[1][2] - started < 10


def test_hard_time_cap_abandons_a_stuck_server() -> None:
    async def send() -> None:
        await asyncio.Event().wait()  # never answers

    started = time.perf_counter()
    result = asyncio.run(run_level(send, 16, Timing(warmup_s=0, window_s=0.1, drain_s=0.1)))
    assert time.perf_counter() - started < 5  # bounded by warm-up + window + drain, plus scheduling
    assert result.abandoned == 16 and result.issued == 16
    assert result.requests == 0 and result.errors == {} and result.throughput_rps == 0.0
    assert result.latency.p99_ms is None


def test_levels_run_in_order_with_a_progress_line_and_window_hooks_each() -> None:
    recorder = _Recorder()

    async def send() -> None:
        await asyncio.sleep(0)

    stream = io.StringIO()
    timing = Timing(warmup_s=0.02, window_s=0.05, drain_s=1.0)
    started = time.perf_counter()
    results = asyncio.run(run_levels(send, [1, 4], timing, label="trivial", observer=recorder, stream=stream))
    assert [result.concurrency for result in results] == [1, 4]
    assert recorder.calls() == [("opened", 1), ("closed", 1), ("opened", 4), ("closed", 4)]
    opened, closed = recorder.events[0][2] - started, recorder.events[1][2] - started
    assert opened >= 0.019 and closed >= 0.069  # not before the window opens (20 ms) or closes (70 ms)
    lines = stream.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [["[trivial]", "c=1"], ["[trivial]", "c=4"]]


def test_progress_line_names_errors_caps_and_abandoned_requests() -> None:
    result = LevelResult(
        concurrency=16,
        window_s=10.0,
        requests=1234,
        errors={"http_503": 2},
        throughput_rps=123.4,
        latency=LatencySummary(1234, 50.5, 95.2, 99.01, 50.5, 100.0),
        issued=1500,
        capped=True,
        abandoned=3,
    )
    line = progress_line("rest", result)
    assert line.startswith("[rest] c=16 ")
    for part in ("123.4 req/s in 10.0 s", "p50 50.5", "p95 95.2", "p99 99.0 ms", "http_503", "capped"):
        assert part in line
    assert line.endswith("abandoned 3")


def test_invalid_settings_are_refused() -> None:
    async def send() -> None:
        await asyncio.sleep(0)

    with pytest.raises(ValueError):
        asyncio.run(run_level(send, 0, Timing()))
    with pytest.raises(ValueError):
        Timing(window_s=0)
    with pytest.raises(ValueError):
        Timing(max_requests=0)


def test_several_observers_are_told_of_every_window() -> None:
    first, second = _Recorder(), _Recorder()

    async def send() -> None:
        await asyncio.sleep(0.001)

    asyncio.run(
        run_levels(send, [1, 2], Timing(0.01, 0.05, 1.0), observer=Observers(first, second), stream=io.StringIO())
    )
    expected = [("opened", 1), ("closed", 1), ("opened", 2), ("closed", 2)]
    assert first.calls() == expected and second.calls() == expected


def test_background_load_runs_for_the_block_and_counts_by_kind() -> None:
    calls = itertools.count()
    started = asyncio.Event()

    async def send() -> None:
        await asyncio.sleep(0.005)
        started.set()
        if next(calls) % 4 == 3:
            raise RequestFailed("http_429")

    async def scenario() -> tuple[bool, int, object]:
        async with background_load(send, 3, ready_timeout_s=5, drain_s=1) as stats:
            established = started.is_set()  # the block began only once a request had come back
            await asyncio.sleep(0.2)
        return established, len(asyncio.all_tasks()), stats

    established, tasks, stats = asyncio.run(scenario())
    assert established and tasks == 1  # every worker finished with the block: only the test's own task is left
    assert stats.concurrency == 3 and stats.seconds >= 0.2
    assert stats.completed > 20 and set(stats.errors) == {"http_429"}
    assert stats.throughput_rps == pytest.approx(stats.completed / stats.seconds)
