"""The headline ratios with interleaved repeats: ours, a peer, the other peer, ours again, ..., each a short window
at the same concurrency, so what drifts on a shared machine (another process's load, caches, clocks) falls on every
side alike. A ratio is the median of its repeats' ratios, reported with their spread.

A peer not being measured is paused (``SIGSTOP`` to its process group: LitServe's worker polls its queue even when
idle), and resumed for its own windows; our stack only waits between its windows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from bench.loadgen import Send, Timing, run_level
from bench.stack import say

OURS = "rest"  # the gateway, REST
GRPC = "grpc"  # straight to Triton's classify ensemble
ORT_ALONE = "ort-alone"  # ONNX Runtime alone at its best setting and batch (images per second)

Probe = Callable[[], Awaitable[float]]  # a throughput measured some other way, once a round (ONNX Runtime alone)


@dataclass(frozen=True)
class System:
    send: Send
    pid: int | None = None  # a peer's process group, paused outside its windows; None: ours, never paused


@dataclass(frozen=True)
class Repeats:
    """One concurrency: each system's throughput and mean latency per repeat, in the order the repeats ran."""

    concurrency: int
    throughput: dict[str, list[float]] = field(default_factory=dict)
    latency_ms: dict[str, list[float | None]] = field(default_factory=dict)

    def ratios(self, numerator: str, denominators: Sequence[str]) -> list[float]:
        """Per repeat: ``numerator``'s throughput over the best of ``denominators`` in that repeat."""
        found = []
        for i, top in enumerate(self.throughput.get(numerator, [])):
            bottom = max((self.throughput[name][i] for name in denominators if name in self.throughput), default=0)
            if bottom > 0:
                found.append(top / bottom)
        return found


def spread(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(median, lowest, highest), or None without values."""
    return (statistics.median(values), min(values), max(values)) if values else None


@contextlib.contextmanager
def resumed(pid: int | None) -> Iterator[None]:
    """A paused peer's process group running for the block (``None``: ours, which is never paused)."""
    if pid is not None:
        os.killpg(pid, signal.SIGCONT)
    try:
        yield
    finally:
        if pid is not None:
            os.killpg(pid, signal.SIGSTOP)


@contextlib.contextmanager
def paused(pids: Sequence[int]) -> Iterator[None]:
    """The peers' process groups paused for the block, and running again after it (to be stopped as usual)."""
    for pid in pids:
        os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)


async def interleave(
    systems: Mapping[str, System],
    concurrency: int,
    repeats: int,
    timing: Timing,
    probes: Mapping[str, Probe] | None = None,
) -> Repeats:
    """``repeats`` rounds of one window per system, the order rotated each round (so no system always follows the
    same one), then each probe; call inside ``paused``."""
    result = Repeats(concurrency)
    names = list(systems)
    for round_ in range(repeats):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            with resumed(systems[name].pid):
                level = await run_level(systems[name].send, concurrency, timing)
            result.throughput.setdefault(name, []).append(level.throughput_rps)
            result.latency_ms.setdefault(name, []).append(level.latency.mean_ms)
        for name, probe in (probes or {}).items():
            result.throughput.setdefault(name, []).append(await probe())
        say(
            f"headline c={concurrency}, round {round_ + 1}/{repeats}: "
            + ", ".join(f"{name} {result.throughput[name][-1]:,.1f} req/s" for name in [*names, *(probes or {})])
        )
    return result
