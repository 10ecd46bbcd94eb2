"""bench.goals: the issue's targets and the side-by-side ratios, read off fixed scenarios."""

from __future__ import annotations

import pytest

from bench.goals import goals, ratios
from bench.headline import GRPC, ORT_ALONE, OURS, Repeats
from bench.loadgen import LevelResult
from bench.ort_alone import Point
from bench.profile import RELAY_PATH, PathFigures
from bench.results import Level, Scenario
from bench.stats import LatencySummary
from bench.suite import (
    CRUD,
    CRUD_LOADED,
    FASTAPI_ORT,
    FASTAPI_ORT_PHONE,
    FASTAPI_TRITON,
    GRPC_CLASSIFY,
    GRPC_NOBATCH,
    GRPC_RESNET,
    LITSERVE,
    NAIVE,
    REST_CLASSIFY,
    REST_CLASSIFY_PHONE,
    TO_GATEWAY,
    TO_TRITON,
)
from bench.triton_stats import TritonDelta


def _level(concurrency: int, rps: float, p99: float | None, batch: float | None = None) -> Level:
    latency = LatencySummary(10, p99 and p99 / 2, p99, p99, p99, p99)
    triton = TritonDelta("resnet", 10, 10, 5, batch, 3.0, 9.0, {}) if batch else None
    return Level(LevelResult(concurrency, 10.0, int(rps * 10), {}, rps, latency, 0, False, 0), triton)


def _scenario(name: str, *levels: Level) -> Scenario:
    return Scenario(name, name, list(levels))


SCENARIOS = [
    _scenario(REST_CLASSIFY, _level(1, 10, 60, 1.0), _level(16, 18, 900, 4.5), _level(64, 19, 3400, 9.0)),
    _scenario(GRPC_CLASSIFY, _level(1, 11, 55, 1.0), _level(16, 20, 850, 4.2), _level(64, 20, 3300, 9.1)),
    _scenario(GRPC_RESNET, _level(1, 20, 50, 1.0), _level(16, 25, 700, 6.0)),
    _scenario(GRPC_NOBATCH, _level(1, 20, 50, 1.0), _level(16, 20, 800, 1.0)),
    _scenario(NAIVE, _level(1, 8, 130), _level(16, 9, 1800), _level(64, 9, 7000)),
    _scenario(CRUD, _level(1, 900, 2.0), _level(16, 2400, 9.0), _level(64, 2600, 30.0)),
    _scenario(CRUD_LOADED, _level(1, 500, 8.0), _level(16, 1200, 22.0), _level(64, 1300, 60.0)),
]


def test_ratios_pair_scenarios_present_in_the_run() -> None:
    chosen = ratios(SCENARIOS, 16, "cpu")
    keys = {(r.numerator, r.denominator, r.concurrency): r.at_least for r in chosen}
    assert keys[(REST_CLASSIFY, NAIVE, 16)] == 1.5
    assert keys[(REST_CLASSIFY, GRPC_CLASSIFY, 16)] is None  # a goal of the goals table (interleaved rounds) decides
    assert {(GRPC_RESNET, GRPC_NOBATCH, 1), (GRPC_RESNET, GRPC_NOBATCH, 16)} <= set(keys)
    assert {(CRUD_LOADED, CRUD, c) for c in (1, 16, 64)} <= set(keys)
    assert not any("edges" in r.numerator or "fp16" in r.numerator for r in chosen)  # not measured, not listed
    assert all(r.at_least is None for r in ratios(SCENARIOS, 16, "cuda"))  # the GPU goals are absolute


def test_cpu_goals() -> None:
    batch, crud_alone, crud_loaded = goals(SCENARIOS, 16, "cpu")[-3:]
    assert (batch.value, batch.met) == (4.5, True)
    # The busiest idle level within p99 10 ms is c=16 (c=64 is faster but over the budget) ...
    assert (crud_alone.value, crud_alone.met, crud_alone.detail) == (2400, True, "c=16, p99 9.0 ms")
    # ... and the loaded p99 is judged at that same level.
    assert (crud_loaded.value, crud_loaded.met) == (22.0, True) and crud_loaded.detail.startswith("c=16")


def test_a_scenario_that_never_met_the_latency_bound_misses_its_goal() -> None:
    slow = [_scenario(CRUD, _level(1, 900, 12.0), _level(16, 1500, 40.0)), _scenario(CRUD_LOADED, _level(1, 500, 30.0))]
    _, crud_alone, crud_loaded = goals(slow, 16, "cpu")[-3:]
    assert (crud_alone.value, crud_alone.met, crud_alone.detail) == (0.0, False, "no level had p99 within 10 ms")
    assert (crud_loaded.value, crud_loaded.met) == (None, None)  # judged at the idle run's busiest level: c=16


def test_gpu_goals_take_the_best_level_within_the_latency_budget() -> None:
    on_gpu = [
        _scenario(REST_CLASSIFY, _level(1, 500, 5), _level(64, 7000, 30), _level(256, 9000, 80)),
        _scenario(GRPC_CLASSIFY, _level(64, 11000, 20), _level(256, 13000, 70)),
        _scenario(NAIVE, _level(1, 300, 4), _level(16, 700, 40)),
    ]
    gateway, triton, over_naive, crud_alone, _ = goals(on_gpu, 16, "cuda")
    assert (gateway.value, gateway.met, gateway.detail) == (7000, False, "c=64, p99 30.0 ms")  # c=256 is over 50 ms
    assert (triton.value, triton.met) == (13000, True)  # straight to Triton: the best level, whatever its p99
    assert (over_naive.value, over_naive.met) == (pytest.approx(10.0), True)
    assert crud_alone.value is None and crud_alone.met is None  # not measured: no verdict


def _path(label: str, gateway: float, triton: float, stubs: float, resnet: float, forwarded: float) -> PathFigures:
    """Per process: the gateway, Triton, the decode-and-preprocess stubs and the network's stub."""
    return PathFigures(
        REST_CLASSIFY, label, 1,
        {"gateway": gateway, "triton": triton, "stub decode_reduced": stubs, "stub resnet50": resnet}, resnet,
        {TO_GATEWAY: 61_000.0, TO_TRITON: forwarded}, 60_800.0, 80.0,
    )  # fmt: skip


def test_path_goals_leave_the_networks_process_out_and_compare_bytes_on_the_wire() -> None:
    paths = [
        _path("ImageNet-size, REST", 1.5, 0.5, 2.0, 60.0, 61_040.0),  # 4 CPU-ms outside; gRPC framing +40 B
        _path("phone photo, REST", 20.0, 5.0, 70.0, 60.0, 3_000_000.0),  # 95 CPU-ms; pixels forwarded
    ]
    phone = _scenario(REST_CLASSIFY_PHONE, _level(1, 5, 190), _level(4, 6, 700))
    peers = [
        _scenario(FASTAPI_ORT, _level(1, 12, 60), _level(16, 15, 900), _level(64, 20, 3000)),
        _scenario(LITSERVE, _level(16, 18, 900)),
        _scenario(FASTAPI_ORT_PHONE, _level(1, 4, 250), _level(4, 6, 700)),
    ]
    found = {goal.label: goal for goal in goals([*SCENARIOS, phone, *peers], 16, "cpu", paths)}
    small, large = (
        found["path CPU per classification, ImageNet-size (REST, c=1)"],
        found["path CPU per classification, phone photo (REST, c=1)"],
    )
    assert (small.value, small.met) == (pytest.approx(4.0), True)
    assert (large.value, large.met) == (pytest.approx(95.0), False)
    assert "stub decode_reduced 70.0" in large.detail and "network's is the 60.0" in large.detail  # the miss's profile
    gateway = found["the gateway's own CPU per ImageNet-size classification (REST, c=1)"]
    assert (gateway.value, gateway.met) == (1.5, True)
    assert gateway.detail == "schedstat of the gateway process"  # no relay measured
    relay = PathFigures(FASTAPI_TRITON, RELAY_PATH, 1, {"fastapi-triton": 1.25, "triton": 0.5}, None, {}, None, None)
    found = {goal.label: goal for goal in goals([*SCENARIOS, phone, *peers], 16, "cpu", [*paths, relay])}
    gateway = found["the gateway's own CPU per ImageNet-size classification (REST, c=1)"]
    assert gateway.detail.endswith("a hand-written FastAPI relay to the same Triton: 1.25")
    forwarded = found["bytes gateway->Triton per request, the upload's once, ImageNet-size"]
    assert (forwarded.value, forwarded.met) == (pytest.approx(61_040 / 61_000), True)
    assert found["bytes gateway->Triton per request, the upload's once, phone photo"].met is False
    latency = found["phone photo latency, REST, c=1 (mean)"]
    assert (latency.value, latency.met) == (190, False)
    # One pass each (no interleaved rounds): REST 18 req/s at c=16 against the best of 15 and 18; at c=64 19
    # against 20; phone 5 against 4 at c=1; at c=1 10 against 12.
    assert (
        found["REST / the best peer at c=16"].value == pytest.approx(1.0) and found["REST / the best peer at c=16"].met
    )
    assert found["REST / the best peer at c=64"].met is False
    assert found["REST / the best peer at c=1"].value == pytest.approx(10 / 12)
    assert "one pass" in found["REST / the best peer at c=16"].detail
    assert found["REST / the best peer, phone photos at c=1"].value == pytest.approx(1.25)
    assert found["REST / the best peer, phone photos at c=4"].value == pytest.approx(1.0)
    assert found["REST / gRPC straight to Triton at c=16"].value == pytest.approx(0.9)
    assert found["REST / gRPC straight to Triton at c=16"].met is False  # below 0.95
    assert found["REST / ONNX Runtime alone at its best batch, c=16"].value is None  # not measured: no verdict
    c1 = found["c=1 mean latency over the plain FastAPI + ORT app"]
    assert c1.value == pytest.approx(0.0) and c1.met  # both 60 ms in these figures


def test_headline_goals_take_the_median_of_interleaved_rounds_and_report_the_spread() -> None:
    rounds = [
        Repeats(1, {OURS: [20, 21, 22], "fastapi-ort": [21, 20, 20], "litserve": [19, 19, 23]},
                {OURS: [50, 48, 47], "fastapi-ort": [46, 47, 45], "litserve": [52, 51, 44]}),
        Repeats(16, {OURS: [24, 25, 23], "fastapi-ort": [22, 22, 22], "litserve": [20, 26, 21], GRPC: [25, 25, 24],
                     ORT_ALONE: [25, 24, 26]}),
    ]  # fmt: skip
    alone = Point("slices", 8, 250, 10.0, 40.0)  # 25 images/s
    found = {goal.label: goal for goal in goals(SCENARIOS, 16, "cpu", (), alone, rounds)}
    at_one = found["REST / the best peer at c=1"]
    # Each round against its own best peer: 20/21, 21/20, 22/23: median 22/23, spread 0.95-1.05.
    assert at_one.value == pytest.approx(22 / 23) and not at_one.met and "spread 0.95-1.05" in at_one.detail
    at_sixteen = found["REST / the best peer at c=16"]  # rounds 24/22, 25/26, 23/22
    assert at_sixteen.value == pytest.approx(23 / 22) and "3 interleaved rounds" in at_sixteen.detail
    assert found["REST / gRPC straight to Triton at c=16"].value == pytest.approx(24 / 25)
    alone_goal = found["REST / ONNX Runtime alone at its best batch, c=16"]  # rounds 24/25, 25/24, 23/26
    assert alone_goal.value == pytest.approx(24 / 25) and "interleaved rounds" in alone_goal.detail
    latency = found["c=1 mean latency over the plain FastAPI + ORT app"]
    assert latency.value == pytest.approx(2.0) and latency.met  # +4, +1, +2 ms: median 2
    assert "REST / the best peer at c=64" not in found  # no rounds there: the run chose its headline levels
