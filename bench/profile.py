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
from dataclasses import dataclass

from bench import peers
from bench.costs import FEED_INSTANCES, PriceTable, feed_capacity
from bench.process_cpu import CLIENT, STUB
from bench.results import Section
from bench.suite import (
    EDGES_BY_SIZE,
    FASTAPI_TRITON,
    GRPC_CLASSIFY,
    GRPC_CLASSIFY_PHONE,
    GRPC_NOBATCH,
    GRPC_RESNET,
    REST_CACHE_MISSES,
    REST_CACHED,
    REST_CLASSIFY,
    REST_CLASSIFY_PHONE,
    TO_GATEWAY,
    TO_TRITON,
    TRITON_STUBS,
    Measured,
)
from bench.triton_stats import TritonDelta
from servables.names import CLASSIFY

GATEWAY, TRITON = "gateway", "triton"  # with the stubs of the ensemble's steps: the processes a classification passes
RELAY_PATH = "ImageNet-size, hand-written FastAPI relay"
CLIENT_BOUND_CORES = 0.8  # the load generator's event loop is one thread: near a core, it is the bottleneck


def _mean_ms(step: Callable[[], object], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats * 1000


def gateway_steps_ms(jpegs: Sequence[bytes], repeats: int) -> dict[str, float]:
    """Mean milliseconds per image of the classify path's own CPU steps, with the project's own functions: the
    gateway's header check, gRPC request (the bytes into a protobuf, serialised) and JSON answer, and Triton's
    decode at the scale the model needs (``imaging.decode``, what the ``decode_reduced`` step runs)."""
    from tritonclient.grpc import service_pb2

    from gateway.kinds.classification import ClassifyResponse
    from imaging.decode import decode
    from imaging.header import Limits, read_header

    limits = Limits()
    headers = [read_header(jpeg, limits) for jpeg in jpegs]
    short_side = 256  # the resize target of the exported preprocessing

    def requests() -> None:
        for jpeg in jpegs:
            service_pb2.ModelInferRequest(model_name=CLASSIFY, raw_input_contents=[jpeg]).SerializeToString()

    answer = {
        "model": CLASSIFY,
        "model_version": "1",
        "weights": "seed:0",
        "image": {"width": headers[0].width, "height": headers[0].height, "format": headers[0].format},
        "predictions": [{"label": "tabby", "index": 281, "probability": 0.1}] * 5,
    }
    return {
        "header": _mean_ms(lambda: [read_header(jpeg, limits) for jpeg in jpegs], repeats) / len(jpegs),
        "decode": _mean_ms(lambda: [decode(jpeg, limits, short_side) for jpeg in jpegs], repeats) / len(jpegs),
        "request": _mean_ms(requests, repeats) / len(jpegs),
        # What FastAPI does with a returned dict and a response_model: validate, dump to JSON types, render.
        "answer": _mean_ms(
            lambda: json.dumps(ClassifyResponse.model_validate(answer).model_dump(mode="json")), repeats
        ),
    }


def _add(*parts: float | None) -> float | None:
    known = [part for part in parts if part is not None]
    return None if len(known) < len(parts) else sum(known)


def _sub(total: float | None, *parts: float | None) -> float | None:
    subtracted = _add(*parts)
    return None if total is None or subtracted is None else total - subtracted


def cpu_ms(measured: Measured, level: int, role: str) -> float | None:
    """CPU milliseconds a process (or ``TRITON_STUBS``: every python-backend stub) spent per successful request of
    one level's window."""
    point = measured.scenario.at(level)
    by_role = measured.cpu_s.get(level, {})
    stubs = [seconds for name, seconds in by_role.items() if name.startswith(STUB)]
    seconds = sum(stubs) if role == TRITON_STUBS and stubs else by_role.get(role)
    if point is None or seconds is None or point.load.requests == 0:
        return None
    return seconds / point.load.requests * 1000


def _roles(measured: Measured) -> list[str]:
    """Every role whose CPU the scenario recorded, the load generator first."""
    seen = {role for seconds in measured.cpu_s.values() for role in seconds}
    return [CLIENT, *sorted(seen - {CLIENT})]


def _cpu_total(measured: Measured, level: int) -> float | None:
    return _add(*(cpu_ms(measured, level, role) for role in _roles(measured)))


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


def _step_of(measured: Measured, model: str) -> Callable[[int], float | None]:
    """A step of the ensemble: its queue and compute per request."""
    return lambda c: _add(*(_field(_delta(measured, c, model), f) for f in ("mean_queue_ms", "mean_compute_ms")))


def _cpu_of(measured: Measured, role: str) -> Callable[[int], float | None]:
    return lambda c: cpu_ms(measured, c, role)


def classify_breakdown(
    measured: dict[str, Measured], resnet: str, steps: dict[str, float], low: int, high: int, models: Sequence[str]
) -> Section:
    """The classify route at a light and a loaded level: latency parts (``models``: the ensemble's steps as Triton
    serves them), CPU per request, and findings."""
    rest, grpc = measured[REST_CLASSIFY], measured[GRPC_CLASSIFY]
    rows: list[list[str | int | float | None]] = []

    def row(label: str, how: str, value: Callable[[int], float | None]) -> None:
        rows.append([label, value(low), value(high), how])

    server = {c: _field(_delta(rest, c, CLASSIFY), "mean_request_ms") for c in (low, high)}
    own = sum(steps.values())  # the decode is Triton's, inside server[c]
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
    for model in models:
        if model != resnet:
            row(f"of which: {model} queue + compute", "Triton statistics", _step_of(rest, model))
    row("gateway header check (Pillow)", "in-process, idle", lambda c: steps["header"])
    row("Triton's reduced-scale decode (imaging.decode)", "in-process, idle", lambda c: steps["decode"])
    row("gateway gRPC request: the bytes into a protobuf", "in-process, idle", lambda c: steps["request"])
    row("gateway JSON answer (pydantic)", "in-process, idle", lambda c: steps["answer"])
    row(
        "remainder: HTTP, event loop, gRPC transport, client",
        "REST - Triton - the gateway's three above",
        lambda c: _sub(_latency(rest, c), server[c], own - steps["decode"]),
    )
    for role in (CLIENT, GATEWAY, TRITON, TRITON_STUBS):
        row(f"CPU per REST request: {role}", "schedstat, per process", _cpu_of(rest, role))
    for role in (CLIENT, TRITON, TRITON_STUBS):
        row(f"CPU per gRPC request: {role}", "schedstat, per process", _cpu_of(grpc, role))

    findings = []
    latency, served = _latency(rest, low), server[low]
    if latency is not None and served is not None:
        findings.append(
            f"At concurrency {low} a REST classify took {_f(latency)} ms; Triton's own time for it was "
            f"{_f(served)} ms ({_f(100 * served / latency, 0)}%), its reduced-scale decode about "
            f"{_f(steps['decode'], 2)} ms of it. The gateway's header check, gRPC request and JSON answer cost "
            f"{_f(steps['header'], 2)}, {_f(steps['request'], 2)} and {_f(steps['answer'], 2)} ms; the remaining "
            f"{_f(_sub(latency, served, own - steps['decode']))} ms is HTTP, the event loop, gRPC transport "
            "and the load generator."
        )
    measured_ratio = _ratio(_throughput(rest, high), _throughput(grpc, high))
    predicted = _ratio(_cpu_total(grpc, high), _cpu_total(rest, high))
    if measured_ratio is not None and predicted is not None:
        findings.append(
            f"At concurrency {high} REST reached {_f(measured_ratio, 2)} of gRPC's throughput. Per request the gateway "
            f"process burnt {_f(cpu_ms(rest, high, 'gateway'))} CPU-ms, its client {_f(cpu_ms(rest, high, CLIENT))}, "
            f"Triton {_f(cpu_ms(rest, high, 'triton'))} and its stubs {_f(cpu_ms(rest, high, TRITON_STUBS))}; the gRPC "
            f"client {_f(cpu_ms(grpc, high, CLIENT))}, Triton {_f(cpu_ms(grpc, high, 'triton'))} and its stubs "
            f"{_f(cpu_ms(grpc, high, TRITON_STUBS))}. When "
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


def cache_section(measured: dict[str, Measured], resnet: str) -> Section:
    """Scenario 10 beside scenario 1: latency, the network's hit ratio and CPU per request by process."""
    roles = [GATEWAY, TRITON, TRITON_STUBS, STUB + resnet]
    rows: list[list[str | int | float | None]] = []
    findings = []
    for name in (REST_CACHED, REST_CACHE_MISSES, REST_CLASSIFY):
        item = measured.get(name)
        for level in item.scenario.levels if item else []:
            c, load = level.load.concurrency, level.load
            delta = _delta(item, c, resnet) if item else None
            looked = delta.cache_hits + delta.cache_misses if delta else 0
            ratio = delta.cache_hits / looked if delta and looked else None
            figures = [cpu_ms(item, c, role) if item else None for role in roles]
            rows.append([name, c, load.throughput_rps, load.latency.mean_ms, load.latency.p99_ms, ratio, *figures])
    hits, plain = measured.get(REST_CACHED), measured.get(REST_CLASSIFY)
    if hits is None or plain is None:
        return Section("Response cache", "Not measured.", [], [])
    for c in [lvl.load.concurrency for lvl in hits.scenario.levels]:
        cached_cpu = _add(*(cpu_ms(hits, c, role) for role in (GATEWAY, TRITON, TRITON_STUBS)))
        plain_cpu = _add(*(cpu_ms(plain, c, role) for role in (GATEWAY, TRITON, TRITON_STUBS)))
        if cached_cpu is not None and plain_cpu is not None and _latency(hits, c) is not None:
            findings.append(
                f"c={c}: a repeated photo took {_f(_latency(hits, c))} ms (without the cache {_f(_latency(plain, c))}) "
                f"and {_f(cached_cpu)} CPU-ms of the gateway, Triton and its stubs ({_f(plain_cpu)})."
            )
    return Section(
        title="Response cache (scenario 10, a stack of its own with Triton's response cache on)",
        text=(
            "The networks answer repeats from Triton's response cache, keyed by their own version and input "
            "(servables.runtime.cached says why not the ensembles): a hit still decodes and preprocesses, and skips "
            "the network. The six photos again and again (hits), then photos none of which repeats (misses: what "
            "the cache adds to every request), beside scenario 1 (no cache). Hit ratio: Triton's statistics of the "
            "network over the window. CPU-ms per request by process."
        ),
        header=["scenario", "concurrency", "req/s", "mean ms", "p99 ms", "network hit ratio", *roles],
        rows=rows,
        findings=findings,
    )


def cpu_section(measured: dict[str, Measured]) -> Section:
    """CPU milliseconds per request by process tree, for every scenario and level, and how busy the cores were;
    a finding names the levels where the load generator itself was near a full core."""
    cores = os.cpu_count() or 1
    roles = sorted({role for item in measured.values() for role in _roles(item)} - {CLIENT})
    rows: list[list[str | int | float | None]] = []
    client_bound = []
    for name, item in measured.items():
        for level in item.scenario.levels:
            c, window_s = level.load.concurrency, level.load.window_s
            seconds = item.cpu_s.get(c, {})
            busy = sum(seconds.values()) / window_s if window_s else None
            figures = [cpu_ms(item, c, role) if role in seconds else None for role in (CLIENT, *roles)]
            rows.append([name, c, level.load.throughput_rps, *figures, busy])
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
            f"busy on average (this machine has {cores}). The client is the load generator; naive, fastapi-ort and "
            "litserve are the baselines' processes (the peers run only during their own scenarios); triton is the "
            "server process, its python-backend stubs apart. Where the cores are all busy, these sums are what "
            "sets throughput."
        ),
        header=["scenario", "concurrency", "req/s", CLIENT, *roles, "cores busy"],
        rows=rows,
        findings=findings,
    )


@dataclass(frozen=True)
class PathFigures:
    """One input set's classify path through one scenario at one concurrency: CPU per request of each process it
    passes through (the network's stub among them), and the bytes each hop received per request."""

    scenario: str
    label: str
    concurrency: int
    cpu_ms: dict[str, float | None]  # role -> CPU-ms per request: the gateway, Triton, each step's stub processes
    resnet_ms: float | None  # the network's stub's CPU per request (one image each), in the same window
    wire_bytes: dict[str, float]  # hop -> bytes received per request
    upload_bytes: float | None  # the mean file the client sent
    latency_ms: float | None  # mean

    @property
    def total_cpu_ms(self) -> float | None:
        return _add(*self.cpu_ms.values())

    @property
    def path_cpu_ms(self) -> float | None:
        """The path's processes' CPU per request but the network's stub: what feeding the network costs."""
        return _sub(self.total_cpu_ms, self.resnet_ms)

    def explain(self) -> str:
        """The profile behind the figure, for a goal's detail."""
        parts = ", ".join(f"{role} {_f(ms)}" for role, ms in self.cpu_ms.items())
        return f"c={self.concurrency}, CPU-ms per request: {parts}; the network's is the {_f(self.resnet_ms)}"


def path_figures(
    measured: dict[str, Measured],
    name: str,
    label: str,
    level: int,
    resnet: str,
    steps: Sequence[str],
    front: str = GATEWAY,
) -> PathFigures | None:
    """The path's figures, every one from its own process in the same window: the process in front of Triton
    (``front``: the gateway, or the relay peer), Triton's server process and the stubs of the ensemble's ``steps``
    (the network's, ``resnet``, is the one the path feeds); bytes over the whole level, per request it sent."""
    item = measured.get(name)
    point = item.scenario.at(level) if item else None
    if item is None or point is None or not point.load.requests:
        return None
    roles = [front, TRITON, *(STUB + step for step in steps)]
    return PathFigures(
        scenario=name,
        label=label,
        concurrency=level,
        cpu_ms={role: cpu_ms(item, level, role) for role in roles},
        resnet_ms=cpu_ms(item, level, STUB + resnet),
        wire_bytes={hop: count / point.load.issued for hop, count in item.wire_bytes.get(level, {}).items()},
        upload_bytes=item.upload_bytes,
        latency_ms=point.load.latency.mean_ms,
    )


def classify_paths(
    measured: dict[str, Measured], levels: Sequence[int], resnet: str, steps: Sequence[str]
) -> list[PathFigures]:
    """REST and gRPC classify, ImageNet-size and phone photos, and the hand-written relay in front of the same
    Triton, at each of ``levels`` they were measured at."""
    runs = [
        (REST_CLASSIFY, "ImageNet-size, REST", GATEWAY),
        (GRPC_CLASSIFY, "ImageNet-size, gRPC", GATEWAY),
        (FASTAPI_TRITON, RELAY_PATH, peers.FASTAPI_TRITON),
        (REST_CLASSIFY_PHONE, "phone photo, REST", GATEWAY),
        (GRPC_CLASSIFY_PHONE, "phone photo, gRPC", GATEWAY),
    ]
    figures = [
        path_figures(measured, name, label, level, resnet, steps, front)
        for name, label, front in runs
        for level in levels
    ]
    return [figure for figure in figures if figure is not None]


def paths_section(paths: Sequence[PathFigures]) -> Section:
    roles = list(dict.fromkeys(role for p in paths for role in p.cpu_ms))
    rows: list[list[str | int | float | None]] = [
        [
            p.label, p.concurrency, *(p.cpu_ms.get(role) for role in roles), p.path_cpu_ms, p.upload_bytes,
            p.wire_bytes.get(TO_GATEWAY), p.wire_bytes.get(TO_TRITON), p.latency_ms,
        ]
        for p in paths
    ]  # fmt: skip
    return Section(
        title="Path CPU and bytes per classification",
        text=(
            "CPU milliseconds per request of every process a classification passes through, each read from its "
            "own threads' schedstat over the same window: the gateway, Triton's server process, and the "
            "python-backend stubs of each step of the classify ensemble as Triton serves it (decode, "
            "preprocessing, the network). Path CPU is all of them but the network's stub: what feeding the "
            "network costs. Bytes are what each hop's server received per request sent, over the whole level "
            "(warm-up included), counted by the kernel (`ss`, framing included): from the client at the gateway, "
            "and at Triton's gRPC port from the gateway (REST) or the client (gRPC)."
        ),
        header=["input, route", "concurrency", *roles, "path CPU ms", "upload bytes", "bytes client->gateway",
                "bytes ->Triton", "mean latency ms"],
        rows=rows,
    )  # fmt: skip


def best_throughput(measured: Measured | None) -> float | None:
    if measured is None or not measured.scenario.levels:
        return None
    return max(level.load.throughput_rps for level in measured.scenario.levels)


def feed_section(paths: Sequence[PathFigures], prices: PriceTable, gpu_rate: float | None, gpu_where: str) -> Section:
    """How many images per second the CPUs of 4- and 8-vCPU GPU instances could feed at the measured path cost,
    beside what the GPU could classify."""
    rows: list[list[str | int | float | None]] = []
    findings = []
    for path in paths:
        cost = path.path_cpu_ms
        if cost is None or cost <= 0 or path.concurrency != 1 or "REST" not in path.label:
            continue
        for name in FEED_INSTANCES:
            instance = prices.instance(name)
            rate = feed_capacity(instance.vcpus, cost)
            bound = None if gpu_rate is None else ("the CPUs" if rate < gpu_rate else "the GPU")
            rows.append([path.label, name, instance.vcpus, cost, rate, gpu_rate, bound])
        findings.append(
            f"{path.label}: {_f(cost, 2)} CPU-ms per image outside the network; a 4-vCPU instance's CPUs could feed "
            f"at most {_f(feed_capacity(4, cost), 0)} images/s, an 8-vCPU one {_f(feed_capacity(8, cost), 0)}."
        )
    return Section(
        title="Feed capacity: what a GPU instance's CPUs can prepare",
        text=(
            "vCPUs x 1000 / path CPU per image (REST at concurrency 1, this machine's cores): every vCPU busy with "
            "nothing but the path, so an upper bound. GPU classify rate: "
            + (f"{gpu_where}." if gpu_rate is not None else "no GPU run measured here (--compare a GPU report.json).")
        ),
        header=["input, route", "instance", "vCPUs", "path CPU ms", "images/s the CPUs feed", "GPU images/s",
                "bound by"],
        rows=rows,
        findings=findings,
    )  # fmt: skip


def edges_section(measured: dict[str, Measured]) -> Section:
    """The edge route per image size: time per request at concurrency 1, and 504s where it was run heavier."""
    rows: list[list[str | int | float | None]] = []
    for name, item in measured.items():
        if not name.startswith(EDGES_BY_SIZE):
            continue
        for level in item.scenario.levels:
            load = level.load
            rows.append(
                [
                    name.removeprefix(EDGES_BY_SIZE), item.upload_bytes, load.concurrency, load.requests,
                    load.latency.mean_ms, load.latency.p99_ms, load.errors.get("http_504", 0),
                    sum(load.errors.values()), cpu_ms(item, load.concurrency, TRITON_STUBS),
                ]
            )  # fmt: skip
    return Section(
        title="Edge detection by image size (REST /v1/edges?format=json)",
        text="Full-resolution edge maps of the same photographs at several sizes; 504 is the gateway's deadline.",
        header=["size", "upload bytes", "concurrency", "requests", "mean ms", "p99 ms", "504s", "errors",
                "Triton stubs CPU-ms"],
        rows=rows,
    )  # fmt: skip
