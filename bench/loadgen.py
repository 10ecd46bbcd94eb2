"""Closed-loop load generator: ``concurrency`` workers each send a request, await it, and send the next.

A closed loop offers exactly as much load as the server absorbs, so throughput at a concurrency level is
what the service sustains with that many clients, and latency includes any queueing it causes. Each level
runs a warm-up (connections, caches, Triton's batcher settle), then a measuring window: a request counts
when it completes inside the window, and throughput is divided by the window's measured length. Every
level is bounded: by a request cap (which closes the window early) and by a hard time cap after which
requests still in flight are cancelled and reported as abandoned.

A scenario plugs in as ``send``: an async callable that performs one request and raises on failure.
Raise ``RequestFailed(kind)`` to name the failure; tritonclient's and the HTTP clients' own exceptions are
recognised too (``bench.stats.error_kind``). ``bench.scenarios`` holds the benchmark's sends; in short::

    import aiohttp
    from bench.loadgen import LevelResult, RequestFailed, Timing, run_levels

    async def classify_rest(base_url: str, jpeg: bytes) -> list[LevelResult]:
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(base_url, connector=connector) as client:

            async def send() -> None:
                async with client.post("/v1/classify", data=jpeg, headers={"content-type": "image/jpeg"}) as answer:
                    await answer.read()
                if answer.status != 200:
                    raise RequestFailed(f"http_{answer.status}")

            return await run_levels(send, [1, 4, 16, 64, 256], Timing(), label="rest")

``send`` must await real I/O: one that never suspends holds the event loop, and the other workers starve.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from bench.stats import LatencySummary, count_errors, error_kind, summarize_latencies, throughput

Send = Callable[[], Awaitable[None]]


class RequestFailed(Exception):
    """A failed request, named by ``kind`` (e.g. ``http_503``), so errors are counted by cause."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


class WindowObserver(Protocol):
    """Told when each level's measuring window opens and closes, e.g. to snapshot Triton's statistics."""

    async def window_opened(self, concurrency: int) -> None: ...

    async def window_closed(self, concurrency: int) -> None: ...


class Observers:
    """Several window observers as one (Triton's statistics of several models, CPU time), told together."""

    def __init__(self, *observers: WindowObserver) -> None:
        self.observers = observers

    async def window_opened(self, concurrency: int) -> None:
        await asyncio.gather(*(observer.window_opened(concurrency) for observer in self.observers))

    async def window_closed(self, concurrency: int) -> None:
        await asyncio.gather(*(observer.window_closed(concurrency) for observer in self.observers))


@dataclass(frozen=True)
class Timing:
    """How long each level runs; ``warmup_s + window_s + drain_s`` is a hard cap on a level's time."""

    warmup_s: float = 2.0
    window_s: float = 10.0
    drain_s: float = 10.0  # after the window, for requests still in flight to come back
    max_requests: int = 1_000_000  # per level, warm-up included; reaching it closes the window early

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.window_s <= 0 or self.drain_s < 0 or self.max_requests < 1:
            raise ValueError(f"invalid timing: {self}")


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level; ``requests`` and ``errors`` count completions inside the window only."""

    concurrency: int
    window_s: float  # the window's actual length: shorter than asked when max_requests closed it
    requests: int  # successful
    errors: dict[str, int]
    throughput_rps: float  # successful requests / window_s
    latency: LatencySummary  # of the successful requests
    issued: int  # every request sent, warm-up and drain included
    capped: bool  # max_requests was reached
    abandoned: int  # still in flight at the hard time cap, cancelled (a stuck server shows here)


async def _until(deadline: float, event: asyncio.Event) -> None:
    """Wait until ``deadline`` (perf_counter time) or until the event is set, whichever comes first."""
    with contextlib.suppress(asyncio.TimeoutError):  # not the builtin TimeoutError before Python 3.11
        await asyncio.wait_for(event.wait(), max(0.0, deadline - time.perf_counter()))


async def run_level(
    send: Send, concurrency: int, timing: Timing, observer: WindowObserver | None = None
) -> LevelResult:
    """Drive ``send`` from ``concurrency`` workers for one warm-up, window and drain."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    clock = time.perf_counter
    started = clock()
    window_start = started + timing.warmup_s
    stop_at = window_start + timing.window_s
    deadline = stop_at + timing.drain_s
    max_requests = timing.max_requests
    capped = asyncio.Event()
    issued = 0
    window_end = stop_at
    successes: list[tuple[float, float]] = []  # (end, latency) of completions after the warm-up
    failures: list[tuple[float, str]] = []  # (end, kind)

    async def worker() -> None:
        nonlocal issued, window_end
        while True:
            start = clock()
            if start >= stop_at or issued >= max_requests:
                return
            issued += 1
            if issued == max_requests:
                window_end = min(window_end, start)
                capped.set()
            try:
                await send()
            except Exception as exc:
                end = clock()
                if end >= window_start:
                    failures.append((end, error_kind(exc)))
            else:
                end = clock()
                if end >= window_start:
                    successes.append((end, end - start))

    async def observe(observer: WindowObserver) -> None:
        await _until(window_start, capped)
        await observer.window_opened(concurrency)
        await _until(stop_at, capped)
        await observer.window_closed(concurrency)

    watcher = asyncio.create_task(observe(observer)) if observer else None
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    done, pending = await asyncio.wait(workers, timeout=max(0.0, deadline - clock()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # a worker only dies of a BaseException or a bug here: let it surface
    if watcher:  # bounded too: a statistics call that hangs fails the level instead of stalling the run
        await asyncio.wait_for(watcher, max(0.0, deadline - clock()))

    window_s = max(0.0, window_end - window_start)
    latencies = [latency for end, latency in successes if end <= window_end]
    return LevelResult(
        concurrency=concurrency,
        window_s=window_s,
        requests=len(latencies),
        errors=count_errors(kind for end, kind in failures if end <= window_end),
        throughput_rps=throughput(len(latencies), window_s),
        latency=summarize_latencies(latencies),
        issued=issued,
        capped=capped.is_set(),
        abandoned=len(pending),
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def progress_line(label: str, result: LevelResult) -> str:
    """One line per level, for a person watching a long run."""
    latency = result.latency
    notes = [f"errors {result.errors}"] if result.errors else []
    if result.capped:
        notes.append("capped")
    if result.abandoned:
        notes.append(f"abandoned {result.abandoned}")
    return (
        f"[{label}] c={result.concurrency:<4} {result.throughput_rps:10.1f} req/s in {result.window_s:.1f} s"
        f"  p50 {_ms(latency.p50_ms)}  p95 {_ms(latency.p95_ms)}  p99 {_ms(latency.p99_ms)} ms"
        + "".join(f"  {note}" for note in notes)
    )


async def run_levels(
    send: Send,
    levels: Sequence[int],
    timing: Timing,
    *,
    label: str = "",
    observer: WindowObserver | None = None,
    stream: TextIO | None = None,
) -> list[LevelResult]:
    """Run each concurrency level in turn, printing a progress line per level (to stderr by default)."""
    results = []
    for concurrency in levels:
        result = await run_level(send, concurrency, timing, observer)
        print(progress_line(label, result), file=stream or sys.stderr, flush=True)
        results.append(result)
    return results


@dataclass
class Background:
    """What a background load did while it ran; filled in when it stops."""

    concurrency: int
    completed: int = 0  # successful requests that came back while the block ran
    errors: dict[str, int] = field(default_factory=dict)  # likewise
    seconds: float = 0.0  # from the first request sent to the end of the block

    @property
    def throughput_rps(self) -> float:
        return throughput(self.completed, self.seconds)


@contextlib.asynccontextmanager
async def background_load(
    send: Send, concurrency: int, ready_timeout_s: float, drain_s: float
) -> AsyncIterator[Background]:
    """Keep ``concurrency`` workers sending while the block runs (e.g. inference saturating the machine while
    CRUD is measured). The block starts once the first request has come back, so the load is established;
    on exit, requests in flight get ``drain_s`` to finish and are then cancelled."""
    stats = Background(concurrency)
    first = asyncio.Event()
    stopping = False
    kinds: list[str] = []

    async def worker() -> None:
        while not stopping:
            try:
                await send()
            except Exception as exc:
                if not stopping:
                    kinds.append(error_kind(exc))
            else:
                stats.completed += 0 if stopping else 1
            first.set()

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await _until(started + ready_timeout_s, first)
        yield stats
    finally:
        stopping = True
        stats.seconds = time.perf_counter() - started
        _, pending = await asyncio.wait(workers, timeout=drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        stats.errors = count_errors(kinds)
