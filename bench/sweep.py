"""Model Analyzer style sweep: which dynamic-batching settings give the most throughput within a p99 budget.

Each point is the exported ResNet under a variant config (``bench.variants``: max queue delay, preferred batch
sizes, instance count), served by a fresh Triton, driven with scenario 3's preprocessed tensors at one
concurrency. A restart per point keeps points independent (no warm caches or queues carried over).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import scenarios as sc
from bench.loadgen import LevelResult, Timing, run_level
from bench.results import Level, Scenario, Section
from bench.stack import say
from bench.triton_stats import TritonDelta, TritonWindow
from bench.variants import batching_of, exported_model, sweep_repository
from launcher.process import free_ports
from launcher.triton import Ports, TritonServer
from servables.specs import Batching


@dataclass(frozen=True)
class SweepPlan:
    concurrency: int
    delays_us: tuple[int, ...]
    preferred: tuple[tuple[int, ...], ...]  # () is "no preference"
    instances: tuple[int, ...]
    p99_budget_ms: float
    timing: Timing


def points(base: Batching, plan: SweepPlan) -> list[Batching]:
    """Every combination, on top of the exported settings (batch and queue limits kept)."""
    grid = itertools.product(plan.delays_us, plan.preferred, plan.instances)
    return [
        dataclasses.replace(base, max_queue_delay_us=delay, preferred_batch_sizes=preferred, instances=instances)
        for delay, preferred, instances in grid
    ]


def _preferred(batching: Batching) -> str:
    return ",".join(map(str, batching.preferred_batch_sizes)) or "-"


def _key(batching: Batching) -> str:
    preferred = "-".join(map(str, batching.preferred_batch_sizes)) or "none"
    return f"delay{batching.max_queue_delay_us}_preferred{preferred}_instances{batching.instances}"


def _title(batching: Batching) -> str:
    return (
        f"max queue delay {batching.max_queue_delay_us} us, preferred {_preferred(batching)}, "
        f"{batching.instances} instance(s)"
    )


async def _measure(
    url: str, model: str, jpegs: Sequence[bytes], plan: SweepPlan
) -> tuple[LevelResult, TritonDelta | None]:
    client = sc.grpc_client(url)
    try:
        tensors = sc.preprocessed(jpegs)
        window = TritonWindow(client, model)
        load = await run_level(sc.infer_tensors(client, model, tensors), plan.concurrency, plan.timing, window)
        return load, window.deltas.get(plan.concurrency)
    finally:
        await client.close()


def run_sweep(
    source: Path, model: str, device: str, plan: SweepPlan, workdir: Path, jpegs: Sequence[bytes]
) -> tuple[list[Scenario], Section]:
    """Measure every point; the scenarios (one level each) and the ranking table for the report."""
    exported = batching_of(exported_model(source, model))
    measured: list[tuple[Batching, Level]] = []
    grid = points(exported, plan)
    for index, batching in enumerate(grid, start=1):
        repository = workdir / f"sweep-{index}"
        sweep_repository(source, repository, model, batching, device)
        say(f"sweep {index}/{len(grid)}: {_title(batching)}")
        triton = TritonServer(  # the delays are the points measured: kept on a CPU host too
            repository, Ports(*free_ports(3)), exit_timeout_s=10, log_path=workdir / f"triton-{index}.log",
            batch_delay=True,
        )  # fmt: skip
        with triton:
            load, delta = asyncio.run(_measure(triton.grpc_url, model, jpegs, plan))
        say(f"  {load.throughput_rps:,.1f} req/s, p99 {load.latency.p99_ms or float('nan'):,.1f} ms")
        measured.append((batching, Level(load, delta)))
    return [Scenario(_key(b), _title(b), [level]) for b, level in measured], ranking(measured, exported, plan)


def ranking(measured: Sequence[tuple[Batching, Level]], exported: Batching, plan: SweepPlan) -> Section:
    """Points by throughput, best first, each marked within the p99 budget or not."""

    def within(level: Level) -> bool:
        p99 = level.load.latency.p99_ms
        return p99 is not None and p99 <= plan.p99_budget_ms and not level.load.errors

    ordered = sorted(measured, key=lambda point: point[1].load.throughput_rps, reverse=True)
    rows: list[list[str | int | float | None]] = []
    for batching, level in ordered:
        load, triton = level.load, level.triton
        rows.append(
            [
                batching.max_queue_delay_us,
                _preferred(batching),
                batching.instances,
                load.throughput_rps,
                load.latency.p50_ms,
                load.latency.p99_ms,
                triton.mean_batch_size if triton else None,
                triton.mean_queue_ms if triton else None,
                sum(load.errors.values()),
                ("yes" if within(level) else "no") + (" (exported)" if batching == exported else ""),
            ]
        )
    best = next(((b, level) for b, level in ordered if within(level)), None)
    findings = (
        [f"Best within p99 {plan.p99_budget_ms:g} ms: {_title(best[0])}, {best[1].load.throughput_rps:,.1f} req/s."]
        if best
        else [f"No point kept p99 within {plan.p99_budget_ms:g} ms at concurrency {plan.concurrency}."]
    )
    return Section(
        title=f"Dynamic-batching sweep: the ResNet alone at concurrency {plan.concurrency}",
        text=(
            f"Each row is a fresh Triton serving the exported network under one setting; best throughput first. "
            f"Within budget: p99 at most {plan.p99_budget_ms:g} ms and no errors."
        ),
        header=["max queue delay us", "preferred", "instances", "req/s", "p50 ms", "p99 ms", "mean batch",
                "queue ms", "errors", "within budget"],
        rows=rows,
        findings=findings,
    )  # fmt: skip
