"""Dollars per million requests, and the cheapest instance kind per route at a p99 latency target.

Prices come from ``prices.toml`` beside this module: a dated table meant to be edited, never fetched.
A route measured on one machine stands for the instance kind that machine resembles (the caller says
which); measurements from several machines are ranked together.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import LevelResult

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class Instance:
    name: str
    usd_per_hour: float
    vcpus: int
    memory_gib: float
    gpus: int
    gpu_model: str | None = None


@dataclass(frozen=True)
class PriceTable:
    """The price list and its provenance, which the report prints beside every cost."""

    as_of: str
    region: str
    currency: str
    note: str
    instances: dict[str, Instance]

    def instance(self, name: str) -> Instance:
        try:
            return self.instances[name]
        except KeyError:
            raise KeyError(f"no price for instance {name!r}; known: {sorted(self.instances)}") from None


def load_prices(path: Path = DEFAULT_PRICES) -> PriceTable:
    with path.open("rb") as file:
        table = tomllib.load(file)
    return PriceTable(
        as_of=str(table["as_of"]),
        region=table["region"],
        currency=table["currency"],
        note=table["note"],
        instances={name: Instance(name=name, **fields) for name, fields in table["instances"].items()},
    )


def usd_per_million(usd_per_hour: float, throughput_rps: float) -> float:
    """Cost of a million requests on an instance kept busy at the measured throughput."""
    if throughput_rps <= 0:
        raise ValueError(f"throughput must be positive to have a cost, got {throughput_rps}")
    return usd_per_hour / (throughput_rps * 3600) * 1e6


@dataclass(frozen=True)
class Measurement:
    """One operating point of a route (a concurrency level) on one instance kind."""

    instance: str
    concurrency: int
    throughput_rps: float
    p99_ms: float | None


@dataclass(frozen=True)
class Option:
    """An instance kind's best operating point under the latency target, priced."""

    instance: str
    usd_per_hour: float
    concurrency: int
    throughput_rps: float
    p99_ms: float
    usd_per_million: float


def measurements(instance: str, levels: Iterable[LevelResult]) -> list[Measurement]:
    """The operating points of one benchmarked scenario, attributed to an instance kind."""
    return [Measurement(instance, lvl.concurrency, lvl.throughput_rps, lvl.latency.p99_ms) for lvl in levels]


def measurements_from_report(document: Mapping[str, Any]) -> dict[str, list[Measurement]]:
    """Every scenario's operating points from another run's ``report.json``, attributed to the instance kind that
    run was priced as, so runs on different machines (this CPU, a GPU host) rank together per route."""
    instance = document["instance"]
    return {
        scenario["name"]: [
            Measurement(instance, level["load"]["concurrency"], level["load"]["throughput_rps"],
                        level["load"]["latency"]["p99_ms"])
            for level in scenario["levels"]
        ]
        for scenario in document["scenarios"]
    }  # fmt: skip


def rank_instances(points: Iterable[Measurement], prices: PriceTable, p99_target_ms: float) -> list[Option]:
    """Each instance kind's cheapest point with p99 within the target, cheapest kind first.

    An empty list means no kind met the target. Points without successful requests have no p99 and
    never qualify.
    """
    best: dict[str, Option] = {}
    for point in points:
        if point.p99_ms is None or point.p99_ms > p99_target_ms or point.throughput_rps <= 0:
            continue
        price = prices.instance(point.instance).usd_per_hour
        option = Option(
            instance=point.instance,
            usd_per_hour=price,
            concurrency=point.concurrency,
            throughput_rps=point.throughput_rps,
            p99_ms=point.p99_ms,
            usd_per_million=usd_per_million(price, point.throughput_rps),
        )
        current = best.get(point.instance)
        if current is None or option.usd_per_million < current.usd_per_million:
            best[point.instance] = option
    return sorted(best.values(), key=lambda option: (option.usd_per_million, option.instance))


def rank_routes(
    routes: Mapping[str, Iterable[Measurement]], prices: PriceTable, p99_target_ms: float
) -> dict[str, list[Option]]:
    """``rank_instances`` per route: the first option of each is the route's answer."""
    return {route: rank_instances(points, prices, p99_target_ms) for route, points in routes.items()}


# GPU instances with 4 and 8 vCPUs: what their CPUs can feed the GPU is the feed-capacity line of the report.
FEED_INSTANCES = ("g6.xlarge", "g5.xlarge", "g6.2xlarge", "g5.2xlarge")


def feed_capacity(vcpus: int, path_cpu_ms: float) -> float:
    """Images per second an instance's CPUs can prepare for its GPU when each image costs ``path_cpu_ms`` of CPU
    outside the network itself (HTTP, header check, decode, preprocessing, transfers): every vCPU busy with
    nothing else, so an upper bound (vCPUs are hyper-threads, and the host has other work)."""
    if path_cpu_ms <= 0:
        raise ValueError(f"path CPU per image must be positive, got {path_cpu_ms}")
    return vcpus * 1000.0 / path_cpu_ms
