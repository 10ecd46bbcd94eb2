"""deploy/grafana/dashboard.json read as Grafana and Prometheus would: its panels, its PromQL queries parsed by a
real PromQL parser, and the metric selectors in them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboard.json"
# Grafana's macros, replaced by Grafana before a query reaches Prometheus.
MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def parse(query: str) -> Any:
    for macro, value in MACROS.items():
        query = query.replace(macro, value)
    return promql_parser.parse(query)


def walk(node: Any) -> Iterator[Any]:
    """Every node of a parsed query, depth first."""
    yield node
    for attribute in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attribute, None)
        if child is not None:
            yield from walk(child)
    for argument in getattr(node, "args", None) or ():
        yield from walk(argument)


def selectors(node: Any) -> list[Any]:
    return [n for n in walk(node) if type(n).__name__ == "VectorSelector"]
