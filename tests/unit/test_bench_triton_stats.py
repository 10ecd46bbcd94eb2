"""bench.triton_stats on fixed statistics, shaped as tritonclient.grpc returns them with as_json=True."""

from __future__ import annotations

import asyncio
import json

import pytest
from google.protobuf import json_format
from tritonclient.grpc import service_pb2

from bench.triton_stats import TritonWindow, triton_delta

# Before, as strings: 100 requests in 40 executions (20 of batch 1, 20 of batch 4). Zero-valued fields
# (fail, cache_hit, cache_miss) are absent, as in protobuf JSON.
BEFORE = {
    "model_stats": [
        {
            "name": "resnet",
            "version": "1",
            "inference_count": "100",
            "execution_count": "40",
            "inference_stats": {
                "success": {"count": "100", "ns": "900000000"},
                "queue": {"count": "100", "ns": "200000000"},
                "compute_input": {"count": "100", "ns": "10000000"},
                "compute_infer": {"count": "100", "ns": "500000000"},
                "compute_output": {"count": "100", "ns": "5000000"},
            },
            "batch_stats": [
                {"batch_size": "1", "compute_infer": {"count": "20", "ns": "1"}},
                {"batch_size": "4", "compute_infer": {"count": "20", "ns": "1"}},
            ],
        }
    ]
}

# After, as integers: 20 more executions of batch 1 and 80 of batch 8 (660 requests, mean batch 6.6);
# queue +1,320 ms, compute +66 + 1,980 + 66 ms over those 660 requests.
AFTER = {
    "model_stats": [
        {
            "name": "resnet",
            "version": "1",
            "inference_count": 760,
            "execution_count": 140,
            "inference_stats": {
                "success": {"count": 760, "ns": 4_332_000_000},
                "queue": {"count": 760, "ns": 1_520_000_000},
                "compute_input": {"count": 760, "ns": 76_000_000},
                "compute_infer": {"count": 760, "ns": 2_480_000_000},
                "compute_output": {"count": 760, "ns": 71_000_000},
            },
            "batch_stats": [
                {"batch_size": 1, "compute_infer": {"count": 40}},
                {"batch_size": 4, "compute_infer": {"count": 20}},
                {"batch_size": 8, "compute_infer": {"count": 80}},
            ],
        }
    ]
}


def test_deltas_from_string_and_integer_counters() -> None:
    delta = triton_delta(BEFORE, AFTER, "resnet")
    assert delta.model == "resnet"
    assert delta.requests == 660
    assert delta.inferences == 660
    assert delta.executions == 100
    assert delta.mean_batch_size == pytest.approx(6.6)
    assert delta.mean_queue_ms == pytest.approx(2.0)
    assert delta.mean_compute_ms == pytest.approx(3.2)
    assert delta.mean_request_ms == pytest.approx(5.2)  # (4,332 - 900) ms over 660 requests
    assert delta.batch_histogram == {1: 20, 8: 80}  # batch 4 saw no new executions


def test_an_idle_window_has_no_means() -> None:
    delta = triton_delta(BEFORE, BEFORE, "resnet")
    assert (delta.requests, delta.inferences, delta.executions) == (0, 0, 0)
    assert delta.mean_batch_size is None and delta.mean_queue_ms is None and delta.mean_compute_ms is None
    assert delta.batch_histogram == {}


def test_a_model_that_never_ran_has_no_counters_at_all() -> None:
    """A fresh model's statistics render as name and version only: every counter is a zero left out."""
    response = service_pb2.ModelStatisticsResponse()
    stats = response.model_stats.add(name="resnet", version="1")
    fresh = json.loads(json_format.MessageToJson(response, preserving_proto_field_name=True))
    stats.inference_count, stats.execution_count = 8, 2
    stats.inference_stats.queue.count, stats.inference_stats.queue.ns = 8, 16_000_000
    ran = json.loads(json_format.MessageToJson(response, preserving_proto_field_name=True))
    assert fresh == {"model_stats": [{"name": "resnet", "version": "1"}]}
    delta = triton_delta(fresh, ran, "resnet")
    assert delta.mean_batch_size == 4.0 and delta.mean_queue_ms == 2.0 and delta.mean_compute_ms is None


def test_the_right_model_and_version_are_picked() -> None:
    other = {"name": "preprocess", "version": "1", "inference_count": "5", "execution_count": "5"}
    v2 = {**AFTER["model_stats"][0], "version": "2", "inference_count": "1"}
    before = {"model_stats": [other, *BEFORE["model_stats"]]}
    after = {"model_stats": [other, *AFTER["model_stats"], v2]}
    assert triton_delta(before, after, "resnet", version="1").inferences == 660
    with pytest.raises(ValueError, match="expected one statistics entry"):
        triton_delta(before, after, "resnet")  # two versions loaded: say which
    with pytest.raises(ValueError, match="expected one statistics entry"):
        triton_delta(before, after, "classify")


def test_counters_going_backwards_mean_a_restart() -> None:
    with pytest.raises(ValueError, match="restarted"):
        triton_delta(AFTER, BEFORE, "resnet")


def test_triton_window_records_a_delta_per_level() -> None:
    class FakeClient:
        def __init__(self) -> None:
            self.snapshots = iter([BEFORE, AFTER, AFTER, AFTER])
            self.calls: list[tuple[str, str, bool]] = []

        async def get_inference_statistics(
            self, model_name: str = "", model_version: str = "", as_json: bool = False
        ) -> dict:
            self.calls.append((model_name, model_version, as_json))
            return next(self.snapshots)

    async def two_levels(window: TritonWindow) -> None:
        for concurrency in (4, 16):
            await window.window_opened(concurrency)
            await window.window_closed(concurrency)

    client = FakeClient()
    window = TritonWindow(client, "resnet")
    asyncio.run(two_levels(window))
    assert client.calls == [("resnet", "", True)] * 4
    assert window.deltas[4].executions == 100 and window.deltas[4].mean_batch_size == pytest.approx(6.6)
    assert window.deltas[16].executions == 0
