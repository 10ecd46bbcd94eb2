"""What Triton did during a measuring window: the difference of two inference-statistics snapshots.

Input is ``InferenceServerClient.get_inference_statistics(model_name, as_json=True)`` from
``tritonclient.grpc``: protobuf JSON, where int64 counters arrive as strings and zero-valued fields are
left out entirely, so every counter is read with a default of 0 and converted to ``int``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

Stats = Mapping[str, Any]

# The inference_stats durations that make up a request's time on the model after it left the queue.
_COMPUTE_PHASES = ("compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class TritonDelta:
    """Model-side figures over one window; the means are None when the window saw no such event."""

    model: str
    requests: int  # successful inference requests (inference_stats.success.count)
    inferences: int  # inference_count: batch elements, so a request of batch 4 counts 4
    executions: int  # execution_count: model runs; dynamic batching makes it smaller than inferences
    mean_batch_size: float | None  # inferences / executions
    mean_queue_ms: float | None  # per request, waiting for the scheduler
    mean_compute_ms: float | None  # per request, input + infer + output of the execution it was part of
    batch_histogram: dict[int, int]  # executed batch size -> executions of that size
    # per request, from arrival to response (success.ns / success.count): for an ensemble, all its steps
    mean_request_ms: float | None = None
    cache_hits: int = 0  # requests answered from Triton's response cache (the model did not run)
    cache_misses: int = 0  # requests it looked up in the cache and had to run


def _int(value: Any) -> int:
    return int(value or 0)


def _phase_delta(old: Stats, new: Stats, phase: str) -> tuple[int, int]:
    """(count, ns) added to one inference_stats phase between two snapshots of a model."""
    counters = [entry.get("inference_stats", {}).get(phase, {}) for entry in (old, new)]
    return (
        _int(counters[1].get("count")) - _int(counters[0].get("count")),
        _int(counters[1].get("ns")) - _int(counters[0].get("ns")),
    )


def _model_entry(snapshot: Stats, model: str, version: str) -> Stats:
    """The one model_stats entry for the model (and version, when several are loaded)."""
    entries = [
        entry
        for entry in snapshot.get("model_stats", [])
        if entry.get("name") == model and (not version or entry.get("version") == version)
    ]
    if len(entries) != 1:
        found = [(entry.get("name"), entry.get("version")) for entry in snapshot.get("model_stats", [])]
        raise ValueError(f"expected one statistics entry for {model!r} version {version!r}, found {found}")
    return entries[0]


def _histogram(entry: Stats) -> dict[int, int]:
    return {
        _int(batch.get("batch_size")): _int(batch.get("compute_infer", {}).get("count"))
        for batch in entry.get("batch_stats", [])
    }


def _mean_ms(ns: int, count: int) -> float | None:
    return ns / count / 1e6 if count else None


def triton_delta(before: Stats, after: Stats, model: str, version: str = "") -> TritonDelta:
    """Subtract two snapshots of one model's statistics (Triton's counters only grow while it runs)."""
    old, new = _model_entry(before, model, version), _model_entry(after, model, version)
    inferences = _int(new.get("inference_count")) - _int(old.get("inference_count"))
    executions = _int(new.get("execution_count")) - _int(old.get("execution_count"))
    if inferences < 0 or executions < 0:
        raise ValueError(f"statistics of {model!r} went backwards: was the server restarted in between?")
    success_count, success_ns = _phase_delta(old, new, "success")
    queue_count, queue_ns = _phase_delta(old, new, "queue")
    compute_count = _phase_delta(old, new, "compute_infer")[0]
    compute_ns = sum(_phase_delta(old, new, phase)[1] for phase in _COMPUTE_PHASES)
    old_histogram = _histogram(old)
    added = {size: count - old_histogram.get(size, 0) for size, count in sorted(_histogram(new).items())}
    return TritonDelta(
        model=model,
        requests=success_count,
        inferences=inferences,
        executions=executions,
        mean_batch_size=inferences / executions if executions else None,
        mean_queue_ms=_mean_ms(queue_ns, queue_count),
        mean_compute_ms=_mean_ms(compute_ns, compute_count),
        batch_histogram={size: count for size, count in added.items() if count > 0},
        mean_request_ms=_mean_ms(success_ns, success_count),
        cache_hits=_phase_delta(old, new, "cache_hit")[0],
        cache_misses=_phase_delta(old, new, "cache_miss")[0],
    )


class StatisticsClient(Protocol):
    """The part of ``tritonclient.grpc.aio.InferenceServerClient`` this module uses."""

    async def get_inference_statistics(
        self, model_name: str = "", model_version: str = "", as_json: bool = False
    ) -> Any: ...


class TritonWindow:
    """A ``bench.loadgen.WindowObserver``: Triton's figures over each level's measuring window.

    Snapshots bracket the window itself, so warm-up and drain (ramping and tapering batches) stay out.
    """

    def __init__(self, client: StatisticsClient, model: str, version: str = "") -> None:
        self.client = client
        self.model = model
        self.version = version
        self.deltas: dict[int, TritonDelta] = {}  # concurrency -> figures
        self._before: Stats = {}

    async def _snapshot(self) -> Stats:
        return await self.client.get_inference_statistics(
            model_name=self.model, model_version=self.version, as_json=True
        )

    async def window_opened(self, concurrency: int) -> None:
        self._before = await self._snapshot()

    async def window_closed(self, concurrency: int) -> None:
        after = await self._snapshot()
        self.deltas[concurrency] = triton_delta(self._before, after, self.model, self.version)
