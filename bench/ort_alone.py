"""ONNX Runtime alone on preprocessed tensors, in a process of its own: what this machine does with the model when
nothing else runs, and what an image costs in CPU, at the batch sizes and thread settings Triton's runner uses.

Three ways to use the cores, each at several batch sizes, each point for a fixed time:

- ``threads``: one run at a time on a session with an intra-op thread per core, spinning off: the runner's
  session for a lone image (and what it used for every batch before ``Slices``);
- ``slices``: one single-threaded session, one run per core at once, each on its share of the batch: the
  runner's ``Slices`` (``servables/python_models/onnx_runner.py``), for batches of at least one image per core;
- ``defaults``: ONNX Runtime's own defaults (a thread per physical core, workers spinning while they wait for
  work): what the peers' sessions get unless told otherwise.

CPU is this process's, from schedstat (``bench.process_cpu``); throughput is images over wall time. The benchmark
runs it before the stack starts (``python -m bench.ort_alone MODEL.onnx --json``) and reads the JSON it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort

from bench.process_cpu import thread_ns
from servables import names

THREADS, SLICES, DEFAULTS = "threads", "slices", "defaults"
SETTINGS = {
    THREADS: "one run, an intra-op thread per core, spinning off (the runner, a lone image)",
    SLICES: "a single-threaded run per core at once (the runner, a batch)",
    DEFAULTS: "ONNX Runtime's defaults: a thread per physical core, spinning on (the peers)",
}


@dataclass(frozen=True)
class Point:
    setting: str
    batch: int
    images: int
    seconds: float
    cpu_s: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_ms_per_image(self) -> float:
        return self.cpu_s / self.images * 1000


def _session(path: str, threads: int, spinning: bool | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _runner(path: str, setting: str, cores: int, pool: ThreadPoolExecutor) -> Callable[[np.ndarray], object]:
    """One batch through ``setting``."""
    if setting != SLICES:
        session = _session(path, cores, False) if setting == THREADS else _session(path, 0, None)
        return lambda batch: session.run(None, {names.INPUT: batch})
    single = _session(path, 1, False)
    return lambda batch: list(pool.map(lambda part: single.run(None, {names.INPUT: part}), np.split(batch, cores)))


def measure(
    path: str, batches: Sequence[int], seconds: float, crop: int = 224, settings: Sequence[str] = tuple(SETTINGS)
) -> list[Point]:
    """Every setting at every batch size (slices only where each core gets an image), ``seconds`` each."""
    cores = len(os.sched_getaffinity(0))
    rng = np.random.default_rng(0)
    points = []
    with ThreadPoolExecutor(cores) as pool:
        for setting in settings:
            run = _runner(path, setting, cores, pool)
            for batch in batches:
                if setting == SLICES and batch < cores:
                    continue
                tensor = rng.standard_normal((batch, 3, crop, crop), dtype=np.float32)
                run(tensor)  # ONNX Runtime allocates and plans on the first run of a shape
                images, started, cpu = 0, time.perf_counter(), sum(thread_ns([os.getpid()]).values())
                while (elapsed := time.perf_counter() - started) < seconds:
                    run(tensor)
                    images += batch
                spent = (sum(thread_ns([os.getpid()]).values()) - cpu) / 1e9
                points.append(Point(setting, batch, images, elapsed, spent))
    return points


def command(model: str, batches: Sequence[int], seconds: float, crop: int, settings: Sequence[str]) -> list[str]:
    """This module as a process of its own, printing JSON (what the benchmark runs)."""
    return [
        sys.executable, "-m", "bench.ort_alone", model, "--json", "--crop", str(crop), "--seconds", str(seconds),
        "--batches", ",".join(map(str, batches)), "--settings", ",".join(settings),
    ]  # fmt: skip


def points_of(output: str) -> list[Point]:
    return [Point(**point) for point in json.loads(output)]


def best(points: Sequence[Point]) -> Point | None:
    """The point with the most images per second: the machine's limit for this model."""
    return max(points, key=lambda point: point.images_per_s, default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ort_alone", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model.onnx taking INPUT float32 [N, 3, S, S]")
    parser.add_argument("--batches", default="1,2,4,8,16", help="batch sizes (1,2,4,8,16)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per point (3)")
    parser.add_argument("--crop", type=int, default=224, help="the input's side (224)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"which of {', '.join(SETTINGS)} (all)")
    parser.add_argument("--json", action="store_true", help="print the points as JSON")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    points = measure(args.model, batches, args.seconds, args.crop, args.settings.split(","))
    if args.json:
        json.dump([asdict(point) for point in points], sys.stdout)
    else:
        for p in points:
            print(f"{p.setting:9} batch {p.batch:3}: {p.images_per_s:6.1f} img/s, {p.cpu_ms_per_image:6.1f} CPU-ms/img")
    return 0


if __name__ == "__main__":
    sys.exit(main())
