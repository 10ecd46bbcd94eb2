"""deploy/grafana/dashboard.json asks only for series that exist: every metric and label it names is in what a real
gateway and a real Triton expose after serving (its queries on their own: tests/unit/test_dashboard_queries.py)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from launcher.triton import TritonServer
from tests.support.dashboard import parse, queries, selectors, walk
from tests.support.stack import Gateway, running_triton

# The text exposition format: `name{label="value",...} value [timestamp]`; comments start with '#'.
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+\S+")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def scrape(url: str) -> dict[str, set[str]]:
    """Series name -> the label names it carries, from a live /metrics, named as Prometheus stores them.

    Read line by line rather than with prometheus_client's parser: that one renames counters to ``*_total``
    (Triton's ``nv_inference_count`` would come out as ``nv_inference_count_total``), Prometheus does not."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    series: dict[str, set[str]] = {}
    for line in response.text.splitlines():
        sample = SAMPLE.match(line)
        if sample:
            series.setdefault(sample["name"], set()).update(LABEL.findall(sample["labels"] or ""))
    return series


@pytest.fixture(scope="module")
def cached_series(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Triton's series with its response cache on (off in the session's Triton): after one classification."""
    with running_triton(test_repository, tmp_path_factory, response_cache_bytes=1 << 20) as server:
        data = np.frombuffer(cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes(), np.uint8)[None]
        image = grpcclient.InferInput("IMAGE", list(data.shape), "UINT8")
        image.set_data_from_numpy(data)
        grpcclient.InferenceServerClient(server.grpc_url).infer("classify", [image])
        return scrape(server.metrics_url)


@pytest.fixture(scope="module")
def exposed(
    gateway: Gateway, triton: TritonServer, photos: dict[str, np.ndarray], cached_series: dict[str, set[str]]
) -> dict[str, set[str]]:
    """What one scraper sees after one classification and one refused request: both processes' series (and the
    response cache's, from a Triton that has it on)."""
    jpeg = cv2.imencode(".jpg", photos["coffee"])[1].tobytes()
    ok = httpx.post(f"{gateway.url}/v1/classify", content=jpeg, headers={"content-type": "image/jpeg"}, timeout=30)
    assert ok.status_code == 200, ok.text
    refused = httpx.post(f"{gateway.url}/v1/classify", content=b"not an image", headers={"content-type": "image/jpeg"})
    assert 400 <= refused.status_code < 500
    gateway_series, triton_series = scrape(f"{gateway.url}/metrics"), scrape(triton.metrics_url)
    assert not gateway_series.keys() & triton_series.keys()
    return gateway_series | triton_series | cached_series


def test_every_metric_the_dashboard_names_is_exposed(exposed: dict[str, set[str]]) -> None:
    named = {selector.name for query in queries() for selector in selectors(parse(query))}
    assert not named - exposed.keys(), f"not exposed by the gateway or Triton: {sorted(named - exposed.keys())}"


def test_every_label_the_dashboard_filters_or_groups_by_exists(exposed: dict[str, set[str]]) -> None:
    for query in queries():
        tree = parse(query)
        for selector in selectors(tree):
            filtered = {matcher.name for matcher in selector.matchers.matchers}
            assert filtered <= exposed[selector.name], (
                f"{selector.name} has no label {filtered - exposed[selector.name]}"
            )
        for node in walk(tree):
            if type(node).__name__ == "AggregateExpr" and node.modifier is not None:
                available = set().union(*(exposed[s.name] for s in selectors(node.expr)))
                missing = set(node.modifier.labels) - available
                assert not missing, f"{query}: grouped by {missing}, which its series do not carry"
