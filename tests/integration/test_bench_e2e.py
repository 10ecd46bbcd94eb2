"""``python -m bench --quick`` end to end against the real stack (Triton, gateway, naive baseline), in seconds.

The figures of a quick run mean nothing; what is checked is that every scenario ran against real servers
without errors and that the report holds it all: JSON, Markdown, both plots, goals, ratios and the profile.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite import (
    CRUD,
    CRUD_LOADED,
    EDGES_BY_SIZE,
    FASTAPI_ORT,
    FASTAPI_ORT_PHONE,
    FASTAPI_TRITON,
    GRPC_CLASSIFY,
    GRPC_CLASSIFY_PHONE,
    GRPC_EDGES,
    GRPC_NOBATCH,
    GRPC_RESNET,
    LITSERVE,
    LITSERVE_PHONE,
    NAIVE,
    REST_CACHE_MISSES,
    REST_CACHED,
    REST_CLASSIFY,
    REST_CLASSIFY_PHONE,
    REST_EDGES,
)

ROOT = Path(__file__).resolve().parents[2]
EDGE_SIZES = [EDGES_BY_SIZE + size for size in ("0.3mp", "2mp", "12mp")]
PHONE = [REST_CLASSIFY_PHONE, GRPC_CLASSIFY_PHONE, FASTAPI_ORT_PHONE, LITSERVE_PHONE]
SCENARIOS = [
    REST_CLASSIFY, GRPC_CLASSIFY, GRPC_RESNET, NAIVE, GRPC_NOBATCH, REST_CLASSIFY_PHONE, GRPC_CLASSIFY_PHONE,
    FASTAPI_TRITON, FASTAPI_ORT, FASTAPI_ORT_PHONE, LITSERVE, LITSERVE_PHONE, REST_EDGES, GRPC_EDGES, *EDGE_SIZES,
    CRUD, CRUD_LOADED, REST_CACHED, REST_CACHE_MISSES,
]  # fmt: skip
THROUGH_TRITON = {
    REST_CLASSIFY, GRPC_CLASSIFY, GRPC_RESNET, GRPC_NOBATCH, REST_CLASSIFY_PHONE, GRPC_CLASSIFY_PHONE, FASTAPI_TRITON,
    REST_EDGES, GRPC_EDGES, *EDGE_SIZES, CRUD_LOADED, REST_CACHED, REST_CACHE_MISSES,
}  # fmt: skip


def _bench(repository: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench", "--quick", "--repository", str(repository), "--model", "resnet18"]
    completed = subprocess.run(
        [*command, "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    for name in ("report.json", "report.md", "throughput.png", "p99_latency.png"):
        assert (out / name).is_file(), name
    assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return completed


def test_quick_run_measures_every_scenario(test_repository: Path, tmp_path: Path) -> None:
    completed = _bench(test_repository, tmp_path)
    document = json.loads((tmp_path / "report.json").read_text())

    scenarios = {scenario["name"]: scenario for scenario in document["scenarios"]}
    assert list(scenarios) == SCENARIOS
    for name, scenario in scenarios.items():
        loads = [level["load"] for level in scenario["levels"]]
        if name in (REST_EDGES, GRPC_EDGES, CRUD, CRUD_LOADED):
            expected = [4]  # quick mode's one level for edges and CRUD
        elif name in PHONE or name in EDGE_SIZES[:2] or name in (REST_CACHED, REST_CACHE_MISSES):
            expected = [1]
        else:
            expected = [1, 4]
        assert [load["concurrency"] for load in loads] == expected, name
        assert sum(load["issued"] for load in loads) > 0, name
        assert sum(load["requests"] for load in loads) > 0 or name in EDGE_SIZES, name  # 12 MP: maybe all 504s
        # A 12 MP edge map may outlive quick mode's 5 s drain (the gateway's deadline is 10 s): abandoned, not lost.
        assert all(load["abandoned"] == 0 for load in loads) or name == EDGE_SIZES[-1], name
        if name in EDGE_SIZES:  # large edge maps may run past the deadline: counted as 504, nothing else
            assert all(set(load["errors"]) <= {"http_504"} for load in loads), (name, loads)
        elif name != CRUD_LOADED:  # unloaded: nothing may fail
            assert all(load["errors"] == {} for load in loads), (name, loads)
        observed = [level["triton"] for level in scenario["levels"]]
        assert all(observed) if name in THROUGH_TRITON else not any(observed), name
    # Triton saw the gateway's classify requests on the ResNet and counted their batches.
    top = scenarios[REST_CLASSIFY]["levels"][1]["triton"]
    assert top["requests"] > 0 and top["mean_batch_size"] >= 1

    ratios = {(ratio["numerator"], ratio["denominator"], ratio["concurrency"]): ratio for ratio in document["ratios"]}
    assert ratios[(REST_CLASSIFY, GRPC_CLASSIFY, 4)]["at_least"] is None  # the goals' interleaved rounds decide it
    assert ratios[(REST_CLASSIFY, NAIVE, 4)]["at_least"] == 1.5
    assert {(GRPC_RESNET, GRPC_NOBATCH, 1), (CRUD_LOADED, CRUD, 4), (REST_CLASSIFY, FASTAPI_TRITON, 4)} <= set(ratios)
    found = {goal["label"]: goal for goal in document["goals"]}
    for label in (
        "path CPU per classification, ImageNet-size (REST, c=1)",
        "path CPU per classification, phone photo (REST, c=1)",
        "bytes gateway->Triton per request, the upload's once, ImageNet-size",
        "bytes gateway->Triton per request, the upload's once, phone photo", "phone photo latency, REST, c=1 (mean)",
        "the gateway's own CPU per ImageNet-size classification (REST, c=1)", "REST / the best peer at c=1",
        "REST / the best peer at c=4", "REST / gRPC straight to Triton at c=4",
        "REST / ONNX Runtime alone at its best batch, c=4", "c=1 mean latency over the plain FastAPI + ORT app",
        "REST / the best peer, phone photos at c=1",
    ):  # fmt: skip
        assert found[label]["met"] in (True, False), (label, found[label])  # measured, decided either way
    # The gateway forwards the upload's bytes, not pixels: what Triton received is about the upload's size.
    assert found["bytes gateway->Triton per request, the upload's once, phone photo"]["value"] < 1.05
    assert all(goal["met"] in (True, False) for goal in document["goals"][-2:])  # CRUD: decided either way
    assert set(document["costs"]) == set(SCENARIOS) - {CRUD_LOADED}

    alone, step, paths, feed, cache, profile, edges, cpu = document["sections"]
    cached = {row[0]: row for row in cache["rows"]}
    ratio = cache["header"].index("network hit ratio")
    assert cached[REST_CACHED][ratio] > 0.5 and cached[REST_CACHE_MISSES][ratio] == 0  # repeats hit, new photos miss
    assert all(row[ratio] is None for row in cache["rows"] if row[0] == REST_CLASSIFY)  # the main stack: no cache
    assert {row[0] for row in alone["rows"]} == {"threads", "slices", "defaults"} and alone["findings"]
    assert all(row[2] > 0 and row[3] > 0 for row in alone["rows"])  # images/s, CPU-ms per image
    runner = {(row[0], row[1]): row for row in step["rows"]}
    assert runner[(GRPC_RESNET, 4)][3] > 0 and runner[(GRPC_RESNET, 4)][6] > 0  # the stub's and alone's CPU per image
    assert "interleaved rounds" in found["REST / the best peer at c=4"]["detail"]
    assert "interleaved rounds" in found["REST / ONNX Runtime alone at its best batch, c=4"]["detail"]
    rows = {(row[0], row[1]): row for row in paths["rows"]}
    phone = rows[("phone photo, REST", 1)]
    header = paths["header"]
    upload, to_gateway, to_triton = (
        phone[header.index(name)] for name in ("upload bytes", "bytes client->gateway", "bytes ->Triton")
    )
    assert 2e6 < upload < 4e6 and upload < to_gateway < upload + 2000 and upload < to_triton < upload + 2000
    assert rows[("phone photo, gRPC", 1)][header.index("bytes ->Triton")] == pytest.approx(upload, rel=0.01)
    # The relay's own process beside the gateway's, and the gateway's CPU goal quotes it.
    relay = rows[("ImageNet-size, hand-written FastAPI relay", 1)]
    assert relay[header.index("fastapi-triton")] > 0 and relay[header.index("gateway")] is None
    gateway_cpu = found["the gateway's own CPU per ImageNet-size classification (REST, c=1)"]["detail"]
    assert "hand-written FastAPI relay to the same Triton: " in gateway_cpu
    assert feed["rows"] and {row[1] for row in feed["rows"]} == {"g6.xlarge", "g5.xlarge", "g6.2xlarge", "g5.2xlarge"}
    assert profile["title"].startswith("Where the time goes") and profile["findings"]
    decode = next(row for row in profile["rows"] if row[0].startswith("Triton's reduced-scale decode"))
    assert 0 < decode[1] < 100  # milliseconds per ImageNet-size JPEG
    assert [(row[0], row[2]) for row in edges["rows"]] == [("0.3mp", 1), ("2mp", 1), ("12mp", 1), ("12mp", 4)]
    assert {row[0] for row in cpu["rows"]} == set(SCENARIOS)
    assert {"fastapi-ort", "litserve", "fastapi-triton", "stub resnet18", "stub decode_reduced_then_preprocess"} <= set(
        cpu["header"]
    )
    fused = next(row for row in profile["rows"] if row[0] == "of which: decode_reduced_then_preprocess queue + compute")
    assert fused[1] > 0  # the served steps' own figures

    markdown = (tmp_path / "report.md").read_text()
    for scenario in scenarios.values():
        assert f"## {scenario['title']}" in markdown
    assert "## Goals" in markdown and "## Where the time goes: the classify route" in markdown
    assert all(name in completed.stdout for name in SCENARIOS) and "goals:" in completed.stdout


def test_quick_sweep_ranks_its_points(test_repository: Path, tmp_path: Path) -> None:
    _bench(
        test_repository, tmp_path, "--sweep", "--sweep-delays-us", "0,5000", "--sweep-preferred", "none",
        "--sweep-instances", "1",
    )  # fmt: skip
    document = json.loads((tmp_path / "report.json").read_text())
    assert [scenario["name"] for scenario in document["scenarios"]] == [
        "delay0_preferrednone_instances1", "delay5000_preferrednone_instances1",
    ]  # fmt: skip
    (ranking,) = document["sections"]
    assert sorted(row[0] for row in ranking["rows"]) == [0, 5000]
    throughputs = [row[3] for row in ranking["rows"]]
    assert throughputs == sorted(throughputs, reverse=True) and throughputs[0] > 0
    assert ranking["findings"]
