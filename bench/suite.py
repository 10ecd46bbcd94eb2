"""Every scenario of one benchmark run, in one process against one stack, so their ratios are comparable.

Each scenario sends one request first (a scenario that cannot work fails the run at once, with the reason,
instead of filling a table with errors), then runs its concurrency levels while Triton's statistics (every
model it touches), the CPU time of each process tree and the bytes each hop received are recorded over each
measuring window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tritonclient.grpc.aio import InferenceServerClient

from bench import headline, ort_alone, peers
from bench import scenarios as sc
from bench.inputs import RoundRobin, distinct
from bench.loadgen import Background, Observers, Send, Timing, background_load, run_levels
from bench.process_cpu import CpuWindow, triton_stub_role
from bench.results import Level, Scenario
from bench.stack import Stack, port_of, running_peer, say
from bench.stats import error_kind
from bench.triton_stats import TritonDelta, TritonWindow
from bench.variants import BenchModels
from bench.wire import Hop, WireCounter
from launcher.process import Service
from servables.names import CLASSIFY, EDGES

# Scenario keys, as the report's JSON and ratios name them.
REST_CLASSIFY = "rest_classify"
GRPC_CLASSIFY = "grpc_classify"
GRPC_RESNET = "grpc_resnet"
NAIVE = "naive"
GRPC_NOBATCH = "grpc_resnet_nobatch"
GRPC_FP16 = "grpc_resnet_fp16"
FASTAPI_ORT = "fastapi_ort"
LITSERVE = "litserve"
REST_CLASSIFY_PHONE = "rest_classify_phone"
GRPC_CLASSIFY_PHONE = "grpc_classify_phone"
FASTAPI_ORT_PHONE = "fastapi_ort_phone"
LITSERVE_PHONE = "litserve_phone"
FASTAPI_TRITON = "fastapi_triton"  # the hand-written relay in front of the same Triton
CRUD = "crud"
CRUD_LOADED = "crud_under_load"
REST_CACHED = "rest_classify_cached"  # scenario 10: Triton's response cache on, the six photos again and again
REST_CACHE_MISSES = "rest_classify_cache_misses"  # the same, every photo a new one
REST_EDGES = "rest_edges"
GRPC_EDGES = "grpc_edges"
EDGES_BY_SIZE = "rest_edges_"  # + the size's label, e.g. rest_edges_12mp

# Triton's python-backend stubs together (each is counted under its model: bench.process_cpu.STUB).
TRITON_STUBS = "triton stubs"
# Hops whose received bytes are counted (bench.wire).
TO_GATEWAY, TO_TRITON, TO_PEER = "client->gateway", "->triton", "client->peer"


@dataclass(frozen=True)
class Inputs:
    """The run's photographs: ImageNet-size, phone-size, and the edge route's sizes (label -> JPEGs)."""

    imagenet: Sequence[bytes]
    phone: Sequence[bytes]
    edge_sizes: Mapping[str, Sequence[bytes]]


@dataclass(frozen=True)
class Plan:
    """What to measure and how long; ``python -m bench`` fills it from its options and the device presets."""

    levels: tuple[int, ...]  # ResNet scenarios, the peers included
    light_levels: tuple[int, ...]  # edge detection
    crud_levels: tuple[int, ...]
    load_concurrency: int  # scenario 1 in the background while CRUD is measured under load
    timing: Timing
    crud_items: int  # seeded before the CRUD scenario
    phone_levels: tuple[int, ...] = (1, 4)  # phone photos: REST, gRPC and the peers
    ort_batches: tuple[int, ...] = (1, 2, 4, 8, 16)  # ONNX Runtime alone (bench.ort_alone), before the stack starts
    ort_seconds: float = 3.0  # per batch size and setting
    cache_levels: tuple[int, ...] = (1, 16)  # scenario 10, on a stack of its own with the response cache on
    distinct_photos: int = 800  # scenario 10's misses: more than its levels send
    repeats: int = 3  # interleaved rounds of the headline ratios (0: none)
    headline_levels: tuple[int, ...] = (1, 16, 64)
    headline_window_s: float = 4.0
    ratio_level: int = 16  # where gRPC joins the headline rounds
    edge_sizes: int = 3  # the edge route's image sizes (bench.run.EDGE_SIZES and the phone size)

    @property
    def planned_s(self) -> float:
        """About how long the run takes: every level's warm-up and window plus a second to come back, ONNX Runtime
        alone, the headline rounds, and a minute for the servers to start (more when levels queue for long)."""
        timing = self.timing
        level_s = timing.warmup_s + timing.window_s + 1
        levels = 5 * len(self.levels) + 2 * len(self.phone_levels)  # scenarios 1-5 and 8
        levels += 2 * (len(self.levels) + len(self.phone_levels)) + len(self.levels)  # the peers, the relay
        levels += 2 * len(self.light_levels) + self.edge_sizes - 1 + len(self.largest_edge_levels)
        levels += 2 * len(self.crud_levels)
        alone = 3 * len(self.ort_batches) * (self.ort_seconds + 1)
        levels += 2 * len(self.cache_levels)  # on a stack of their own: another 30 s to start it
        rounds = self.repeats * sum(3 + (level == self.ratio_level) for level in self.headline_levels)
        probes = self.repeats * sum(level >= self.ratio_level for level in self.headline_levels)  # ORT alone again
        start = 60 + (30 if self.cache_levels else 0)
        windows = rounds * (timing.warmup_s + self.headline_window_s + 1) + probes * (self.headline_window_s + 3)
        return start + levels * level_s + alone + windows

    largest_edge_levels: tuple[int, ...] = (1, 4)  # the largest edge size (504s counted); the others at 1
    read_fraction: float = 0.8


@dataclass(frozen=True)
class Measured:
    """A scenario as the report shows it, plus what only the analysis reads, per concurrency level: every
    observed model's statistics and each process tree's CPU seconds over its window, and each hop's received
    bytes over the whole level (``bench.wire``)."""

    scenario: Scenario
    triton: dict[int, dict[str, TritonDelta]]
    cpu_s: dict[int, dict[str, float]]
    wire_bytes: dict[int, dict[str, int]] = field(default_factory=dict)
    upload_bytes: float | None = None  # the mean body the scenario sent (its inputs' mean size)


@dataclass(frozen=True)
class Yardstick:
    """ONNX Runtime alone at its best (bench.ort_alone), measured again in the headline rounds."""

    model: str  # the model.onnx
    crop: int
    setting: str
    batch: int

    async def images_per_s(self, seconds: float) -> float:
        command = ort_alone.command(self.model, [self.batch], seconds, self.crop, [self.setting])
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        output, _ = await process.communicate()
        if process.returncode:
            raise ScenarioFailed(f"ONNX Runtime alone failed ({process.returncode}): {' '.join(command)}")
        (point,) = ort_alone.points_of(output.decode())
        return point.images_per_s


@dataclass
class SuiteResult:
    measured: dict[str, Measured] = field(default_factory=dict)
    background: Background | None = None
    classify_steps: list[str] = field(default_factory=list)  # the models the classify ensemble runs, as served
    headline: list[headline.Repeats] = field(default_factory=list)  # the goals' ratios, interleaved repeats


class ScenarioFailed(RuntimeError):
    """A scenario's first request failed: the stack is misconfigured, so measuring it would be meaningless."""


def _mean_size(jpegs: Sequence[bytes]) -> float:
    return sum(map(len, jpegs)) / len(jpegs)


class _Meter:
    def __init__(self, triton: InferenceServerClient, stack: Stack, timing: Timing, phone: Sequence[bytes]) -> None:
        self.triton = triton
        self.phone = phone
        self.stack = stack
        self.timing = timing
        self.result = SuiteResult()
        triton_port = stack.triton.ports.grpc
        self.rest_hops = {TO_GATEWAY: Hop(port_of(stack.gateway.url)), TO_TRITON: Hop(triton_port, stack.gateway.pid)}
        self.grpc_hops = {TO_TRITON: Hop(triton_port, os.getpid())}

    async def measure(
        self,
        name: str,
        title: str,
        send: Send,
        levels: Sequence[int],
        models: Sequence[str] = (),
        *,
        hops: Mapping[str, Hop] | None = None,
        extra_pids: Mapping[str, int] | None = None,
        jpegs: Sequence[bytes] = (),
        expected_errors: Sequence[str] = (),
    ) -> None:
        """Run one scenario; the first of ``models`` is the one its table shows (mean batch, queue). A first
        request failing with one of ``expected_errors`` (a 504 the scenario counts) does not stop the run."""
        say(title)
        try:
            await send()
        except Exception as exc:
            if error_kind(exc) not in expected_errors:
                raise ScenarioFailed(f"{name}: the first request failed ({error_kind(exc)}): {exc}") from exc
        windows = {model: TritonWindow(self.triton, model) for model in models}
        cpu = CpuWindow(self.stack.pids() | dict(extra_pids or {}), children_apart={"triton": triton_stub_role})
        wire = WireCounter(hops or {})
        observer = Observers(*windows.values(), cpu)
        results = []
        for level in levels:
            with wire.level(level):
                results += await run_levels(send, [level], self.timing, label=name, observer=observer)
        shown = windows[models[0]].deltas if models else {}
        self.result.measured[name] = Measured(
            Scenario(name, title, [Level(load, shown.get(load.concurrency)) for load in results]),
            {level: {model: w.deltas[level] for model, w in windows.items() if level in w.deltas} for level in levels},
            cpu.seconds,
            wire.bytes,
            _mean_size(jpegs) if jpegs else None,
        )

    async def post_jpegs(
        self,
        name: str,
        title: str,
        base: str,
        path: str,
        jpegs: Sequence[bytes],
        levels: Sequence[int],
        models: Sequence[str] = (),
        hops: Mapping[str, Hop] | None = None,
        expected_errors: Sequence[str] = (),
    ) -> None:
        """A REST scenario: the JPEGs as raw bodies, through a session sized to the scenario's concurrency."""
        async with sc.HttpClients(base, max(levels)) as session:
            send = sc.post_image(session, path, RoundRobin(jpegs))
            await self.measure(
                name, title, send, levels, models, hops=hops, jpegs=jpegs, expected_errors=expected_errors
            )

    async def peer(
        self,
        kind: str,
        service: Service,
        runs: Sequence[tuple[str, Sequence[bytes], Sequence[int]]],
        models: Sequence[str] = (),
    ) -> None:
        """A peer's scenarios (name, JPEGs, levels); its process tree is counted under its own role, and ``models``
        are the Triton models it runs (the relay's)."""
        hops = {TO_PEER: Hop(port_of(service.url))}
        for name, jpegs, levels in runs:
            title = f"{_PEER_TITLES[kind]}{' (phone photos)' if jpegs is self.phone else ''}"
            async with sc.HttpClients(service.url, max(levels)) as session:
                send = _peer_send(kind, session, jpegs)
                await self.measure(
                    name, title, send, levels, models, hops=hops, extra_pids={kind: service.pid}, jpegs=jpegs
                )


def _peer_send(kind: str, session: sc.HttpClients, jpegs: Sequence[bytes]) -> Send:
    """A peer takes the JPEG the way its documentation says: LitServe as a multipart file, the FastAPI app raw."""
    if kind == peers.LITSERVE:
        return sc.post_multipart(session, peers.PATH, peers.UPLOAD_FIELD, RoundRobin(jpegs))
    return sc.post_image(session, peers.PATH, RoundRobin(jpegs))


async def _headline(
    plan: Plan,
    gateway: str,
    triton: InferenceServerClient,
    started: Mapping[str, Service],
    jpegs: Sequence[bytes],
    yardstick: Yardstick | None,
) -> list[headline.Repeats]:
    """The goals' ratios, interleaved: REST and each peer at each headline level, gRPC at the ratio level, ONNX
    Runtime alone (its best setting and batch) once a round from the ratio level up."""
    timing = Timing(plan.timing.warmup_s, plan.headline_window_s, plan.timing.drain_s)
    found = []
    for level in plan.headline_levels if plan.repeats else ():
        async with contextlib.AsyncExitStack() as sessions:
            ours = await sessions.enter_async_context(sc.HttpClients(gateway, level))
            systems = {headline.OURS: headline.System(sc.post_image(ours, "/v1/classify", RoundRobin(jpegs)))}
            for kind, service in started.items():
                session = await sessions.enter_async_context(sc.HttpClients(service.url, level))
                systems[kind] = headline.System(_peer_send(kind, session, jpegs), service.pid)
            if level == plan.ratio_level:
                systems[headline.GRPC] = headline.System(sc.infer_encoded(triton, CLASSIFY, jpegs, sc.top_k()))
            probes = (
                {headline.ORT_ALONE: lambda: yardstick.images_per_s(plan.headline_window_s)}
                if yardstick and level >= plan.ratio_level
                else {}
            )
            found.append(await headline.interleave(systems, level, plan.repeats, timing, probes))
    return found


PEERS = {peers.FASTAPI_ORT: (FASTAPI_ORT, FASTAPI_ORT_PHONE), peers.LITSERVE: (LITSERVE, LITSERVE_PHONE)}
_PEER_TITLES = {
    peers.FASTAPI_ORT: (
        f"peer: a plain FastAPI app running ONNX Runtime in-process ({peers.BEST[peers.FASTAPI_ORT].describe()}; "
        "same model.onnx, raw JPEG body)"
    ),
    peers.LITSERVE: f"peer: LitServe, {peers.BEST[peers.LITSERVE].describe()}, same model.onnx, multipart upload",
    peers.FASTAPI_TRITON: (
        "peer: a hand-written FastAPI app in front of the same Triton (tritonclient.grpc.aio, the raw body to the "
        "classify ensemble; no header check, limits, request ids, logs or metrics)"
    ),
}


async def run_suite(
    plan: Plan, stack: Stack, models: BenchModels, inputs: Inputs, workdir: Path, yardstick: Yardstick | None = None
) -> SuiteResult:
    gateway = stack.gateway.url
    jpegs, phone = inputs.imagenet, inputs.phone
    async with contextlib.AsyncExitStack() as resources:
        triton = sc.grpc_client(stack.triton.grpc_url)
        resources.push_async_callback(triton.close)
        meter = _Meter(triton, stack, plan.timing, phone)
        served = await triton.get_model_config(CLASSIFY)  # the runtime's ensemble (steps may be fused on a CPU)
        meter.result.classify_steps = [step.model_name for step in served.config.ensemble_scheduling.step]
        tensors = sc.preprocessed(jpegs)
        steps = [step for step in meter.result.classify_steps if step != models.resnet]
        ensemble = [models.resnet, CLASSIFY, *steps]  # the network first: its batches are what the tables show
        rest, grpc = meter.rest_hops, meter.grpc_hops

        title = "1. REST POST /v1/classify through the gateway (JPEG body)"
        await meter.post_jpegs(REST_CLASSIFY, title, gateway, "/v1/classify", jpegs, plan.levels, ensemble, rest)
        title = "2. gRPC straight to Triton's classify ensemble (the JPEG's bytes)"
        send = sc.infer_encoded(triton, CLASSIFY, jpegs, sc.top_k())
        await meter.measure(GRPC_CLASSIFY, title, send, plan.levels, ensemble, hops=grpc, jpegs=jpegs)
        title = "3. gRPC straight to the ResNet alone (preprocessed tensors), dynamic batching on"
        send = sc.infer_tensors(triton, models.resnet, tensors)
        await meter.measure(GRPC_RESNET, title, send, plan.levels, [models.resnet])
        title = "4. naive baseline: eager PyTorch per request behind FastAPI (REST, same weights)"
        if stack.naive is not None:
            await meter.post_jpegs(NAIVE, title, stack.naive.url, "/v1/classify", jpegs, plan.levels)
        title = "5. as 3, dynamic batching off (same network, same concurrency)"
        send = sc.infer_tensors(triton, models.nobatch, tensors)
        await meter.measure(GRPC_NOBATCH, title, send, plan.levels, [models.nobatch])
        if models.fp16:
            title = "3b. as 3, the FP16 export of the same network"
            send = sc.infer_tensors(triton, models.fp16, tensors)
            await meter.measure(GRPC_FP16, title, send, plan.levels, [models.fp16])

        title = "8. REST POST /v1/classify through the gateway (phone photos)"
        await meter.post_jpegs(
            REST_CLASSIFY_PHONE, title, gateway, "/v1/classify", phone, plan.phone_levels, ensemble, rest
        )
        title = "8. gRPC straight to Triton's classify ensemble (phone photos' bytes)"
        send = sc.infer_encoded(triton, CLASSIFY, phone, sc.top_k())
        await meter.measure(GRPC_CLASSIFY_PHONE, title, send, plan.phone_levels, ensemble, hops=grpc, jpegs=phone)
        with running_peer(peers.FASTAPI_TRITON, stack, models.resnet, workdir) as relay:
            await meter.peer(peers.FASTAPI_TRITON, relay, [(FASTAPI_TRITON, jpegs, plan.levels)], ensemble)
        with contextlib.ExitStack() as running:
            started = {kind: running.enter_context(running_peer(kind, stack, models.resnet, workdir)) for kind in PEERS}
            with headline.paused([service.pid for service in started.values()]):
                for kind, (name, phone_name) in PEERS.items():
                    with headline.resumed(started[kind].pid):
                        runs = [(name, jpegs, plan.levels), (phone_name, phone, plan.phone_levels)]
                        await meter.peer(kind, started[kind], runs)
                meter.result.headline = await _headline(plan, gateway, triton, started, jpegs, yardstick)

        title = "7. REST POST /v1/edges?format=json through the gateway"
        await meter.post_jpegs(
            REST_EDGES, title, gateway, "/v1/edges?format=json", jpegs, plan.light_levels, [EDGES], rest
        )
        title = "7. gRPC straight to Triton's edges model (the JPEG's bytes; the whole edge map comes back)"
        send = sc.infer_encoded(triton, EDGES, jpegs, sc.edges_outputs(), sc.edge_thresholds())
        await meter.measure(GRPC_EDGES, title, send, plan.light_levels, [EDGES], hops=grpc, jpegs=jpegs)
        largest = list(inputs.edge_sizes)[-1]
        for label, sized in inputs.edge_sizes.items():
            levels = plan.largest_edge_levels if label == largest else (1,)
            title = f"9. REST POST /v1/edges?format=json through the gateway, {label} photos"
            await meter.post_jpegs(
                EDGES_BY_SIZE + label, title, gateway, "/v1/edges?format=json", sized, levels, [EDGES], rest,
                expected_errors=("http_504",),  # past the gateway's deadline: what this scenario counts
            )  # fmt: skip
        # Last: the background inference must not overlap any other scenario.
        meter.result.background = await _crud(meter, plan, gateway, models.resnet, jpegs)
        return meter.result


async def run_cache_suite(plan: Plan, stack: Stack, models: BenchModels, inputs: Inputs) -> SuiteResult:
    """Scenario 10, on a stack with Triton's response cache on: REST classify on the six photos over and over (past
    the first of each, every network answer a hit), then on photos none of which repeats (every one a miss)."""
    jpegs = inputs.imagenet
    async with contextlib.AsyncExitStack() as resources:
        triton = sc.grpc_client(stack.triton.grpc_url)
        resources.push_async_callback(triton.close)
        meter = _Meter(triton, stack, plan.timing, inputs.phone)
        served = await triton.get_model_config(CLASSIFY)
        steps = [step.model_name for step in served.config.ensemble_scheduling.step]
        ensemble = [models.resnet, CLASSIFY, *(step for step in steps if step != models.resnet)]
        gateway, rest = stack.gateway.url, meter.rest_hops
        levels = plan.cache_levels
        title = "10. REST POST /v1/classify, the six photos again and again, Triton's response cache on"
        await meter.post_jpegs(REST_CACHED, title, gateway, "/v1/classify", jpegs, levels, ensemble, rest)
        new = distinct(jpegs, plan.distinct_photos)
        title = "10. as above, every photo a new one (its own pixel changed): every answer a cache miss"
        await meter.post_jpegs(REST_CACHE_MISSES, title, gateway, "/v1/classify", new, levels, ensemble, rest)
        meter.result.classify_steps = steps
        return meter.result


async def _crud(meter: _Meter, plan: Plan, gateway: str, resnet: str, jpegs: Sequence[bytes]) -> Background:
    """Scenario 6: the same CRUD mix alone, then while REST classify keeps the machine busy."""
    async with sc.HttpClients(gateway, max(plan.crud_levels)) as session:
        ids = await sc.seed_items(session, plan.crud_items)
        mix = sc.crud(session, ids, plan.read_fraction)
        what = f"{100 * plan.read_fraction:.0f}% GET, the rest PUT and POST"
        await meter.measure(CRUD, f"6. CRUD through the gateway, alone ({what})", mix, plan.crud_levels)
        async with sc.HttpClients(gateway, plan.load_concurrency) as load_session:
            load = sc.post_image(load_session, "/v1/classify", RoundRobin(jpegs))
            say(f"REST classify at concurrency {plan.load_concurrency} in the background")
            async with background_load(load, plan.load_concurrency, 120.0, plan.timing.drain_s) as background:
                title = f"6. CRUD through the gateway while REST classify runs at concurrency {plan.load_concurrency}"
                await meter.measure(CRUD_LOADED, title, mix, plan.crud_levels, [resnet])
    return background
