"""One benchmark run end to end: benchmark repository, stack, every scenario, analysis, the report's contents.

The gateway's in-process step timings are taken after the stack has stopped, so they see an idle machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import goals, model_step, profile
from bench import ort_alone as alone
from bench.costs import Measurement, PriceTable, measurements, measurements_from_report, rank_routes
from bench.inputs import PHONE_PHOTOGRAPHS, PHONE_SIZE, PHOTOGRAPHS, SHORT_SIDE, camera_photographs, photographs
from bench.machine import machine_info
from bench.ort_alone import Point
from bench.results import Report, Scenario
from bench.stack import StackOptions, running_stack, say
from bench.suite import CRUD_LOADED, GRPC_RESNET, Inputs, Plan, SuiteResult, Yardstick, run_cache_suite, run_suite
from bench.sweep import SweepPlan, run_sweep
from bench.variants import bench_repository, exported_model
from servables.repository import read_config


@dataclass(frozen=True)
class RunOptions:
    model: str
    repository: Path
    weights: str
    device: str
    fp16_repository: Path | None
    gateway_workers: int
    instance: str  # the instance kind this machine's throughput is priced as
    p99_target_ms: float
    ratio_level: int
    prices: PriceTable
    quick: bool
    compare: tuple[Path, ...] = ()  # other runs' report.json, ranked with this one in the cost table


def _where(machine: dict[str, object], device: str) -> str:
    gpus = machine.get("gpus")
    if device == "cuda" and isinstance(gpus, list) and gpus:
        return f"{str(gpus[0]).split(',')[0]} (GPU)"
    return f"{machine['cpu_model']}, {machine['cpu_cores']} cores (CPU)"


RESPONSE_CACHE_BYTES = 64 << 20  # scenario 10's Triton: about 15,000 answers of the network (4 KB each)
EDGE_SIZES = {"0.3mp": (640, 480), "2mp": (1632, 1224)}  # and the phone size, 12 MP


def _inputs(quick: bool) -> Inputs:
    """The run's photographs; a quick run takes one phone-size photograph per size (seconds, not minutes)."""
    names = PHONE_PHOTOGRAPHS[:1] if quick else PHONE_PHOTOGRAPHS
    phone = list(camera_photographs(PHONE_SIZE, names).values())
    sizes = {label: list(camera_photographs(size, names).values()) for label, size in EDGE_SIZES.items()}
    return Inputs(list(photographs().values()), phone, sizes | {"12mp": phone})


def _common_notes(options: RunOptions, jpegs: Sequence[bytes], machine: dict[str, object]) -> list[str]:
    instance = options.prices.instance(options.instance)
    hardware = f"{instance.gpus} x {instance.gpu_model}" if instance.gpus else f"{instance.vcpus} vCPUs"
    notes = [
        f"Inputs: {len(jpegs)} scikit-image photographs ({', '.join(PHOTOGRAPHS)}), shorter side brought within "
        f"{SHORT_SIDE[0]}-{SHORT_SIDE[1]} px, JPEG quality 90, {sum(map(len, jpegs)) / len(jpegs) / 1024:,.0f} KiB "
        "on average; every scenario cycles through the same bytes.",
        f"Costs price this machine's throughput as a {options.instance} ({hardware}, "
        f"${instance.usd_per_hour:g}/hour) running the whole stack: an assumption to state, not a measurement on "
        f"that instance. This machine: {_where(machine, options.device)}.",
    ]
    cores = machine["cpu_cores"]
    if not instance.gpus:
        notes.append(
            f"CPU attribution: this machine has {cores} cores of one thread each; a {options.instance}'s "
            f"{instance.vcpus} vCPUs are hyper-threads, {instance.vcpus // 2} physical cores. Equal physical cores "
            "is the premise; what hyper-threading adds is not counted, so CPU costs err on the expensive side"
            + ("." if instance.vcpus // 2 == cores else " (and the core counts differ here: scale accordingly).")
        )
    if options.quick:
        notes.insert(0, "QUICK MODE: tiny windows and a small model; a smoke test of the benchmark, not measurements.")
    return notes


def _suite_notes(plan: Plan, options: RunOptions, result: SuiteResult, inputs: Inputs) -> list[str]:
    background = result.background
    phone = inputs.phone
    notes = [
        f"Phone photos: {len(phone)} of the same photographs ({', '.join(PHONE_PHOTOGRAPHS[: len(phone)])}) at "
        f"{PHONE_SIZE[0]}x{PHONE_SIZE[1]} (12 MP), upscaled with a seeded sensor-like grain, JPEG quality 90, "
        f"{sum(map(len, phone)) / len(phone) / 1e6:,.2f} MB on average (bench/inputs.py); the edge route also gets "
        f"them at {', '.join(f'{w}x{h}' for w, h in EDGE_SIZES.values())}.",
        "Gateway vs gRPC: gRPC clients send the file's bytes (Triton decodes), as the gateway forwards them, so "
        "gateway / gRPC measures the gateway's own overhead (HTTP, header check, event loop, JSON).",
        "Peers: the FastAPI + ONNX Runtime app and LitServe (bench/peers.py) load the same model.onnx and labels "
        "as Triton, decode with OpenCV at full size and preprocess like export.preprocess.reference_preprocess; "
        "each at its best documented settings (bench/peers.py BEST), paused outside its own windows. The third, "
        "a hand-written FastAPI app in front of the same Triton (tritonclient.grpc.aio, no checks, limits, logs or "
        "metrics), prices what the gateway's own work costs: its CPU per request beside the gateway's.",
        "REST clients are aiohttp sessions (keep-alive, a connection per concurrent client): httpx spent 1-3.5 ms "
        "of client CPU per request here against aiohttp's 0.2, and the client shares the cores with the servers.",
        f"Gateway: {options.gateway_workers} uvicorn worker(s) as `python -m gateway` runs it (log level info, an "
        "access-log line per request, SQLite item store in WAL mode). Naive baseline: eager PyTorch "
        f"{options.model} on {options.device}, same weights ({options.weights}), FastAPI's thread pool.",
        f"CRUD: {plan.crud_items:,} items seeded; {100 * plan.read_fraction:.0f}% GET of a random item, the rest "
        "split between PUT (replace) and POST (create).",
        "The load generator, the gateway, Triton and the baseline share this machine's cores: the CPU table shows "
        "which process used what.",
    ]
    if background is not None:
        notes.append(
            f"Under load: REST classify ran at concurrency {background.concurrency} for the whole CRUD-under-load "
            f"run: {background.throughput_rps:,.1f} req/s, errors {background.errors or 0}."
        )
    return notes


def _routes(scenarios: Sequence[Scenario], options: RunOptions) -> tuple[dict[str, list[Measurement]], list[str]]:
    """Each route's operating points: this run's, priced as ``options.instance``, and the compared runs'."""
    routes = {s.name: measurements(options.instance, [lvl.load for lvl in s.levels]) for s in scenarios}
    routes.pop(CRUD_LOADED, None)  # interference, not a route of its own
    notes = []
    for path in options.compare:
        document = json.loads(path.read_text())
        for name, points in measurements_from_report(document).items():
            if name in routes:
                routes[name] += points
        notes.append(f"The cost table also ranks {path} ({document['title']}, priced as {document['instance']}).")
    return routes, notes


def _gpu_rate(options: RunOptions, result: SuiteResult) -> tuple[float | None, str]:
    """What a GPU classifies per second (the ResNet alone, best level): this run's on a GPU, else the best of the
    compared runs that were on one."""
    if options.device == "cuda":
        return profile.best_throughput(result.measured.get(GRPC_RESNET)), "this run's ResNet alone, best level"
    best: tuple[float | None, str] = (None, "")
    for path in options.compare:
        document = json.loads(path.read_text())
        if not options.prices.instance(document["instance"]).gpus:
            continue
        for point in measurements_from_report(document).get(GRPC_RESNET, []):
            if best[0] is None or point.throughput_rps > best[0]:
                best = (point.throughput_rps, f"the ResNet alone in {path} ({document['instance']}), best level")
    return best


def ort_alone(options: RunOptions, plan: Plan) -> tuple[list[Point], Yardstick | None]:
    """ONNX Runtime alone on the exported network (``bench.ort_alone``), in a process of its own, and the best of it
    to measure again in the headline rounds; none on a GPU."""
    if options.device != "cpu":
        return [], None
    folder = exported_model(options.repository, options.model)
    model, crop = str(folder / "1" / "model.onnx"), int(read_config(folder / "config.pbtxt").input[0].dims[-1])
    say(f"ONNX Runtime alone: {options.model} at batches {plan.ort_batches}, {plan.ort_seconds:g} s each setting")
    command = alone.command(model, plan.ort_batches, plan.ort_seconds, crop, list(alone.SETTINGS))
    points = alone.points_of(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    top = alone.best(points)
    return points, Yardstick(model, crop, top.setting, top.batch) if top else None


def benchmark(options: RunOptions, plan: Plan, workdir: Path) -> Report:
    """Every scenario against one stack; the report's contents."""
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_info()
    inputs = _inputs(options.quick)
    jpegs = inputs.imagenet
    models = bench_repository(
        options.repository, workdir / "models", options.model, options.device, options.fp16_repository
    )
    points, yardstick = ort_alone(options, plan)  # before the stack: nothing else running
    stack_options = StackOptions(options.model, options.weights, options.device, options.gateway_workers)
    with running_stack(workdir / "models", workdir, stack_options) as stack:
        result = asyncio.run(run_suite(plan, stack, models, inputs, workdir, yardstick))
    if plan.cache_levels:
        say(f"restarting Triton with its response cache on ({RESPONSE_CACHE_BYTES >> 20} MiB) for scenario 10")
        (workdir / "cached").mkdir()
        cached = dataclasses.replace(stack_options, naive=False, response_cache_bytes=RESPONSE_CACHE_BYTES)
        with running_stack(workdir / "models", workdir / "cached", cached) as stack:
            result.measured |= asyncio.run(run_cache_suite(plan, stack, models, inputs)).measured
    say("timing the path's own steps in-process")
    steps = profile.gateway_steps_ms(jpegs, repeats=3 if options.quick else 30)
    paths = profile.classify_paths(result.measured, (1, options.ratio_level), models.resnet, result.classify_steps)
    gpu_rate, gpu_where = _gpu_rate(options, result)
    scenarios = [item.scenario for item in result.measured.values()]
    low = min(plan.levels)
    high = options.ratio_level if options.ratio_level in plan.levels else max(plan.levels)
    routes, compared = _routes(scenarios, options)
    cores = len(os.sched_getaffinity(0))
    steps_alone = (
        [
            model_step.ort_alone_section(points),
            model_step.model_step_section(result.measured, models.resnet, points, cores),
        ]
        if points
        else []
    )
    return Report(
        title=f"Benchmark: {options.model} on {_where(machine, options.device)}",
        started_at=started_at,
        machine=machine,
        timing=plan.timing,
        scenarios=scenarios,
        ratios=goals.ratios(scenarios, options.ratio_level, options.device),
        costs=rank_routes(routes, options.prices, options.p99_target_ms),
        p99_target_ms=options.p99_target_ms,
        prices=options.prices,
        notes=_common_notes(options, jpegs, machine) + _suite_notes(plan, options, result, inputs) + compared,
        goals=goals.goals(scenarios, options.ratio_level, options.device, paths, alone.best(points), result.headline),
        sections=[
            *steps_alone,
            profile.paths_section(paths),
            profile.feed_section(paths, options.prices, gpu_rate, gpu_where),
            *([profile.cache_section(result.measured, models.resnet)] if plan.cache_levels else []),
            profile.classify_breakdown(result.measured, models.resnet, steps, low, high, result.classify_steps),
            profile.edges_section(result.measured),
            profile.cpu_section(result.measured),
        ],
        instance=options.instance,
        duration_s=time.monotonic() - started,
    )


def sweep(options: RunOptions, plan: SweepPlan, workdir: Path) -> Report:
    """The dynamic-batching sweep's report: one scenario per point and the ranking."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_info()
    jpegs = list(photographs().values())
    scenarios, ranking = run_sweep(options.repository, options.model, options.device, plan, workdir, jpegs)
    return Report(
        title=f"Dynamic-batching sweep: {options.model} on {_where(machine, options.device)}",
        started_at=started_at,
        machine=machine,
        timing=plan.timing,
        scenarios=scenarios,
        ratios=[],
        costs=rank_routes(_routes(scenarios, options)[0], options.prices, plan.p99_budget_ms),
        p99_target_ms=plan.p99_budget_ms,
        prices=options.prices,
        notes=_common_notes(options, jpegs, machine),
        sections=[ranking],
        instance=options.instance,
    )
