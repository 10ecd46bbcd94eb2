"""What keeps a request's own CPU small keeps its behaviour: an upload's bytes reach Triton uncopied, freed memory is
kept for reuse, metric children are looked up once, and a client that leaves still cancels its calls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.types import Message
from tritonclient.grpc import Request as PluginRequest

from gateway.errors import ApiError, Error
from gateway.inference import _tensor, encoded, while_client_waits
from gateway.memory import keep_freed_memory
from gateway.observability import Children
from gateway.triton_wire import TritonKey
from servables import names


def test_an_upload_is_the_tensor_s_content_without_a_copy() -> None:
    data = bytes(range(256)) * 64
    tensor = _tensor(names.IMAGE, encoded(data))
    assert tensor._get_content() is data
    assert tensor.shape() == [1, len(data)] and tensor.datatype() == "UINT8"
    # A slice of an upload, or any other array, is copied as set_data_from_numpy does.
    part = encoded(data)[:, :100]
    assert _tensor(names.IMAGE, part)._get_content() == data[:100]


def test_freed_memory_is_kept_for_reuse_where_malloc_is_glibc_s() -> None:
    assert keep_freed_memory()  # Linux with glibc: these machines and both images


def test_a_metric_child_is_looked_up_once() -> None:
    counter = Counter("seen", "a test counter", ["route", "status"], registry=CollectorRegistry())
    children = Children(counter)
    assert children("/v1/classify", "200") is children("/v1/classify", "200") is counter.labels("/v1/classify", "200")
    children("/v1/classify", "200").inc()
    assert counter.labels(route="/v1/classify", status="200")._value.get() == 1


def test_the_key_rides_on_every_call_s_headers() -> None:
    request = PluginRequest(None)
    TritonKey("k3y")(request)
    assert request.headers == {names.GRPC_KEY_HEADER: "k3y"}
    traced = PluginRequest({"traceparent": "00-abc"})
    TritonKey("k3y")(traced)
    assert traced.headers == {"traceparent": "00-abc", names.GRPC_KEY_HEADER: "k3y"}


def _request(leaves: asyncio.Event) -> Request:
    """A request whose body has been read: its next message is the client leaving, once ``leaves`` is set."""

    async def receive() -> Message:
        await leaves.wait()
        return {"type": "http.disconnect"}

    return Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)


def _run(scenario: Callable[[], Awaitable[object]]) -> object:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def test_calls_answer_while_the_client_waits() -> None:
    async def scenario() -> object:
        async def call() -> str:
            await asyncio.sleep(0.01)
            return "answer"

        return await while_client_waits(_request(asyncio.Event()), call())

    assert _run(scenario) == "answer"


def test_a_client_that_leaves_cancels_the_calls_and_gets_499() -> None:
    cancelled = []

    async def scenario() -> object:
        leaves = asyncio.Event()

        async def call() -> str:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return "never"

        asyncio.get_running_loop().call_later(0.02, leaves.set)
        with pytest.raises(ApiError) as refused:
            await while_client_waits(_request(leaves), call())
        assert refused.value.error is Error.CLIENT_CLOSED_REQUEST
        await asyncio.sleep(0)  # the request goes on (its answer, its log line): nothing is left cancelling it
        return "went on"

    assert _run(scenario) == "went on"
    assert cancelled == [True]


def test_a_request_cancelled_otherwise_stays_cancelled() -> None:
    """Shutdown cancelling a request is not a client leaving: the cancellation goes on up."""

    async def scenario() -> object:
        async def request_task() -> str:
            return await while_client_waits(_request(asyncio.Event()), asyncio.sleep(10, "never"))

        task = asyncio.ensure_future(request_task())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return "cancelled"

    assert _run(scenario) == "cancelled"
