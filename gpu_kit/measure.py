"""The kit's measurements: classify over gRPC with encoded JPEG bytes, per decode path, precision, input size.

Per concurrency level (``bench.loadgen``'s closed loop): throughput and latency, the CPU seconds of Triton and
its python-backend stubs (``bench.process_cpu``, read from /proc) and of the load generator per classification,
the mean batch the ResNet and the decode step executed (``bench.triton_stats``) and, where ``nvidia-smi`` is
there, the GPU's mean utilisation over the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import aio as grpcclient

from bench.inputs import RoundRobin, camera_photographs, photographs
from bench.loadgen import LevelResult, Observers, Timing, run_level
from bench.process_cpu import CpuWindow
from bench.triton_stats import TritonWindow
from export.network import class_names
from gpu_kit.repository import Variant, resnet_name, variants, write_repository
from launcher.process import on_free_ports
from launcher.triton import Ports, TritonServer, find_install
from servables import names

TOP_K = 5
CUDA_POOL_BYTES = 256 * 1024 * 1024  # GPU tensors between the server and the stubs: a batch of 64 preprocessed


class KitServer(TritonServer):
    """The launcher's server with a CUDA memory pool large enough for the GPU tensors the stubs exchange."""

    def command(self, install: Any, repository: Path) -> list[str]:
        pool = [f"--cuda-memory-pool-byte-size=0:{CUDA_POOL_BYTES}"] if shutil.which("nvidia-smi") else []
        return [*super().command(install, repository), *pool]


class GpuUtilisation:
    """A ``bench.loadgen.WindowObserver``: ``nvidia-smi`` sampled every 100 ms through each window."""

    def __init__(self) -> None:
        self.means: dict[int, float | None] = {}
        self._process: subprocess.Popen[str] | None = None

    async def window_opened(self, concurrency: int) -> None:
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"]
            self._process = subprocess.Popen(query, stdout=subprocess.PIPE, text=True)

    async def window_closed(self, concurrency: int) -> None:
        if self._process is None:
            self.means[concurrency] = None
            return
        self._process.terminate()
        output, _ = self._process.communicate()
        samples = [float(line) for line in output.split() if line.replace(".", "", 1).isdigit()]
        self.means[concurrency] = sum(samples) / len(samples) if samples else None
        self._process = None


def _request(jpeg: bytes) -> tuple[list[grpcclient.InferInput], list[grpcclient.InferRequestedOutput]]:
    encoded = np.frombuffer(jpeg, np.uint8)[np.newaxis]
    image = grpcclient.InferInput(names.IMAGE, list(encoded.shape), "UINT8")
    image.set_data_from_numpy(encoded)
    return [image], [grpcclient.InferRequestedOutput(names.PROBABILITIES, class_count=TOP_K)]


async def top5(client: grpcclient.InferenceServerClient, ensemble: str, jpeg: bytes) -> list[int]:
    """Triton's own top-k (``class_count``): ``score:index:label`` strings, best first."""
    inputs, outputs = _request(jpeg)
    answer = await client.infer(ensemble, inputs, outputs=outputs)
    return [int(entry.decode().split(":")[1]) for entry in answer.as_numpy(names.PROBABILITIES).reshape(-1)]


async def agreement(
    client: grpcclient.InferenceServerClient, ensembles: list[str], jpegs: dict[str, bytes]
) -> dict[str, Any]:
    """Each variant's top-5 against the first variant's, photo by photo: GPU decode and fp16 must not change them."""
    answers = {
        ensemble: {name: await top5(client, ensemble, jpeg) for name, jpeg in jpegs.items()} for ensemble in ensembles
    }
    reference = answers[ensembles[0]]
    return {
        ensemble: {
            "top1_equal": sum(got[name][0] == reference[name][0] for name in jpegs),
            "top5_equal_sets": sum(set(got[name]) == set(reference[name]) for name in jpegs),
            "photos": len(jpegs),
        }
        for ensemble, got in answers.items()
    }


def _row(
    variant: Variant, inputs: str, result: LevelResult, cpu: dict[str, float], deltas: dict[str, Any], gpu: float | None
) -> dict[str, Any]:
    per_request = 1000 / result.requests if result.requests else 0.0
    resnet, decode = deltas["resnet"], deltas["decode"]
    return {
        "ensemble": variant.ensemble,
        "decode": variant.decode,
        "precision": variant.precision,
        "inputs": inputs,
        "concurrency": result.concurrency,
        "requests": result.requests,
        "errors": result.errors,
        "throughput_rps": round(result.throughput_rps, 1),
        "latency_ms": {
            key: round(value, 2) for key, value in asdict(result.latency).items() if isinstance(value, float)
        },
        "cpu_ms_per_request": {role: round(seconds * per_request, 3) for role, seconds in cpu.items()},
        "path_cpu_ms": round((cpu.get("triton", 0.0) + cpu.get("stubs", 0.0)) * per_request, 3),
        "resnet_mean_batch": resnet.mean_batch_size and round(resnet.mean_batch_size, 2),
        "resnet_compute_ms": resnet.mean_compute_ms and round(resnet.mean_compute_ms, 3),
        "decode_mean_batch": decode.mean_batch_size and round(decode.mean_batch_size, 2),
        "gpu_utilisation_pct": gpu if gpu is None else round(gpu, 1),
    }


async def measure(
    server: TritonServer,
    arch: str,
    chosen: list[Variant],
    sets: dict[str, dict[str, bytes]],
    levels: list[int],
    timing: Timing,
) -> dict[str, Any]:
    assert server.process is not None
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        every = {f"{inputs}/{name}": jpeg for inputs, jpegs in sets.items() for name, jpeg in jpegs.items()}
        checks = await agreement(client, [variant.ensemble for variant in chosen], every)
        rows = []
        for variant in chosen:
            for inputs, jpegs in sets.items():
                requests = RoundRobin([_request(jpeg) for jpeg in jpegs.values()])

                async def send(requests: RoundRobin[Any] = requests, ensemble: str = variant.ensemble) -> None:
                    inputs_, outputs = requests()
                    await client.infer(ensemble, inputs_, outputs=outputs)

                for concurrency in levels:
                    cpu = CpuWindow({"triton": server.process.pid}, children_apart={"triton": "stubs"})
                    resnet = TritonWindow(client, resnet_name(arch, variant.precision))
                    decode = TritonWindow(client, f"{names.DECODE}_{variant.decode}")
                    gpu = GpuUtilisation()
                    result = await run_level(send, concurrency, timing, Observers(cpu, resnet, decode, gpu))
                    deltas = {"resnet": resnet.deltas[concurrency], "decode": decode.deltas[concurrency]}
                    row = _row(
                        variant, inputs, result, cpu.seconds.get(concurrency, {}), deltas, gpu.means.get(concurrency)
                    )
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        return {"agreement": checks, "levels": rows}
    finally:
        await client.close()


def _facts(gpu: bool) -> dict[str, Any]:
    import cv2
    import torch

    facts = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cv2": cv2.__version__,
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpus": __import__("os").cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
    }
    return facts


def markdown(report: dict[str, Any]) -> str:
    facts = report["facts"]
    lines = [
        f"# Classify through Triton over gRPC, encoded JPEG bytes: {facts.get('gpu') or 'CPU only'}",
        "",
        f"{report['arch']}, weights {report['weights']}; Python {facts['python']}, torch {facts['torch']}, "
        f"numpy {facts['numpy']} in the stubs, {facts['cpus']} CPUs. Each level: {report['timing']['warmup_s']} s "
        f"warm-up, {report['timing']['window_s']} s measured. Path CPU: Triton and its python-backend stubs, CPU ms "
        "per classification (from /proc); client: the load generator's.",
        "",
        "| decode | precision | inputs | conc. | req/s | p50 ms | p99 ms | path CPU ms | client CPU ms "
        "| ResNet batch | decode batch | GPU % | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["levels"]:
        latency = row["latency_ms"]
        cells = [
            row["decode"], row["precision"], row["inputs"], row["concurrency"], row["throughput_rps"],
            latency.get("p50_ms", "-"), latency.get("p99_ms", "-"), row["path_cpu_ms"],
            row["cpu_ms_per_request"].get("client", "-"), row["resnet_mean_batch"] or "-",
            row["decode_mean_batch"] or "-", "-" if row["gpu_utilisation_pct"] is None else row["gpu_utilisation_pct"],
            row["errors"] or "",
        ]  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "Top-5 against the first variant on every photo:", ""]
    for ensemble, check in report["agreement"].items():
        top1, top5_sets, photos = check["top1_equal"], check["top5_equal_sets"], check["photos"]
        lines.append(f"- {ensemble}: top-1 equal {top1}/{photos}, top-5 sets equal {top5_sets}/{photos}")
    return "\n".join(lines) + "\n"


def _gpu_decoder_problem() -> str | None:
    """Why the production GPU decoder (imaging/gpu.py: nvImageCodec and CuPy) cannot load here, or None."""
    from imaging.gpu import GpuDecoder, GpuUnavailable

    try:
        GpuDecoder.for_instance("GPU", 0)
    except GpuUnavailable as exc:
        return str(exc)
    return None


def run(args: argparse.Namespace) -> int:
    import torch

    gpu = not args.cpu and torch.cuda.is_available()
    models = args.work / "models"
    shutil.rmtree(models, ignore_errors=True)
    decoder_problem = _gpu_decoder_problem() if gpu else None
    if decoder_problem:
        print(f"GPU decode left out: {decoder_problem} (python3 -m gpu_kit.decoder measures it)", file=sys.stderr)
    write_repository(models, args.arch, gpu, class_names(args.arch), gpu_decode=decoder_problem is None)
    chosen = variants(gpu, decoder_problem is None)
    sets = {"imagenet": photographs()}
    if args.phone_photos:
        names_ = ("astronaut", "coffee", "chelsea", "rocket")[: args.phone_photos]
        sets["phone-12mp"] = camera_photographs(names=names_, cache=args.work / "inputs")
    levels = [int(level) for level in args.levels.split(",")]
    timing = Timing(warmup_s=args.warmup, window_s=args.window, drain_s=5.0)
    log = args.out / "triton.log"
    started = time.perf_counter()

    def start(ports: list[int]) -> TritonServer:
        return KitServer(models, Ports(*ports), log_path=log, cache=args.work / "cache", startup_timeout_s=240).start()

    server = on_free_ports(3, start)
    try:
        print(f"triton ready in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        results = asyncio.run(measure(server, args.arch, chosen, sets, levels, timing))
    finally:
        server.stop()
    report = {
        "tritonserver": str(find_install(args.work / "cache").binary),
        "arch": args.arch,
        "weights": "seed:0 (random init)",
        "facts": _facts(gpu),
        "timing": asdict(timing),
        "inputs": {name: {photo: len(jpeg) for photo, jpeg in jpegs.items()} for name, jpegs in sets.items()},
        "gpu_decode": "measured" if gpu and not decoder_problem else decoder_problem or "no GPU",
        **results,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    print(markdown(report))
    return 0
