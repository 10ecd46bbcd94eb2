"""bench.costs on fixed prices and measurements."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.costs import (
    FEED_INSTANCES,
    Instance,
    Measurement,
    PriceTable,
    feed_capacity,
    load_prices,
    measurements,
    measurements_from_report,
    rank_instances,
    rank_routes,
    usd_per_million,
)
from bench.loadgen import LevelResult
from bench.stats import LatencySummary

PRICES = PriceTable(
    as_of="2026-01-01",
    region="us-east-1",
    currency="USD",
    note="fixed for tests",
    instances={
        "cpu": Instance("cpu", 0.36, vcpus=8, memory_gib=16, gpus=0),
        "gpu": Instance("gpu", 3.6, vcpus=4, memory_gib=16, gpus=1, gpu_model="test"),
    },
)


def test_usd_per_million() -> None:
    assert usd_per_million(3.6, 1000) == pytest.approx(1.0)  # $3.60/h at 1,000 req/s: 3.6M requests an hour
    assert usd_per_million(0.526, 100) == pytest.approx(0.526 / 360_000 * 1e6)
    with pytest.raises(ValueError):
        usd_per_million(1.0, 0)


def test_cheapest_instance_meets_the_latency_target() -> None:
    points = [
        Measurement("cpu", 1, 50, 30.0),  # $2.00 per million
        Measurement("cpu", 16, 90, 180.0),  # $1.11 per million, but p99 over the target
        Measurement("gpu", 1, 400, 9.0),  # $2.50 per million
        Measurement("gpu", 64, 2000, 45.0),  # $0.50 per million
        Measurement("gpu", 256, 2400, 210.0),  # over the target
    ]
    options = rank_instances(points, PRICES, p99_target_ms=50)
    assert [(option.instance, option.concurrency) for option in options] == [("gpu", 64), ("cpu", 1)]
    assert options[0].usd_per_million == pytest.approx(0.5)
    assert options[1].usd_per_million == pytest.approx(2.0)
    assert options[0].usd_per_hour == 3.6 and options[0].p99_ms == 45.0


def test_a_tighter_target_changes_the_answer() -> None:
    points = [Measurement("cpu", 4, 150, 8.0), Measurement("gpu", 64, 2000, 45.0)]  # $0.67, $0.50 /M
    assert rank_instances(points, PRICES, p99_target_ms=10)[0].instance == "cpu"
    assert rank_instances(points, PRICES, p99_target_ms=50)[0].instance == "gpu"
    assert rank_instances(points, PRICES, p99_target_ms=5) == []


def test_levels_without_successes_never_qualify() -> None:
    assert rank_instances([Measurement("cpu", 1, 0.0, None)], PRICES, p99_target_ms=1e9) == []


def test_routes_ranked_independently_and_unknown_instances_named() -> None:
    routes = {
        "classify": [Measurement("gpu", 64, 2000, 45.0), Measurement("cpu", 16, 20, 900.0)],
        "items": [Measurement("cpu", 16, 3000, 6.0), Measurement("gpu", 16, 3100, 6.0)],
    }
    ranked = rank_routes(routes, PRICES, p99_target_ms=50)
    assert [option.instance for option in ranked["classify"]] == ["gpu"]
    assert [option.instance for option in ranked["items"]] == ["cpu", "gpu"]
    with pytest.raises(KeyError, match="no price for instance 'tpu'"):
        rank_instances([Measurement("tpu", 1, 10, 1.0)], PRICES, 50)


def test_measurements_from_level_results() -> None:
    level = LevelResult(16, 10.0, 1000, {}, 100.0, LatencySummary(1000, 5, 8, 9.5, 5.5, 12), 1100, False, 0)
    assert measurements("c7i.xlarge", [level]) == [Measurement("c7i.xlarge", 16, 100.0, 9.5)]


def test_another_runs_report_ranks_beside_this_one() -> None:
    """A GPU host's report.json, read back: its points join this run's per route, under its own instance kind."""
    load = {"concurrency": 64, "throughput_rps": 2000.0, "latency": {"p99_ms": 45.0}}
    document = {"instance": "gpu", "scenarios": [{"name": "classify", "levels": [{"load": load, "triton": None}]}]}
    points = measurements_from_report(document)
    assert points == {"classify": [Measurement("gpu", 64, 2000.0, 45.0)]}
    options = rank_instances([Measurement("cpu", 16, 20.0, 40.0), *points["classify"]], PRICES, p99_target_ms=50)
    assert [option.instance for option in options] == ["gpu", "cpu"]  # $0.50 against $5.00 per million


def test_shipped_price_table_is_dated_and_complete() -> None:
    prices = load_prices()
    assert prices.region == "us-east-1" and prices.currency == "USD"
    assert prices.as_of[:2] == "20" and "check" in prices.note.lower()
    wanted = {"g4dn.xlarge", "g5.xlarge", "g6.xlarge", "p5.4xlarge", "c7i.xlarge", "c7i.2xlarge"}
    assert wanted <= set(prices.instances)
    for instance in prices.instances.values():
        assert instance.usd_per_hour > 0 and instance.vcpus > 0
        assert (instance.gpus > 0) == (instance.gpu_model is not None)
    assert prices.instance("c7i.2xlarge").vcpus == 2 * prices.instance("c7i.xlarge").vcpus


def test_an_edited_price_table_is_read(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        'as_of = "2030-02-03"\nregion = "eu-west-1"\ncurrency = "USD"\nnote = "mine"\n'
        '[instances."x.large"]\nusd_per_hour = 1.5\nvcpus = 2\nmemory_gib = 4\ngpus = 0\n'
    )
    prices = load_prices(path)
    assert prices.as_of == "2030-02-03" and prices.region == "eu-west-1"
    assert prices.instance("x.large") == Instance("x.large", 1.5, 2, 4, 0, None)


def test_feed_capacity_is_what_the_vcpus_can_prepare() -> None:
    """The issue's figures: 13.5 CPU-ms per small image and 270 per phone photo on 4 vCPUs."""
    assert feed_capacity(4, 13.5) == pytest.approx(296.3, abs=0.1)
    assert feed_capacity(4, 270.0) == pytest.approx(14.8, abs=0.1)
    assert feed_capacity(8, 5.0) == 1600.0
    with pytest.raises(ValueError, match="positive"):
        feed_capacity(4, 0.0)


def test_the_feed_instances_are_priced_with_their_vcpus() -> None:
    prices = load_prices()
    assert [prices.instance(name).vcpus for name in FEED_INSTANCES] == [4, 4, 8, 8]
    assert all(prices.instance(name).gpus == 1 for name in FEED_INSTANCES)
