"""``python -m bench``: every scenario in one run on this machine, then the report (JSON, Markdown, PNG plots).

Presets per device keep ``make bench`` a single command: on ``cpu`` (the default) levels 1-64 for the ResNet
scenarios and the peers, 6-second windows, ONNX Runtime alone first and three interleaved rounds of the headline
ratios; on ``cuda`` levels to 512, eight gateway workers and p5.4xlarge prices. How long a run takes follows from
its plan: it says so when it starts (``Plan.planned_s``), and the report says how long it took. ``--quick``
shrinks everything to a smoke test of seconds (``tests/integration/test_bench_e2e.py``); ``--sweep`` runs the
dynamic-batching sweep instead of the scenarios. Any option given explicitly overrides the preset.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from bench.costs import DEFAULT_PRICES, load_prices
from bench.loadgen import Timing
from bench.report import summary, write_report
from bench.run import RunOptions, benchmark, sweep
from bench.stack import say
from bench.suite import Plan, ScenarioFailed
from bench.sweep import SweepPlan
from bench.variants import MissingExport
from launcher.process import ServiceError

ROOT = Path(__file__).resolve().parent.parent

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "model": "resnet50",
        "repository": ROOT / "model_repository",
        "levels": (1, 4, 16, 64),  # 256 ResNet-50 clients on 2 cores (about 19 img/s) would only measure a queue
        "light_levels": (1, 4, 16, 64, 256),
        "phone_levels": (1, 4),
        "crud_levels": (1, 16, 64),
        "load_concurrency": 64,
        "ratio_level": 16,
        "warmup_s": 2.0,
        "window_s": 6.0,  # 6 s still holds 100+ requests at c=64
        "drain_s": 15.0,  # 64 naive requests in flight at about 6/s need about 11 s to come back
        "gateway_workers": 1,
        "instance": "c7i.xlarge",
        "sweep_concurrency": 16,
        "p99_budget_ms": 1500.0,  # 16 clients at about 19 img/s wait about 0.85 s each
        "crud_items": 1000,
        "ort_batches": (1, 2, 4, 8, 16),
        "ort_seconds": 3.0,
        "cache_levels": (1, 16),
        "distinct_photos": 800,
        "repeats": 3,
        "headline_levels": (1, 16, 64),
        "headline_window_s": 4.0,
    },
    "cuda": {
        "model": "resnet50",
        "repository": ROOT / "model_repository",
        "levels": (1, 4, 16, 64, 256, 512),
        "light_levels": (1, 4, 16, 64, 256, 512),
        "phone_levels": (1, 4, 16, 64),
        "crud_levels": (1, 16, 64),
        "load_concurrency": 512,
        "ratio_level": 16,
        "warmup_s": 2.0,
        "window_s": 10.0,
        "drain_s": 10.0,
        "gateway_workers": 8,  # HTTP and header checks are CPU work: one process cannot feed a GPU
        "instance": "p5.4xlarge",
        "sweep_concurrency": 256,
        "p99_budget_ms": 50.0,
        "crud_items": 1000,
        "ort_batches": (1,),  # ONNX Runtime alone is the CPU's yardstick: not run on a GPU
        "ort_seconds": 0.0,
        "cache_levels": (1, 256),
        "distinct_photos": 8000,
        "repeats": 0,  # the GPU goals are absolute
        "headline_levels": (16,),
        "headline_window_s": 10.0,
    },
}
QUICK = {
    "model": "resnet18",
    "repository": ROOT / "build" / "test-repository",
    "levels": (1, 4),
    "light_levels": (4,),  # one level each for edges and CRUD: their ratios are at 4, the rest is the same code
    "phone_levels": (1,),
    "crud_levels": (4,),
    "load_concurrency": 4,
    "ratio_level": 4,
    "warmup_s": 0.2,
    "window_s": 1.0,  # a phone photo takes up to half a second here: a window must hold a few
    "drain_s": 5.0,
    "sweep_concurrency": 4,
    "crud_items": 100,
    "ort_batches": (1, 2),
    "ort_seconds": 0.3,
    "cache_levels": (1,),
    "distinct_photos": 100,
    "repeats": 1,
    "headline_levels": (1, 4),
    "headline_window_s": 0.5,  # ImageNet-size photos: ten or more per window at c=1 here
}


def _integers(text: str, minimum: int = 1) -> tuple[int, ...]:
    """Comma-separated integers, each at least ``minimum`` (concurrency levels, batch sizes, counts)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if min(values) < minimum:
        raise argparse.ArgumentTypeError(f"expected integers of at least {minimum}, got {text!r}")
    return values


def _delays(text: str) -> tuple[int, ...]:
    return _integers(text, minimum=0)


def _preferred(text: str) -> tuple[int, ...]:
    return () if text == "none" else _integers(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    mode = parser.add_argument_group("mode")
    mode.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="selects the preset (default: cpu)")
    mode.add_argument("--quick", action="store_true", help="seconds-long smoke test: resnet18, levels 1 and 4")
    mode.add_argument("--sweep", action="store_true", help="run the dynamic-batching sweep instead of the scenarios")
    mode.add_argument("--out", type=Path, default=ROOT / "build" / "bench", help="report folder (default: build/bench)")

    stack = parser.add_argument_group("what runs")
    stack.add_argument("--model", help="the exported ResNet (cpu/cuda: resnet50, quick: resnet18)")
    stack.add_argument(
        "--repository", type=Path, help="exported repository (model_repository; quick: build/test-repository)"
    )
    stack.add_argument("--weights", default="seed:0", help="the naive baseline's weights: those the export used")
    stack.add_argument(
        "--fp16-repository", type=Path, help="an FP16 export (`python -m export --fp16`) to add as a scenario"
    )
    stack.add_argument("--gateway-workers", type=int, help="uvicorn workers (cpu: 1, cuda: 8)")

    load = parser.add_argument_group("load")
    load.add_argument("--levels", type=_integers, help="ResNet scenarios' and peers' levels (cpu: 1,4,16,64)")
    load.add_argument("--phone-levels", type=_integers, help="phone photos' levels (cpu: 1,4; quick: 1)")
    load.add_argument("--light-levels", type=_integers, help="edge detection's levels (cpu: 1,4,16,64,256)")
    load.add_argument("--crud-levels", type=_integers, help="CRUD's levels (1,16,64)")
    load.add_argument("--crud-items", type=int, help="items seeded for CRUD (1000)")
    load.add_argument("--load-concurrency", type=int, help="REST classify clients while CRUD runs under load (cpu: 64)")
    load.add_argument("--warmup-s", type=float, help="per level, before the window (2)")
    load.add_argument("--window-s", type=float, help="the measuring window per level (cpu: 6, cuda: 10)")
    load.add_argument(
        "--drain-s", type=float, help="per level, for requests in flight to come back (cpu: 15, cuda: 10)"
    )
    load.add_argument("--ort-batches", type=_integers, help="ONNX Runtime alone's batch sizes (cpu: 1,2,4,8,16)")
    load.add_argument("--ort-seconds", type=float, help="ONNX Runtime alone, per batch size and setting (cpu: 3)")
    load.add_argument("--cache-levels", type=_integers, help="scenario 10's levels, the response cache on (cpu: 1,16)")
    load.add_argument("--distinct-photos", type=int, help="scenario 10's photos that never repeat (cpu: 800)")
    load.add_argument("--repeats", type=int, help="interleaved rounds of the headline ratios (cpu: 3; 0: none)")
    load.add_argument("--headline-levels", type=_integers, help="the headline rounds' levels (cpu: 1,16,64)")
    load.add_argument("--headline-window-s", type=float, help="each headline window (cpu: 4)")

    verdicts = parser.add_argument_group("report")
    verdicts.add_argument("--ratio-level", type=int, help="concurrency of the side-by-side ratios (16)")
    verdicts.add_argument(
        "--instance", help="instance kind this machine is priced as (cpu: c7i.xlarge, cuda: p5.4xlarge)"
    )
    verdicts.add_argument("--p99-target-ms", type=float, default=100.0, help="latency target of the cost table (100)")
    verdicts.add_argument(
        "--compare", type=Path, action="append", default=[], metavar="REPORT_JSON",
        help="another run's report.json (e.g. the GPU host's) to rank per route with this one in the cost table",
    )  # fmt: skip
    verdicts.add_argument("--prices", type=Path, default=DEFAULT_PRICES, help="price table (bench/prices.toml)")

    tuning = parser.add_argument_group("sweep")
    tuning.add_argument("--sweep-concurrency", type=int, help="scenario 3's concurrency (cpu: 16, cuda: 256)")
    tuning.add_argument("--sweep-delays-us", type=_delays, default=(0, 500, 2000, 10000), help="max queue delays")
    tuning.add_argument(
        "--sweep-preferred", type=_preferred, nargs="+", default=[(), (4, 8)],
        help="preferred batch sizes per point: `none` or e.g. 4,8 (default: none 4,8)",
    )  # fmt: skip
    tuning.add_argument("--sweep-instances", type=_integers, default=(1, 2), help="instance counts (1,2)")
    tuning.add_argument("--p99-budget-ms", type=float, help="the sweep's latency budget (cpu: 1500, cuda: 50)")

    args = parser.parse_args(argv)
    preset = PRESETS[args.device] | (QUICK if args.quick else {})
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.device == "cpu" and args.fp16_repository:
        parser.error("--fp16-repository is for --device cuda (FP16 on a CPU only measures emulation)")
    return args


def _terminate(signum: int, frame: object) -> NoReturn:
    """SIGTERM unwinds like Ctrl-C, so every server is stopped on the way out."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    options = RunOptions(
        model=args.model,
        repository=args.repository,
        weights=args.weights,
        device=args.device,
        fp16_repository=args.fp16_repository,
        gateway_workers=args.gateway_workers,
        instance=args.instance,
        p99_target_ms=args.p99_target_ms,
        ratio_level=args.ratio_level,
        prices=load_prices(args.prices),
        quick=args.quick,
        compare=tuple(args.compare),
    )
    options.prices.instance(options.instance)  # an unknown kind fails now, not after ten minutes
    timing = Timing(warmup_s=args.warmup_s, window_s=args.window_s, drain_s=args.drain_s)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        if args.sweep:
            sweep_plan = SweepPlan(
                args.sweep_concurrency, args.sweep_delays_us, tuple(args.sweep_preferred), args.sweep_instances,
                args.p99_budget_ms, timing,
            )  # fmt: skip
            report = sweep(options, sweep_plan, workdir)
        else:
            plan = Plan(
                args.levels, args.light_levels, args.crud_levels, args.load_concurrency, timing, args.crud_items,
                args.phone_levels, ort_batches=args.ort_batches, ort_seconds=args.ort_seconds,
                cache_levels=args.cache_levels, distinct_photos=args.distinct_photos, repeats=args.repeats,
                headline_levels=args.headline_levels, headline_window_s=args.headline_window_s,
                ratio_level=args.ratio_level,
            )  # fmt: skip
            say(f"this run's plan takes about {plan.planned_s / 60:.0f} minutes")
            report = benchmark(options, plan, workdir)
    except (MissingExport, ScenarioFailed, ServiceError) as exc:  # Triton's errors are ServiceErrors
        say(f"failed: {exc}")
        say(f"logs kept in {workdir}")
        return 1
    except KeyboardInterrupt:
        say(f"interrupted; every server stopped; logs kept in {workdir}")
        return 130
    shutil.rmtree(workdir, ignore_errors=True)
    files = write_report(report, args.out)
    print(summary(report))
    print(
        f"\nreport: {files.markdown}  (JSON {files.json.name}, plots {files.throughput_png.name}, {files.p99_png.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
