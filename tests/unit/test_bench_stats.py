"""bench.stats on inputs with known answers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bench.stats import count_errors, error_kind, percentile, summarize_latencies, throughput


def test_percentiles_of_1_to_100_ms() -> None:
    summary = summarize_latencies([ms / 1000 for ms in range(100, 0, -1)])  # unsorted on purpose
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p95_ms == pytest.approx(95.05)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.mean_ms == pytest.approx(50.5)
    assert summary.max_ms == pytest.approx(100.0)


def test_percentile_interpolates_like_numpy() -> None:
    values = sorted(random.Random(6).expovariate(1 / 20) for _ in range(997))
    for q in (0, 1, 25, 50, 90, 95, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_edges() -> None:
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_no_latencies_summarise_to_none() -> None:
    summary = summarize_latencies([])
    assert (summary.count, summary.p50_ms, summary.p99_ms, summary.mean_ms, summary.max_ms) == (
        0,
        None,
        None,
        None,
        None,
    )


def test_throughput() -> None:
    assert throughput(1500, 10.0) == 150.0
    assert throughput(0, 10.0) == 0.0
    assert throughput(5, 0.0) == 0.0  # a window closed before it opened measured nothing
    with pytest.raises(ValueError):
        throughput(1, -1.0)


def test_error_kinds_of_the_clients_in_use() -> None:
    import grpc
    import httpx
    from tritonclient.utils import InferenceServerException

    from bench.loadgen import RequestFailed

    http_error = httpx.HTTPStatusError(
        "busy", request=httpx.Request("POST", "http://t/v1/classify"), response=httpx.Response(429)
    )
    rpc_error = grpc.aio.AioRpcError(
        grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), details="late"
    )
    assert error_kind(RequestFailed("http_503")) == "http_503"
    assert error_kind(http_error) == "http_429"
    assert error_kind(rpc_error) == "grpc_DEADLINE_EXCEEDED"
    assert error_kind(InferenceServerException("gone", status="StatusCode.UNAVAILABLE")) == "grpc_UNAVAILABLE"
    assert error_kind(InferenceServerException("no status")) == "InferenceServerException"
    assert error_kind(TimeoutError()) == "timeout"
    assert error_kind(httpx.ConnectError("refused")) == "ConnectError"


def test_count_errors_sorted_by_kind() -> None:
    counts = count_errors(["timeout", "http_503", "timeout", "grpc_UNAVAILABLE", "http_503", "timeout"])
    assert counts == {"grpc_UNAVAILABLE": 1, "http_503": 2, "timeout": 3}
    assert list(counts) == ["grpc_UNAVAILABLE", "http_503", "timeout"]
    assert count_errors([]) == {}
