"""bench.report renders fixed results into JSON, Markdown and PNG files with the expected contents."""

from __future__ import annotations

import json
import struct

import pytest

from bench.costs import Instance, Measurement, PriceTable, rank_routes
from bench.loadgen import LevelResult, Timing
from bench.machine import machine_info
from bench.report import ReportFiles, write_report
from bench.results import Level, Ratio, Report, Scenario, Section, from_json, to_json
from bench.stats import LatencySummary
from bench.triton_stats import TritonDelta

PRICES = PriceTable(
    as_of="2026-01-01",
    region="us-east-1",
    currency="USD",
    note="Check before quoting.",
    instances={
        "cpu": Instance("cpu", 0.36, vcpus=8, memory_gib=16, gpus=0),
        "gpu": Instance("gpu", 3.6, vcpus=4, memory_gib=16, gpus=1, gpu_model="test"),
    },
)


def _load(concurrency: int, rps: float, p50: float, errors: dict[str, int] | None = None) -> LevelResult:
    requests = int(rps * 10)
    latency = LatencySummary(requests, p50, 2 * p50, 3 * p50, 1.5 * p50, 4 * p50)
    return LevelResult(concurrency, 10.0, requests, errors or {}, rps, latency, requests + 50, False, 0)


def _triton(batch: float, queue_ms: float) -> TritonDelta:
    return TritonDelta("resnet", 1000, 1000, int(1000 / batch), batch, queue_ms, 12.0, {})


GATEWAY = Scenario(
    name="rest",
    title="REST through the gateway",
    levels=[
        Level(_load(1, 100.0, 5.0), _triton(1.0, 0.1)),
        Level(_load(4, 400.0, 8.0), _triton(3.5, 1.0)),
        Level(_load(16, 1234.5, 10.0, {"http_503": 2}), _triton(6.6, 2.0)),
    ],
)
NO_SUCCESS = LevelResult(16, 10.0, 0, {"timeout": 7}, 0.0, LatencySummary(0, None, None, None, None, None), 7, False, 7)
NAIVE = Scenario(
    name="naive",
    title="Naive eager PyTorch",
    levels=[Level(_load(1, 50.0, 20.0)), Level(_load(4, 80.0, 50.0)), Level(NO_SUCCESS)],
)
MACHINE = {"cpu_model": "Test CPU", "cpu_cores": 2, "gpus": [], "versions": {"python": "3.11.7"}}


REPORT = Report(
    title="Benchmark (test)",
    started_at="2026-01-01T00:00:00+00:00",
    machine=MACHINE,
    timing=Timing(warmup_s=2, window_s=10),
    scenarios=[GATEWAY, NAIVE],
    ratios=[
        Ratio("gateway / naive", "rest", "naive", 4, at_least=1.5),
        Ratio("gateway / naive", "rest", "naive", 16, at_least=1.5),
        Ratio("gateway / missing", "rest", "grpc", 16),
    ],
    costs=rank_routes(
        {"classify": [Measurement("gpu", 64, 2000, 45.0), Measurement("cpu", 16, 20, 900.0)], "items": []},
        PRICES,
        p99_target_ms=50,
    ),
    p99_target_ms=50,
    prices=PRICES,
    notes=["Fixed figures for a test."],
    sections=[Section("Bytes", "", ["scenario", "bytes"], [["rest", 65536], ["naive", None], ["grpc", 1.5]])],
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    """Rendered once for the module: the tests read the same files."""
    return write_report(REPORT, tmp_path_factory.mktemp("report"))


def test_results_read_back_from_their_json(files: ReportFiles) -> None:
    """What report.json holds is the whole results model: reading it back gives the same report."""
    document = json.loads(files.json.read_text())
    assert from_json(document) == REPORT
    assert to_json(from_json(document)) == document


def test_json_holds_every_figure(files: ReportFiles) -> None:
    document = json.loads(files.json.read_text())
    rest, naive = document["scenarios"]
    assert rest["name"] == "rest" and [level["load"]["concurrency"] for level in rest["levels"]] == [1, 4, 16]
    top = rest["levels"][2]
    assert top["load"]["throughput_rps"] == 1234.5 and top["load"]["errors"] == {"http_503": 2}
    assert top["load"]["latency"]["p99_ms"] == 30.0
    assert top["triton"]["mean_batch_size"] == 6.6 and top["triton"]["mean_queue_ms"] == 2.0
    assert naive["levels"][2]["load"]["latency"]["p99_ms"] is None and naive["levels"][0]["triton"] is None
    ratios = document["ratios"]
    assert ratios[0]["value"] == pytest.approx(5.0) and ratios[0]["met"] is True
    assert ratios[1]["value"] is None and ratios[1]["met"] is None  # naive measured nothing at 16
    assert ratios[2]["value"] is None
    assert [option["instance"] for option in document["costs"]["classify"]] == ["gpu"]
    assert document["costs"]["classify"][0]["usd_per_million"] == pytest.approx(0.5)
    assert document["costs"]["items"] == []
    assert document["prices"]["as_of"] == "2026-01-01" and document["prices"]["instances"]["gpu"]["gpus"] == 1
    assert document["machine"]["cpu_model"] == "Test CPU"
    assert document["timing"]["window_s"] == 10 and document["p99_target_ms"] == 50


def test_markdown_tables(files: ReportFiles) -> None:
    lines = files.markdown.read_text().splitlines()
    assert lines[0] == "# Benchmark (test)"
    for row in (
        "| concurrency | req/s | p50 ms | p95 ms | p99 ms | errors | mean batch | queue ms |",
        "| 16 | 1,234.5 | 10.0 | 20.0 | 30.0 | http_503 2 | 6.60 | 2.00 |",
        "| 1 | 50.0 | 20.0 | 40.0 | 60.0 | 0 | - | - |",
        "| 16 | 0.0 | - | - | - | timeout 7 | - | - |",
        "| gateway / naive | 4 | 5.00 | >= 1.5 | met |",
        "| gateway / naive | 16 | - | >= 1.5 | - |",
        "| classify | **gpu** (cheapest) | 3.6 | 64 | 2,000.0 | 45.0 | 0.5 |",
        "| items | none met the target | - | - | - | - | - |",
        "| cpu_model | Test CPU |",
        "| gpus | none |",
        "| versions | python 3.11.7 |",
        "![throughput against concurrency](throughput.png)",
        "![p99 latency against concurrency](p99_latency.png)",
        "- Fixed figures for a test.",
    ):
        assert row in lines, row
    assert "## REST through the gateway" in lines and "## Naive eager PyTorch" in lines
    assert any("as of 2026-01-01" in line and "Check before quoting." in line for line in lines)


def test_plots_are_real_pngs(files: ReportFiles) -> None:
    for path in (files.throughput_png, files.p99_png):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])  # IHDR
        assert (width, height) == (800, 500)
        assert len(data) > 15_000  # axes, two lines, legend: far from an empty canvas


def test_machine_info_describes_this_machine() -> None:
    info = machine_info()
    assert isinstance(info["cpu_model"], str) and info["cpu_model"]
    assert isinstance(info["cpu_cores"], int) and info["cpu_cores"] >= 1
    assert isinstance(info["gpus"], list)
    versions = info["versions"]
    assert isinstance(versions, dict) and versions["python"].count(".") == 2 and "numpy" in versions
    json.dumps(info)  # goes into report.json as it is
