"""Every scenario of one benchmark run, in one process against one stack, so their ratios are comparable.

Each scenario sends one request first (a scenario that cannot work fails the run at once, with the reason,
instead of filling a table with errors), then runs its concurrency levels while Triton's statistics (every
model it touches) and the CPU time of each process tree are recorded over each measuring window.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from tritonclient.grpc.aio import InferenceServerClient

from bench import scenarios as sc
from bench.inputs import RoundRobin
from bench.loadgen import Background, Observers, Send, Timing, background_load, run_levels
from bench.process_cpu import CpuWindow
from bench.results import Level, Scenario
from bench.stack import Stack, say
from bench.stats import error_kind
from bench.triton_stats import TritonDelta, TritonWindow
from bench.variants import BenchModels
from export.repository import CLASSIFY, EDGES, PREPROCESS

# Scenario keys, as the report's JSON and ratios name them.
REST_CLASSIFY = "rest_classify"
GRPC_CLASSIFY = "grpc_classify"
GRPC_RESNET = "grpc_resnet"
NAIVE = "naive"
GRPC_NOBATCH = "grpc_resnet_nobatch"
GRPC_FP16 = "grpc_resnet_fp16"
CRUD = "crud"
CRUD_LOADED = "crud_under_load"
REST_EDGES = "rest_edges"
GRPC_EDGES = "grpc_edges"


@dataclass(frozen=True)
class Plan:
    """What to measure and how long; ``python -m bench`` fills it from its options and the device presets."""

    levels: tuple[int, ...]  # ResNet scenarios
    light_levels: tuple[int, ...]  # edge detection
    crud_levels: tuple[int, ...]
    load_concurrency: int  # scenario 1 in the background while CRUD is measured under load
    timing: Timing
    predecoded: bool  # gRPC clients send images decoded once instead of decoding per request
    crud_items: int  # seeded before the CRUD scenario
    read_fraction: float = 0.8


@dataclass(frozen=True)
class Measured:
    """A scenario as the report shows it, plus what only the analysis reads: every observed model's
    statistics and each process tree's CPU seconds, per concurrency level."""

    scenario: Scenario
    triton: dict[int, dict[str, TritonDelta]]
    cpu_s: dict[int, dict[str, float]]


@dataclass
class SuiteResult:
    measured: dict[str, Measured] = field(default_factory=dict)
    background: Background | None = None


class ScenarioFailed(RuntimeError):
    """A scenario's first request failed: the stack is misconfigured, so measuring it would be meaningless."""


class _Meter:
    def __init__(self, triton: InferenceServerClient, stack: Stack, timing: Timing) -> None:
        self.triton = triton
        self.pids = stack.pids()
        self.timing = timing
        self.result = SuiteResult()

    async def measure(
        self, name: str, title: str, send: Send, levels: Sequence[int], models: Sequence[str] = ()
    ) -> None:
        """Run one scenario; the first of ``models`` is the one its table shows (mean batch, queue)."""
        say(title)
        try:
            await send()
        except Exception as exc:
            raise ScenarioFailed(f"{name}: the first request failed ({error_kind(exc)}): {exc}") from exc
        windows = {model: TritonWindow(self.triton, model) for model in models}
        cpu = CpuWindow(self.pids)
        results = await run_levels(send, levels, self.timing, label=name, observer=Observers(*windows.values(), cpu))
        shown = windows[models[0]].deltas if models else {}
        self.result.measured[name] = Measured(
            Scenario(name, title, [Level(load, shown.get(load.concurrency)) for load in results]),
            {level: {model: w.deltas[level] for model, w in windows.items() if level in w.deltas} for level in levels},
            cpu.seconds,
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
    ) -> None:
        """A REST scenario: the JPEGs as raw bodies, through a session sized to the scenario's concurrency."""
        async with sc.http_client(base, max(levels)) as session:
            await self.measure(name, title, sc.post_image(session, path, RoundRobin(jpegs)), levels, models)


async def run_suite(plan: Plan, stack: Stack, models: BenchModels, jpegs: Sequence[bytes]) -> SuiteResult:
    gateway = stack.gateway.url
    async with contextlib.AsyncExitStack() as resources:
        triton = sc.grpc_client(stack.triton.grpc_url)
        resources.push_async_callback(triton.close)
        meter = _Meter(triton, stack, plan.timing)
        tensors = await sc.preprocessed(triton, PREPROCESS, jpegs)
        images = sc.decoded_once if plan.predecoded else sc.decoding
        how = "decoded once" if plan.predecoded else "decoded per request by the client"
        ensemble = [models.resnet, CLASSIFY, PREPROCESS]

        title = "1. REST POST /v1/classify through the gateway (JPEG body)"
        await meter.post_jpegs(REST_CLASSIFY, title, gateway, "/v1/classify", jpegs, plan.levels, ensemble)
        title = f"2. gRPC straight to Triton's classify ensemble (JPEG {how})"
        send = sc.infer_images(triton, CLASSIFY, images(jpegs), sc.top_k())
        await meter.measure(GRPC_CLASSIFY, title, send, plan.levels, ensemble)
        title = "3. gRPC straight to the ResNet alone (preprocessed tensors), dynamic batching on"
        send = sc.infer_tensors(triton, models.resnet, tensors)
        await meter.measure(GRPC_RESNET, title, send, plan.levels, [models.resnet])
        title = "4. naive baseline: eager PyTorch per request behind FastAPI (REST, same weights)"
        await meter.post_jpegs(NAIVE, title, stack.naive.url, "/v1/classify", jpegs, plan.levels)
        title = "5. as 3, dynamic batching off (same network, same concurrency)"
        send = sc.infer_tensors(triton, models.nobatch, tensors)
        await meter.measure(GRPC_NOBATCH, title, send, plan.levels, [models.nobatch])
        if models.fp16:
            title = "3b. as 3, the FP16 export of the same network"
            send = sc.infer_tensors(triton, models.fp16, tensors)
            await meter.measure(GRPC_FP16, title, send, plan.levels, [models.fp16])
        title = "7. REST POST /v1/edges?format=json through the gateway"
        await meter.post_jpegs(REST_EDGES, title, gateway, "/v1/edges?format=json", jpegs, plan.light_levels, [EDGES])
        title = f"7. gRPC straight to Triton's edges model (JPEG {how}; the whole edge map comes back)"
        send = sc.infer_images(triton, EDGES, images(jpegs), sc.edges_outputs(), sc.edge_thresholds())
        await meter.measure(GRPC_EDGES, title, send, plan.light_levels, [EDGES])
        # Last: the background inference must not overlap any other scenario.
        meter.result.background = await _crud(meter, plan, gateway, models.resnet, jpegs)
        return meter.result


async def _crud(meter: _Meter, plan: Plan, gateway: str, resnet: str, jpegs: Sequence[bytes]) -> Background:
    """Scenario 6: the same CRUD mix alone, then while REST classify keeps the machine busy."""
    async with sc.http_client(gateway, max(plan.crud_levels)) as session:
        ids = await sc.seed_items(session, plan.crud_items)
        mix = sc.crud(session, ids, plan.read_fraction)
        what = f"{100 * plan.read_fraction:.0f}% GET, the rest PUT and POST"
        await meter.measure(CRUD, f"6. CRUD through the gateway, alone ({what})", mix, plan.crud_levels)
        async with sc.http_client(gateway, plan.load_concurrency) as load_session:
            load = sc.post_image(load_session, "/v1/classify", RoundRobin(jpegs))
            say(f"REST classify at concurrency {plan.load_concurrency} in the background")
            async with background_load(load, plan.load_concurrency, 120.0, plan.timing.drain_s) as background:
                title = f"6. CRUD through the gateway while REST classify runs at concurrency {plan.load_concurrency}"
                await meter.measure(CRUD_LOADED, title, mix, plan.crud_levels, [resnet])
    return background
