"""Runs ON a GPU host: the production GPU decoder (``imaging/gpu.py``: nvImageCodec, then CuPy) beside the CPU path.

The Triton kit cannot carry nvImageCodec as well (together over the 64 MiB a call ships), so this is a kit of its
own: ``python -m gpu_kit.build --decoder`` packs nvImageCodec's and nvJPEG's wheels (the lent hosts have CuPy and
CUDA 13). For ImageNet-size and 12 MP photos, at the classifier's scale and at full size, it reports

- agreement: the decoded shape and the mean difference from ``imaging.decode`` (the CPU path), per photo;
- images per second of one ``GpuDecoder.decode`` call over batches of 1, 8 and 32 files (the dynamic batcher's
  batch), the pixels synchronised on the device, and of the CPU path on one core.

``--cpu-backend`` runs the same code on nvImageCodec's libjpeg-turbo backend and numpy (no GPU needed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gpu_kit.build import WHEELS

BATCHES = (1, 8, 32)


def install(kit: Path, work: Path) -> None:
    """The kit's wheels into ``work/site``, first on sys.path (the host's packages after them)."""
    site = work / "site"
    if not site.is_dir():
        wheels = sorted(str(path) for path in (kit / WHEELS).glob("*.whl"))
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(site)]
        subprocess.run([*pip, *wheels], check=True)
    sys.path.insert(0, str(site))


def measure(decoder: Any, photos: dict[str, bytes], min_side: int, seconds: float) -> dict[str, Any]:
    """Agreement with the CPU path and throughput of both, for one decode scale."""
    import numpy as np

    from imaging import Limits, decode, read_header
    from imaging.decode import decodable

    files = []
    for data in photos.values():
        header = read_header(data, Limits())
        files.append((decodable(data, header), header))
    agreement = {}
    for name, file, pixels in zip(photos, files, decoder.decode(files, min_side), strict=True):
        on_cpu = decode(file[0], Limits(), min_side, file[1])[np.newaxis]
        got = pixels.get() if hasattr(pixels, "get") else np.asarray(pixels)  # CuPy's device array, or numpy
        same = got.shape == on_cpu.shape
        difference = float(np.abs(got.astype(np.int16) - on_cpu).mean()) if same else None
        agreement[name] = {"shape": list(got.shape), "cpu_shape": list(on_cpu.shape), "mean_difference": difference}

    def on_gpu(batch: list[Any]) -> object:
        return decoder.decode(batch, min_side)

    def on_cpu_core(batch: list[Any]) -> object:
        return [decode(data, Limits(), min_side, header) for data, header in batch]

    rates = {f"batch {size}": _rate(on_gpu, files, size, seconds) for size in BATCHES}
    rates["CPU path, one core"] = _rate(on_cpu_core, files, 1, seconds)
    return {"agreement": agreement, "images_per_s": rates}


def _rate(run: Any, files: list[Any], size: int, seconds: float) -> float:
    batch = [files[i % len(files)] for i in range(size)]
    run(batch)  # warm-up: CuPy's kernels, nvJPEG's buffers
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run(batch)
        done += size
    return round(done / (time.perf_counter() - started), 1)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU decoder: {report['decoder']}", "", "| photos | scale | " + " | ".join(report["rates"]) + " |"]
    lines.append("|---|---|" + "---|" * len(report["rates"]))
    for key, result in report["results"].items():
        rates = " | ".join(str(result["images_per_s"][column]) for column in report["rates"])
        lines.append(f"| {key.replace(' @ ', ' | ')} | {rates} |")
    differences = [a["mean_difference"] for r in report["results"].values() for a in r["agreement"].values()]
    worst = max((d for d in differences if d is not None), default=None)
    if None in differences:
        lines.append("\nSome photo decoded to another shape than the CPU path's: see report.json.")
    shown = "n/a" if worst is None else f"{worst:.2f}"
    lines += ["", f"Images per second. Worst mean difference from the CPU path: {shown} uint8 levels."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m gpu_kit.decoder", description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, help="the folder `python -m gpu_kit.build --decoder` made")
    parser.add_argument("--out", type=Path, required=True, help="where report.json and report.md go")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-kit-decoder"))
    parser.add_argument("--seconds", type=float, default=3.0, help="measured per batch size and scale")
    parser.add_argument("--phone-photos", type=int, default=2, help="12 MP photographs made")
    parser.add_argument("--cpu-backend", action="store_true", help="nvImageCodec's CPU backend and numpy")
    args = parser.parse_args(argv)
    if args.kit:
        install(args.kit, args.work)
    from bench.inputs import camera_photographs, photographs
    from imaging.gpu import GpuDecoder, GpuUnavailable

    try:
        decoder = GpuDecoder.with_cpu_backend() if args.cpu_backend else GpuDecoder.for_instance("GPU", 0)
    except GpuUnavailable as exc:
        print(f"the GPU decoder cannot run here: {exc}", file=sys.stderr)
        return 1
    assert decoder is not None
    sets = {"imagenet": photographs(("astronaut", "coffee", "chelsea"))}
    if args.phone_photos:
        names = ("astronaut", "coffee", "chelsea", "rocket")[: args.phone_photos]
        sets["phone-12mp"] = camera_photographs(names=names, cache=args.work / "inputs")
    results = {
        f"{name} @ {'full' if min_side == 0 else f'min side {min_side}'}": measure(
            decoder, photos, min_side, args.seconds
        )
        for name, photos in sets.items()
        for min_side in (256, 0)
    }
    report = {
        "decoder": "nvImageCodec CPU backend + numpy" if args.cpu_backend else "nvImageCodec (nvJPEG) + CuPy",
        "rates": [*(f"batch {size}" for size in BATCHES), "CPU path, one core"],
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
