"""The model step against ONNX Runtime alone: what the ResNet's step in Triton (the runner, in its stub process)
spends per image, beside what the same network costs in ONNX Runtime with nothing around it, at the same batch size
and thread setting (``bench.ort_alone``), each from its own process's CPU time: no scenario subtracted from another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.ort_alone import SETTINGS, SLICES, THREADS, Point, best
from bench.process_cpu import STUB
from bench.results import Section
from bench.suite import GRPC_RESNET, REST_CLASSIFY, Measured


def same_setting(points: Sequence[Point], batch: float, cores: int) -> Point | None:
    """The ONNX-Runtime-alone point the runner's executions of a mean ``batch`` compare with: the multi-threaded
    session for lone images, else slices, at the nearest batch size (by ratio)."""
    setting = THREADS if batch < cores else SLICES
    candidates = [point for point in points if point.setting == setting]
    return min(candidates, key=lambda point: abs(math.log(point.batch / batch)), default=None)


def stub_ms_per_image(measured: Measured, level: int, model: str) -> tuple[float | None, float | None]:
    """(CPU-ms per image of the model's stub processes, mean executed batch) at one level: the images are the ones
    Triton ran through the model in the same window (not the requests the client saw complete in it, which at
    high concurrency can be a batch more or less)."""
    delta = measured.triton.get(level, {}).get(model)
    seconds = measured.cpu_s.get(level, {}).get(STUB + model)
    if delta is None or seconds is None or not delta.inferences:
        return None, None
    return seconds / delta.inferences * 1000, delta.mean_batch_size


def ort_alone_section(points: Sequence[Point]) -> Section:
    top = best(points)
    return Section(
        title="ONNX Runtime alone (the machine's limit for this model)",
        text=(
            "The exported network in ONNX Runtime in a process of its own, before the stack starts, on random "
            "preprocessed tensors; each point runs for a few seconds. "
            + " ".join(f"`{name}`: {meaning}." for name, meaning in SETTINGS.items())
        ),
        header=["setting", "batch", "images/s", "CPU-ms per image"],
        rows=[[p.setting, p.batch, p.images_per_s, p.cpu_ms_per_image] for p in points],
        findings=[
            f"Best: {top.images_per_s:,.1f} images/s ({top.setting}, batch {top.batch}), "
            f"{top.cpu_ms_per_image:,.1f} CPU-ms per image."
        ]
        if top
        else [],
    )


def model_step_section(measured: dict[str, Measured], model: str, points: Sequence[Point], cores: int) -> Section:
    """The runner's CPU per image (scenario 3, the network alone over gRPC, and scenario 1, REST classify) beside
    ONNX Runtime alone at the same batch size and threads."""
    rows: list[list[str | int | float | None]] = []
    findings = []
    for name in (GRPC_RESNET, REST_CLASSIFY):
        item = measured.get(name)
        for level in item.scenario.levels if item else []:
            c = level.load.concurrency
            runner, batch = stub_ms_per_image(item, c, model) if item else (None, None)
            alone = same_setting(points, batch, cores) if batch else None
            overhead = runner / alone.cpu_ms_per_image - 1 if runner is not None and alone else None
            rows.append([
                name, c, batch, runner, alone.setting if alone else None, alone.batch if alone else None,
                alone.cpu_ms_per_image if alone else None, None if overhead is None else 100 * overhead,
            ])  # fmt: skip
            if name == GRPC_RESNET and overhead is not None and alone is not None:
                findings.append(
                    f"c={c}: the runner spent {runner:,.1f} CPU-ms per image at a mean batch of {batch:,.1f}, ONNX "
                    f"Runtime alone {alone.cpu_ms_per_image:,.1f} ({alone.setting}, batch {alone.batch}): "
                    f"{100 * overhead:+,.0f}%."
                )
    return Section(
        title="The model step: Triton's runner against ONNX Runtime alone",
        text=(
            f"CPU milliseconds per image of the {model} stub process (schedstat, its threads), over each level's "
            "window, divided by the images Triton ran through it; beside ONNX Runtime alone at the nearest batch "
            "size in the setting the runner uses for it (lone images on the multi-threaded session, batches in "
            "slices). The other processes of the stack run at the same time in the scenarios, not in ONNX Runtime "
            "alone: on a shared machine that alone costs the runner some CPU (caches, preemption)."
        ),
        header=["scenario", "concurrency", "mean batch", "runner CPU-ms/image", "alone: setting", "alone: batch",
                "alone CPU-ms/image", "runner over alone %"],
        rows=rows,
        findings=findings,
    )  # fmt: skip
