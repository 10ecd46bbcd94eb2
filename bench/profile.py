"""Where the time goes: the classify route's latency and CPU taken apart, from the outside and in-process.

From the outside: the client's latency of REST and gRPC requests, Triton's own per-request figures for every
model of the ensemble over the same windows, and the CPU seconds each process tree spent. In-process: the
gateway's own header check, decode, gRPC request (the pixels copied into a protobuf and serialised) and JSON
answer, timed on the benchmark's JPEGs with the gateway's own functions once the stack has stopped. What is left
of a REST request (HTTP, the event loop, gRPC transport, the client) is the remainder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence

from bench.process_cpu import CLIENT
from bench.results import Section
from bench.suite import GRPC_CLASSIFY, GRPC_NOBATCH, GRPC_RESNET, REST_CLASSIFY, Measured
from bench.triton_stats import TritonDelta
from export.repository import CLASSIFY, PREPROCESS

ROLES = (CLIENT, "gateway", "triton", "naive")
CLIENT_BOUND_CORES = 0.8  # the load generator's event loop is one thread: near a core, it is the bottleneck


def _mean_ms(step: Callable[[], object], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats * 1000


def gateway_steps_ms(jpegs: Sequence[bytes], repeats: int) -> dict[str, float]:
    """Mean milliseconds per image of the gateway's own CPU steps, with its own functions and settings."""
    from tritonclient.grpc import service_pb2

    from gateway.images import Limits, decode, read_header
    from gateway.routes.images import ClassifyResponse
    from gateway.settings import Settings

    settings = Settings()
    limits = Limits(settings.max_image_pixels, settings.min_image_side, settings.max_aspect_ratio)
    headers = [read_header(jpeg, limits) for jpeg in jpegs]
    images = [decode(jpeg, header) for jpeg, header in zip(jpegs, headers, strict=True)]

    def requests() -> None:
        # What tritonclient does with the pixels: tobytes() in set_data_from_numpy, into the protobuf, serialised.
        for image in images:
            service_pb2.ModelInferRequest(model_name=CLASSIFY, raw_input_contents=[image.tobytes()]).SerializeToString()

    answer = {
        "model": CLASSIFY,
        "model_version": "1",
        "image": {"width": headers[0].width, "height": headers[0].height, "format": headers[0].format},
        "predictions": [{"label": "tabby", "index": 281, "probability": 0.1}] * 5,
    }
    return {
        "header": _mean_ms(lambda: [read_header(jpeg, limits) for jpeg in jpegs], repeats) / len(jpegs),
        "decode": _mean_ms(lambda: [decode(j, h) for j, h in zip(jpegs, headers, strict=True)], repeats) / len(jpegs),
        "request": _mean_ms(requests, repeats) / len(jpegs),
        # What FastAPI does with a returned dict and a response_model: validate, dump to JSON types, render.
        "answer": _mean_ms(
            lambda: json.dumps(ClassifyResponse.model_validate(answer).model_dump(mode="json")), repeats
        ),
    }


def _sub(total: float | None, *parts: float | None) -> float | None:
    return None if total is None or any(part is None for part in parts) else total - sum(parts)  # type: ignore[misc]


def _add(*parts: float | None) -> float | None:
    return None if any(part is None for part in parts) else sum(parts)  # type: ignore[arg-type]


def cpu_ms(measured: Measured, level: int, role: str) -> float | None:
    """CPU milliseconds a process tree spent per successful request of one level's window."""
    point = measured.scenario.at(level)
    seconds = measured.cpu_s.get(level, {}).get(role)
    if point is None or seconds is None or point.load.requests == 0:
        return None
    return seconds / point.load.requests * 1000


def _cpu_total(measured: Measured, level: int) -> float | None:
    return _add(*(cpu_ms(measured, level, role) for role in ROLES))


def _delta(measured: Measured, level: int, model: str) -> TritonDelta | None:
    return measured.triton.get(level, {}).get(model)


def _field(delta: TritonDelta | None, name: str) -> float | None:
    return getattr(delta, name) if delta else None


def _per_image(delta: TritonDelta | None) -> float | None:
    """An execution's compute is charged to every request in it: per image is that over the batch size."""
    if delta is None or delta.mean_compute_ms is None or not delta.mean_batch_size:
        return None
    return delta.mean_compute_ms / delta.mean_batch_size


def _latency(measured: Measured | None, level: int) -> float | None:
    point = measured.scenario.at(level) if measured else None
    return point.load.latency.mean_ms if point else None


def _throughput(measured: Measured | None, level: int) -> float | None:
    point = measured.scenario.at(level) if measured else None
    return point.load.throughput_rps if point else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def classify_breakdown(
    measured: dict[str, Measured], resnet: str, steps: dict[str, float], low: int, high: int
) -> Section:
    """The classify route at a light and a loaded level: latency parts, CPU per request, and findings."""
    rest, grpc = measured[REST_CLASSIFY], measured[GRPC_CLASSIFY]
    rows: list[list[str | int | float | None]] = []

    def row(label: str, how: str, value: Callable[[int], float | None]) -> None:
        rows.append([label, value(low), value(high), how])

    server = {c: _field(_delta(rest, c, CLASSIFY), "mean_request_ms") for c in (low, high)}
    own = sum(steps.values())
    row("REST /v1/classify, mean latency", "client", lambda c: _latency(rest, c))
    row("gRPC classify, mean latency", "client (its decode included)", lambda c: _latency(grpc, c))
    row("Triton, classify ensemble per REST request", "Triton statistics", lambda c: server[c])
    row(
        "of which: ResNet queue (dynamic batcher)",
        "Triton statistics",
        lambda c: _field(_delta(rest, c, resnet), "mean_queue_ms"),
    )
    row(
        "of which: ResNet compute (its whole batch)",
        "Triton statistics",
        lambda c: _field(_delta(rest, c, resnet), "mean_compute_ms"),
    )
    row(
        "of which: ResNet mean executed batch (images)",
        "Triton statistics",
        lambda c: _field(_delta(rest, c, resnet), "mean_batch_size"),
    )
    row(
        "of which: preprocess queue + compute", "Triton statistics",
        lambda c: _add(*(_field(_delta(rest, c, PREPROCESS), f) for f in ("mean_queue_ms", "mean_compute_ms"))),
    )  # fmt: skip
    row("gateway header check (Pillow)", "in-process, idle", lambda c: steps["header"])
    row("gateway decode (cv2.imdecode)", "in-process, idle", lambda c: steps["decode"])
    row("gateway gRPC request: pixel copies + protobuf", "in-process, idle", lambda c: steps["request"])
    row("gateway JSON answer (pydantic)", "in-process, idle", lambda c: steps["answer"])
    row(
        "remainder: HTTP, event loop, gRPC transport, client",
        "REST - Triton - the four above",
        lambda c: _sub(_latency(rest, c), server[c], own),
    )
    for role in (CLIENT, "gateway", "triton"):
        row(f"CPU per REST request: {role}", "psutil, process tree", lambda c, role=role: cpu_ms(rest, c, role))
    for role in (CLIENT, "triton"):
        row(f"CPU per gRPC request: {role}", "psutil, process tree", lambda c, role=role: cpu_ms(grpc, c, role))

    findings = []
    latency = _latency(rest, low)
    if latency is not None and server[low] is not None:
        findings.append(
            f"At concurrency {low} a REST classify took {_f(latency)} ms; Triton's own time for it was "
            f"{_f(server[low])} ms ({_f(100 * server[low] / latency, 0)}%). The gateway's header check, decode, "
            f"gRPC request (pixel copies and protobuf) and JSON answer cost {_f(steps['header'], 2)}, "
            f"{_f(steps['decode'], 2)}, {_f(steps['request'], 2)} and {_f(steps['answer'], 2)} ms; "
            f"the remaining {_f(_sub(latency, server[low], own))} ms is HTTP, the event loop, gRPC transport and "
            "the load generator."
        )
    measured_ratio = _ratio(_throughput(rest, high), _throughput(grpc, high))
    predicted = _ratio(_cpu_total(grpc, high), _cpu_total(rest, high))
    if measured_ratio is not None and predicted is not None:
        findings.append(
            f"At concurrency {high} REST reached {_f(measured_ratio, 2)} of gRPC's throughput. Per request the gateway "
            f"process burnt {_f(cpu_ms(rest, high, 'gateway'))} CPU-ms (decode {_f(steps['decode'])} of it), its "
            f"client {_f(cpu_ms(rest, high, CLIENT))}, Triton {_f(cpu_ms(rest, high, 'triton'))}; the gRPC client "
            f"{_f(cpu_ms(grpc, high, CLIENT))} (decode included), Triton {_f(cpu_ms(grpc, high, 'triton'))}. When "
            f"the {os.cpu_count()} cores are the bottleneck, throughput goes as 1 / CPU per request, which predicts "
            f"{_f(predicted, 2)}: every CPU-ms the gateway spends is taken from the model."
        )
    batched, unbatched = measured.get(GRPC_RESNET), measured.get(GRPC_NOBATCH)
    at_one = _per_image(_delta(batched, low, resnet)) if batched else None
    at_high = _per_image(_delta(batched, high, resnet)) if batched else None
    batch = _field(_delta(batched, high, resnet), "mean_batch_size") if batched else None
    if at_one is not None and at_high is not None and batch is not None:
        gain = _ratio(_throughput(batched, high), _throughput(unbatched, high))
        findings.append(
            f"Batching (the ResNet alone, concurrency {high}): executed batches averaged {_f(batch, 2)} images and "
            f"cost {_f(at_high, 2)} ms per image against {_f(at_one, 2)} ms at concurrency {low}; batching on / off "
            f"throughput: {_f(gain, 2)}. What a batch saves per image is what batching can buy on this device."
        )
    return Section(
        title="Where the time goes: the classify route",
        text=(
            "Mean figures over each level's measuring window. Triton's per-request figures come from its "
            "statistics for the requests of scenario 1; CPU per request divides each process tree's CPU time "
            "(children included) by the requests of the window."
        ),
        header=["", f"c={low} (ms)", f"c={high} (ms)", "how"],
        rows=rows,
        findings=findings,
    )


def cpu_section(measured: dict[str, Measured]) -> Section:
    """CPU milliseconds per request by process tree, for every scenario and level, and how busy the cores were;
    a finding names the levels where the load generator itself was near a full core."""
    cores = os.cpu_count() or 1
    rows: list[list[str | int | float | None]] = []
    client_bound = []
    for name, item in measured.items():
        for level in item.scenario.levels:
            c, window_s = level.load.concurrency, level.load.window_s
            seconds = item.cpu_s.get(c, {})
            busy = sum(seconds.values()) / window_s if window_s else None
            rows.append([name, c, level.load.throughput_rps, *(cpu_ms(item, c, role) for role in ROLES), busy])
            if window_s and seconds.get(CLIENT, 0) / window_s >= CLIENT_BOUND_CORES:
                client_bound.append(f"{name} c={c} ({seconds[CLIENT] / window_s:.2f} cores)")
    findings = (
        [
            f"The load generator (one Python process, one event loop) used {CLIENT_BOUND_CORES:g} of a core or more "
            f"at {', '.join(client_bound)}: there the client may be what limits throughput, not the server."
        ]
        if client_bound
        else []
    )
    return Section(
        title="CPU time per request, by process",
        text=(
            f"CPU milliseconds each process tree spent per successful request in the window, and the cores "
            f"busy on average (this machine has {cores}). The client is the load generator; naive is the baseline's "
            "process. Where the cores are all busy, these sums are what sets throughput."
        ),
        header=["scenario", "concurrency", "req/s", "client", "gateway", "triton", "naive", "cores busy"],
        rows=rows,
        findings=findings,
    )
