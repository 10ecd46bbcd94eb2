"""Pure statistics for the load generator: percentiles, throughput, error kinds.

Percentiles use linear interpolation between closest ranks, numpy's default (``method="linear"``):
the q-th percentile of n sorted values sits at position ``q / 100 * (n - 1)``. Unlike nearest-rank it
moves smoothly with q, so p99 of a short window is not pinned to its single slowest request.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, so one sort serves every percentile."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    position = q / 100 * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass(frozen=True)
class LatencySummary:
    """Latency of the successful requests in a window, in milliseconds; None when there were none."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None


def summarize_latencies(latencies_s: Iterable[float]) -> LatencySummary:
    """Summarise latencies given in seconds (what ``time.perf_counter`` differences are)."""
    ms = sorted(value * 1000.0 for value in latencies_s)
    if not ms:
        return LatencySummary(0, None, None, None, None, None)
    return LatencySummary(
        count=len(ms),
        p50_ms=percentile(ms, 50),
        p95_ms=percentile(ms, 95),
        p99_ms=percentile(ms, 99),
        mean_ms=math.fsum(ms) / len(ms),
        max_ms=ms[-1],
    )


def throughput(count: int, seconds: float) -> float:
    """Requests per second; an empty window (cut short before it opened) measures nothing, hence 0."""
    if seconds < 0:
        raise ValueError(f"negative window: {seconds}")
    return count / seconds if seconds > 0 else 0.0


def error_kind(exc: BaseException) -> str:
    """A short, stable name for a failure, so errors can be counted by cause rather than by message.

    Recognised by shape, so this module needs neither httpx nor tritonclient: an explicit ``kind``
    attribute (``bench.loadgen.RequestFailed``), an HTTP response status (``httpx.HTTPStatusError``), a gRPC
    status code (``grpc.aio.AioRpcError.code()``, or tritonclient's ``InferenceServerException.status()``,
    which is a string such as ``"StatusCode.UNAVAILABLE"``), a timeout; otherwise the exception's class name.
    """
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str) and kind:
        return kind
    status_code = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status_code, int):
        return f"http_{status_code}"
    for accessor in ("code", "status"):
        method = getattr(exc, accessor, None)
        value = method() if callable(method) else None
        if value is not None:
            name = getattr(value, "name", None) or str(value).rpartition(".")[2]
            return f"grpc_{name}"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # distinct classes before Python 3.11
        return "timeout"
    return type(exc).__name__


def count_errors(kinds: Iterable[str]) -> dict[str, int]:
    """Occurrences per kind, sorted by kind so reports diff cleanly between runs."""
    return dict(sorted(Counter(kinds).items()))
