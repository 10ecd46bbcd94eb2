"""What an operator's scraper sees: process metrics, budgets read at scrape time, Triton's answers by version,
Triton's own metrics through the gateway and the models Triton serves (the request id handed to Triton:
tests/unit/test_request_id_inprocess.py)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import httpx
import numpy as np

from launcher.triton import TritonServer
from tests.support.metrics import metric_samples
from tests.support.stack import TEST_MODEL, Gateway


def test_metrics_models_and_triton_passthrough(
    gateway_factory: Callable[..., Gateway], triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    gateway = gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_TRITON_METRICS_URL=triton.metrics_url)
    body = cv2.imencode(".jpg", photos["coffee"])[1].tobytes()
    answer = httpx.post(f"{gateway.url}/v1/classify", content=body, headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200

    samples = metric_samples(httpx.get(f"{gateway.url}/metrics").text)
    assert samples[("process_cpu_seconds_total", ())] > 0
    assert samples[("process_resident_memory_bytes", ())] > 0
    assert samples[("gateway_budget_capacity", (("budget", "inference_slots"),))] == 256
    assert samples[("gateway_budget_capacity", (("budget", "pixels"),))] == 400_000_000
    assert samples[("gateway_budget_used", (("budget", "inference_slots"),))] == 0  # nothing in flight now
    assert samples[("gateway_triton_answers_total", (("model", "classify"), ("version", "1")))] == 1

    triton_metrics = httpx.get(f"{gateway.url}/metrics/triton")
    assert triton_metrics.status_code == 200
    [success] = [line for line in triton_metrics.text.splitlines()
                 if line.startswith('nv_inference_request_success{model="classify",version="1"}')]  # fmt: skip
    assert float(success.rsplit(" ", 1)[1]) >= 1

    models = {m["name"]: m for m in httpx.get(f"{gateway.url}/v1/models").json()["models"]}
    assert models[TEST_MODEL]["ready"] is True
    assert [v["version"] for v in models[TEST_MODEL]["versions"]] == ["1"]
    missing = httpx.post(f"{gateway.url}/v1/admin/models/no_such_model/load")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "model_not_found")


def test_triton_metrics_route_absent_without_its_url(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/metrics/triton").status_code == 404
