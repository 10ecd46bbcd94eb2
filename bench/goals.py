"""The issue's goals and the side-by-side ratios, read off one run's scenarios.

Ratios compare throughput at the same concurrency (``--ratio-level``); goals are the issues' targets for the
device the run was on, each with the figure that decides it and where that figure was read: for a CPU figure,
the CPU each process spent, so a miss comes with what explains it. The headline ratios (REST against the best
peer, against gRPC, against ONNX Runtime alone; the latency at concurrency 1) are the medians of interleaved
repeats (``bench.headline``) where the run made them, with their spread, else the single pass's.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench import peers
from bench.headline import GRPC, ORT_ALONE, OURS, Repeats, spread
from bench.ort_alone import Point
from bench.profile import GATEWAY, RELAY_PATH, PathFigures
from bench.results import Goal, Ratio, Scenario
from bench.suite import (
    CRUD,
    CRUD_LOADED,
    FASTAPI_ORT,
    FASTAPI_ORT_PHONE,
    FASTAPI_TRITON,
    GRPC_CLASSIFY,
    GRPC_EDGES,
    GRPC_FP16,
    GRPC_NOBATCH,
    GRPC_RESNET,
    LITSERVE,
    LITSERVE_PHONE,
    NAIVE,
    REST_CLASSIFY,
    REST_CLASSIFY_PHONE,
    REST_EDGES,
    TO_GATEWAY,
    TO_TRITON,
)

# The issues' targets.
CPU_GATEWAY_SHARE = 0.95  # REST throughput over gRPC's, at concurrency 16 and 64
CPU_OVER_PEERS = 1.0  # REST throughput over the best peer's (the FastAPI + ORT app, LitServe) at each level
CPU_OVER_ORT_ALONE = 0.95  # REST throughput over ONNX Runtime alone at its best batch, at concurrency 16 and 64
PATH_CPU_MS = {"ImageNet-size": 5.0, "phone photo": 45.0}  # CPU per classification outside the network
GATEWAY_CPU_MS = 2.0  # the gateway's own CPU per ImageNet-size request, REST, concurrency 1
# Bytes the gateway sends Triton over the bytes its client uploaded, both on the wire: the file once, as it came.
# The two framings differ by tens of bytes (gRPC's headers and fields against HTTP/1.1's); pixels would be 2.3x
# an ImageNet-size JPEG (224 x 224 x 3 bytes against 64 KiB) and tens of times a phone photo.
FORWARDED_BYTES_X = 1.01
LATENCY_OVER_PEER_MS = 3.0  # REST's mean latency at concurrency 1 over the plain FastAPI + ORT app's
PHONE_LATENCY_MS = 150.0  # mean, at concurrency 1
HEADLINE_LEVELS = (1, 16, 64)
PEER_LEVELS = (16, 64)
PEERS = {FASTAPI_ORT: "fastapi-ort", LITSERVE: "litserve"}  # scenario -> its name in the headline rounds
CPU_MEAN_BATCH = 4.0  # at concurrency 16, batching on
CPU_OVER_NAIVE = 1.5
CRUD_RPS, CRUD_IDLE_P99_MS, CRUD_LOADED_P99_MS = 2000.0, 10.0, 25.0
GPU_GATEWAY_IPS, GPU_TRITON_IPS, GPU_P99_MS, GPU_OVER_NAIVE = 8000.0, 12000.0, 50.0, 10.0


def ratios(scenarios: Sequence[Scenario], level: int, device: str) -> list[Ratio]:
    names = {scenario.name for scenario in scenarios}
    cpu = device == "cpu"
    chosen = [
        # Its goal is the goals table's "REST / gRPC straight to Triton" (interleaved rounds): no verdict of its own.
        Ratio("gateway / straight to Triton (classify)", REST_CLASSIFY, GRPC_CLASSIFY, level),
        Ratio("gateway / naive baseline", REST_CLASSIFY, NAIVE, level, CPU_OVER_NAIVE if cpu else None),
        Ratio("straight to Triton / naive baseline", GRPC_CLASSIFY, NAIVE, level),
        Ratio("ResNet alone / classify ensemble (what preprocessing costs)", GRPC_RESNET, GRPC_CLASSIFY, level),
        Ratio("gateway / straight to Triton (edges)", REST_EDGES, GRPC_EDGES, level),
        # What the gateway's checks, limits and observability cost in throughput, against a bare relay.
        Ratio("gateway / hand-written FastAPI relay to Triton (classify)", REST_CLASSIFY, FASTAPI_TRITON, level),
    ]
    levels = sorted({lvl.load.concurrency for s in scenarios if s.name == GRPC_RESNET for lvl in s.levels})
    chosen += [Ratio("dynamic batching on / off (ResNet alone)", GRPC_RESNET, GRPC_NOBATCH, c) for c in levels]
    if GRPC_FP16 in names:
        chosen += [Ratio("FP16 / FP32 (ResNet alone)", GRPC_FP16, GRPC_RESNET, c) for c in levels]
    crud_levels = sorted({lvl.load.concurrency for s in scenarios if s.name == CRUD for lvl in s.levels})
    chosen += [Ratio("CRUD under inference load / alone", CRUD_LOADED, CRUD, c) for c in crud_levels]
    return [ratio for ratio in chosen if {ratio.numerator, ratio.denominator} <= names]


def _best(scenario: Scenario | None, p99_ms: float | None = None) -> tuple[float | None, str]:
    """The highest throughput among levels with p99 within ``p99_ms`` (any p99 when None), and where; zero when
    no level qualified (the scenario sustained nothing within the bound), None when it was not measured."""
    if scenario is None:
        return None, "not measured"
    points = [
        level.load for level in scenario.levels
        if level.load.latency.p99_ms is not None and (p99_ms is None or level.load.latency.p99_ms <= p99_ms)
    ]  # fmt: skip
    if not points:
        return 0.0, f"no level had p99 within {p99_ms:g} ms" if p99_ms is not None else "no level succeeded"
    best = max(points, key=lambda load: load.throughput_rps)
    return best.throughput_rps, f"c={best.concurrency}, p99 {best.latency.p99_ms:,.1f} ms"


def _crud_goals(by_name: dict[str, Scenario]) -> list[Goal]:
    alone, loaded = by_name.get(CRUD), by_name.get(CRUD_LOADED)
    rps, where = _best(alone, CRUD_IDLE_P99_MS)
    goals = [
        Goal(f"CRUD alone, one worker, p99 < {CRUD_IDLE_P99_MS:g} ms", rps, "req/s", at_least=CRUD_RPS, detail=where)
    ]
    # Under load, judged at the busiest level the idle run sustained within its p99 (else its busiest level).
    idle = [lvl.load for lvl in (alone.levels if alone else []) if lvl.load.throughput_rps > 0]
    within = [load for load in idle if load.latency.p99_ms is not None and load.latency.p99_ms <= CRUD_IDLE_P99_MS]
    level = max(within or idle, key=lambda load: load.throughput_rps).concurrency if idle else None
    point = loaded.at(level) if loaded and level is not None else None
    goals.append(
        Goal(
            "CRUD p99 while inference saturates the machine",
            point.load.latency.p99_ms if point else None,
            "ms",
            at_most=CRUD_LOADED_P99_MS,
            detail=f"c={level}, {point.load.throughput_rps:,.0f} req/s" if point else "not measured",
        )
    )
    return goals


def _rps(by_name: dict[str, Scenario], name: str, level: int) -> float | None:
    point = by_name[name].at(level) if name in by_name else None
    return point.load.throughput_rps if point else None


def _over_best(
    label: str, by_name: dict[str, Scenario], over: str, unders: Sequence[str], level: int, target: float
) -> Goal:
    """Single pass: throughput of ``over`` / the best of ``unders`` at one concurrency."""
    top = _rps(by_name, over, level)
    bottoms = {name: rps for name in unders if (rps := _rps(by_name, name, level))}
    if top is None or not bottoms:
        return Goal(label, None, "x", at_least=target, detail="not measured")
    detail = f"{top:,.1f} req/s against " + ", ".join(f"{name} {rps:,.1f}" for name, rps in bottoms.items())
    return Goal(label, top / max(bottoms.values()), "x", at_least=target, detail=f"{detail} (one pass)")


def _interleaved(label: str, repeats: Repeats, over: str, unders: Sequence[str], target: float) -> Goal:
    """Interleaved repeats: the median of each round's ratio, with the spread and the medians behind it."""
    found = spread(repeats.ratios(over, unders))
    if found is None:
        return Goal(label, None, "x", at_least=target, detail="not measured")
    median, low, high = found
    throughput = {name: spread(repeats.throughput[name]) for name in (over, *unders) if name in repeats.throughput}
    sides = ", ".join(f"{name} {value[0]:,.1f}" for name, value in throughput.items() if value)
    detail = (
        f"median of {len(repeats.ratios(over, unders))} interleaved rounds, spread {low:.2f}-{high:.2f}; req/s: {sides}"
    )
    return Goal(label, median, "x", at_least=target, detail=detail)


def _headline_goals(
    by_name: dict[str, Scenario], headline: Sequence[Repeats], ort_best: Point | None, level: int
) -> list[Goal]:
    """REST against the best peer (at each headline level: c=1, 16, 64), gRPC and ONNX Runtime alone (from the
    ratio level up: c=16, 64), and the latency at c=1 against the plain app: from the interleaved rounds where
    the run made them, else from the one pass of each scenario."""
    rounds = {repeats.concurrency: repeats for repeats in headline}
    levels = sorted(rounds) or list(HEADLINE_LEVELS)
    loaded = [c for c in levels if c >= level] or list(PEER_LEVELS)  # where the goals on throughput apply
    peers = list(PEERS.values())
    found = []
    for c in levels:
        label = f"REST / the best peer at c={c}"
        if c in rounds:
            found.append(_interleaved(label, rounds[c], OURS, peers, CPU_OVER_PEERS))
        else:
            found.append(_over_best(label, by_name, REST_CLASSIFY, list(PEERS), c, CPU_OVER_PEERS))
    for c in loaded:
        label = f"REST / gRPC straight to Triton at c={c}"
        if c in rounds and GRPC in rounds[c].throughput:
            found.append(_interleaved(label, rounds[c], OURS, [GRPC], CPU_GATEWAY_SHARE))
        else:
            found.append(_over_best(label, by_name, REST_CLASSIFY, [GRPC_CLASSIFY], c, CPU_GATEWAY_SHARE))
    for c in loaded:
        label = f"REST / ONNX Runtime alone at its best batch, c={c}"
        if c in rounds and ORT_ALONE in rounds[c].throughput:
            found.append(_interleaved(label, rounds[c], OURS, [ORT_ALONE], CPU_OVER_ORT_ALONE))
            continue
        ours = spread(rounds[c].throughput.get(OURS, [])) if c in rounds else None
        rest = ours[0] if ours else _rps(by_name, REST_CLASSIFY, c)
        value = rest / ort_best.images_per_s if rest is not None and ort_best else None
        detail = (
            f"{rest:,.1f} req/s ({'interleaved median' if ours else 'one pass'}) against {ort_best.images_per_s:,.1f} "
            f"images/s ({ort_best.setting}, batch {ort_best.batch}, before the stack started)"
            if value is not None and ort_best
            else "not measured"
        )
        found.append(Goal(label, value, "x", at_least=CPU_OVER_ORT_ALONE, detail=detail))
    found.append(_latency_goal(by_name, rounds.get(1)))
    return found


def _latency_goal(by_name: dict[str, Scenario], repeats: Repeats | None) -> Goal:
    """REST's mean latency at c=1 minus the plain FastAPI + ORT app's, per round (median), else the one pass's."""
    label, peer = "c=1 mean latency over the plain FastAPI + ORT app", PEERS[FASTAPI_ORT]
    if repeats and OURS in repeats.latency_ms and peer in repeats.latency_ms:
        pairs = zip(repeats.latency_ms[OURS], repeats.latency_ms[peer], strict=True)
        found = spread([ours - theirs for ours, theirs in pairs if ours is not None and theirs is not None])
        if found:
            median, low, high = found
            detail = f"median of interleaved rounds, spread {low:+.1f} to {high:+.1f} ms"
            return Goal(label, median, "ms", at_most=LATENCY_OVER_PEER_MS, detail=detail)
    points = [by_name[name].at(1) if name in by_name else None for name in (REST_CLASSIFY, FASTAPI_ORT)]
    means = [point.load.latency.mean_ms if point else None for point in points]
    if means[0] is None or means[1] is None:
        return Goal(label, None, "ms", at_most=LATENCY_OVER_PEER_MS, detail="not measured")
    detail = f"{means[0]:,.1f} against {means[1]:,.1f} ms (one pass)"
    return Goal(label, means[0] - means[1], "ms", at_most=LATENCY_OVER_PEER_MS, detail=detail)


def _against_relay(paths: Sequence[PathFigures]) -> str:
    """Where the gateway's CPU figure comes from, beside the bare relay's in front of the same Triton."""
    relay = next((p for p in paths if p.concurrency == 1 and p.label == RELAY_PATH), None)
    front = relay.cpu_ms.get(peers.FASTAPI_TRITON) if relay else None
    if front is None:
        return "schedstat of the gateway process"
    return f"schedstat of the gateway process; a hand-written FastAPI relay to the same Triton: {front:.2f}"


def _path_goals(paths: Sequence[PathFigures], phone_latency: Scenario | None) -> list[Goal]:
    """Path and gateway CPU and bytes per classification (REST, concurrency 1), and the phone photo's latency."""
    rest = {p.label.split(",")[0]: p for p in paths if p.concurrency == 1 and p.label.endswith("REST")}
    found = []
    for label, limit in PATH_CPU_MS.items():
        path = rest.get(label)
        found.append(
            Goal(
                f"path CPU per classification, {label} (REST, c=1)",
                path.path_cpu_ms if path else None,
                "CPU-ms",
                at_most=limit,
                detail=path.explain() if path else "not measured",
            )
        )
    small = rest.get("ImageNet-size")
    found.append(
        Goal(
            "the gateway's own CPU per ImageNet-size classification (REST, c=1)",
            small.cpu_ms.get(GATEWAY) if small else None,
            "CPU-ms",
            at_most=GATEWAY_CPU_MS,
            detail=_against_relay(paths) if small else "not measured",
        )
    )
    for label, path in rest.items():
        upload, forwarded = path.wire_bytes.get(TO_GATEWAY), path.wire_bytes.get(TO_TRITON)
        found.append(
            Goal(
                f"bytes gateway->Triton per request, the upload's once, {label}",
                forwarded / upload if forwarded is not None and upload else None,
                "x the upload",
                at_most=FORWARDED_BYTES_X,
                detail=f"{forwarded or 0:,.0f} B to Triton, {upload or 0:,.0f} B uploaded (both on the wire)",
            )
        )
    point = phone_latency.at(1) if phone_latency else None
    found.append(
        Goal(
            "phone photo latency, REST, c=1 (mean)",
            point.load.latency.mean_ms if point else None,
            "ms",
            at_most=PHONE_LATENCY_MS,
            detail=rest["phone photo"].explain() if "phone photo" in rest else "not measured",
        )
    )
    return found


def goals(
    scenarios: Sequence[Scenario],
    level: int,
    device: str,
    paths: Sequence[PathFigures] = (),
    ort_best: Point | None = None,
    headline: Sequence[Repeats] = (),
) -> list[Goal]:
    by_name = {scenario.name: scenario for scenario in scenarios}
    if device == "cpu":
        rest = by_name.get(REST_CLASSIFY)
        point = rest.at(level) if rest else None
        served = point.triton if point else None
        queue = served.mean_queue_ms if served else None
        phone_levels = (
            [lvl.load.concurrency for lvl in by_name[REST_CLASSIFY_PHONE].levels]
            if REST_CLASSIFY_PHONE in by_name
            else []
        )
        return [
            *_path_goals(paths, by_name.get(REST_CLASSIFY_PHONE)),
            *_headline_goals(by_name, headline, ort_best, level),
            *(
                _over_best(
                    f"REST / the best peer, phone photos at c={c}",
                    by_name,
                    REST_CLASSIFY_PHONE,
                    [FASTAPI_ORT_PHONE, LITSERVE_PHONE],
                    c,
                    CPU_OVER_PEERS,
                )
                for c in phone_levels
            ),  # fmt: skip
            Goal(
                f"mean executed batch, REST classify at c={level}",
                served.mean_batch_size if served else None,
                "images",
                at_least=CPU_MEAN_BATCH,
                detail=f"queue {queue:,.1f} ms" if queue is not None else "",
            ),
            *_crud_goals(by_name),
        ]
    gateway, where = _best(by_name.get(REST_CLASSIFY), GPU_P99_MS)
    straight, straight_where = _best(by_name.get(GRPC_CLASSIFY))
    naive, naive_where = _best(by_name.get(NAIVE))
    return [
        Goal(f"gateway, p99 < {GPU_P99_MS:g} ms", gateway, "img/s", at_least=GPU_GATEWAY_IPS, detail=where),
        Goal(
            "straight to Triton (classify ensemble)", straight, "img/s", at_least=GPU_TRITON_IPS, detail=straight_where
        ),
        Goal(
            f"gateway (p99 < {GPU_P99_MS:g} ms) / naive baseline (best level)",
            gateway / naive if gateway is not None and naive else None,
            "x",
            at_least=GPU_OVER_NAIVE,
            detail=f"naive {naive:,.0f} img/s at {naive_where}" if naive else naive_where,
        ),
        *_crud_goals(by_name),
    ]
