"""deploy/grafana/dashboard.json on its own: every PromQL query parses (a real PromQL parser), the main figures are
there, and every panel reads the chosen Prometheus. That every series it names is exposed: tests/integration."""

from __future__ import annotations

import json

from tests.support.dashboard import DASHBOARD, panels, parse, queries, selectors


def test_every_query_parses_as_promql() -> None:
    assert queries()
    for query in queries():
        assert selectors(parse(query)), f"no metric in {query}"


def test_the_main_figures_are_there() -> None:
    """Throughput, p99, errors by code, Triton's batch size and queue time (issue 16)."""
    named = {selector.name for query in queries() for selector in selectors(parse(query))}
    assert {
        "gateway_requests_total",
        "gateway_request_seconds_bucket",
        "gateway_triton_call_seconds_bucket",
        "gateway_inflight_requests",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_queue_duration_us",
        "nv_inference_request_success",
        "nv_inference_request_failure",
    } <= named
    assert any("histogram_quantile(0.99" in query for query in queries())
    assert any("by (status)" in query for query in queries())


def test_every_panel_reads_the_chosen_prometheus() -> None:
    """One datasource variable, so the JSON imports into any Grafana and the compose stack provisions it."""
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    for panel in panels():
        assert panel["datasource"] == reference
        assert all(target["datasource"] == reference for target in panel["targets"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
