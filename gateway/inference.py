"""The gateway's one long-lived gRPC channel to Triton, the generic call every model kind makes through it, and
what Triton's errors mean over REST."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np
import tritonclient.grpc.aio as triton
from starlette.requests import Request
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, model_config_pb2
from tritonclient.utils import InferenceServerException
from tritonclient.utils import np_to_triton_dtype as triton_dtype

from gateway.budget import Budget
from gateway.errors import ApiError, Error
from gateway.images import image_error
from gateway.kinds import kinds
from gateway.observability import Children, Metrics, request_id
from gateway.settings import Settings
from gateway.tracing import Tracing
from gateway.triton_wire import TritonWire
from imaging import ImageError
from servables import names

CHANNEL_ARGS = [
    # Uploads travel as they came (up to the body limit) and edge maps come back as pixels: allow Triton's own
    # message limit rather than gRPC's 4 MB default.
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    # After Triton restarts, reconnect within a second or so (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


# The readiness probes' image: the smallest the upload rules admit, run through each kind's model once a second at most.
PROBE_IMAGE = bytes(cv2.imencode(".png", np.full((8, 8, 3), 128, np.uint8))[1])
PROBE_TTL_S = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Output:
    """An output to ask for; ``class_count`` > 0 asks Triton's classification extension for the top so many."""

    name: str
    class_count: int = 0


class TritonClient(Protocol):
    """What the gateway asks of Triton: ``tritonclient.grpc.aio``'s client, or a test's stand-in."""

    async def infer(self, model_name: str, inputs: list[triton.InferInput], **options: Any) -> triton.InferResult: ...

    async def get_model_config(self, model_name: str, **options: Any) -> Any: ...

    async def is_server_ready(self, **options: Any) -> bool: ...

    async def is_model_ready(self, model_name: str, **options: Any) -> bool: ...

    async def get_model_repository_index(self, **options: Any) -> Any: ...

    async def load_model(self, model_name: str, **options: Any) -> None: ...

    async def unload_model(self, model_name: str, **options: Any) -> None: ...

    async def close(self) -> None: ...


def connect(settings: Settings) -> TritonClient:
    """The one long-lived gRPC channel (call it inside the event loop that will use it); large uploads are framed
    off the event loop (``gateway.triton_wire``)."""
    key = settings.triton_grpc_key.get_secret_value() if settings.triton_grpc_key else None
    return TritonWire(settings.triton_url, CHANNEL_ARGS, key)


class Inference:
    """The generic call to Triton: deadlines, metrics, traces, error mapping, this process's inference slots and
    the readiness of every model kind. What each kind sends and reads is its contract's (``gateway.kinds``).

    Created in the app's lifespan: a ``tritonclient.grpc.aio`` client belongs to the loop that made it."""

    def __init__(
        self, settings: Settings, metrics: Metrics, client: TritonClient, tracing: Tracing | None = None
    ) -> None:
        self.settings = settings
        self.client = client
        self.tracing = tracing
        self.inflight = Budget(settings.max_inflight)
        self.latency = Children(metrics.triton_latency)  # by model, outcome
        self.answers = Children(metrics.triton_answers)  # by model, version
        self._configs: dict[str, model_config_pb2.ModelConfig] = {}
        self._derived: dict[tuple[str, Callable[[model_config_pb2.ModelConfig], Any]], Any] = {}
        self._probed_at = -PROBE_TTL_S
        self._probe: dict[str, str] = {}

    async def close(self) -> None:
        await self.client.close()

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold one of this process's inference slots for the whole request, or answer 429 at once."""
        if not self.inflight.try_take():
            raise ApiError(Error.OVERLOADED, f"this gateway process has {self.inflight.capacity} inference requests in "
                "flight; retry shortly", {"Retry-After": str(self.settings.retry_after_s)},
            )  # fmt: skip
        try:
            yield
        finally:
            self.inflight.give_back()

    async def model_config(self, name: str) -> model_config_pb2.ModelConfig:
        """A model's config as Triton serves it, read once per process: what a route needs of it (its kind, its
        steps) does not change while it is served; a load or unload through this process forgets them all."""
        if name not in self._configs:
            try:
                answer = await self.client.get_model_config(name, client_timeout=1.0)
            except InferenceServerException as exc:
                raise to_api_error(exc, self.settings.retry_after_s) from None
            self._configs[name] = answer.config
        return self._configs[name]

    async def derived(self, name: str, derive: Callable[[model_config_pb2.ModelConfig], T]) -> T:
        """What ``derive`` makes of a model's config (a route's view of it), made once per config read."""
        key = (name, derive)
        if key not in self._derived:
            self._derived[key] = derive(await self.model_config(name))
        return self._derived[key]

    def forget_configs(self) -> None:
        self._configs.clear()
        self._derived.clear()

    async def index(self) -> list[dict[str, str]]:
        """Triton's repository index: every model it can load, with each version's state (loaded or not)."""
        try:
            answer = await self.client.get_model_repository_index(as_json=True, client_timeout=5.0)
        except InferenceServerException as exc:
            raise to_api_error(exc, self.settings.retry_after_s) from None
        return list(answer.get("models", []))

    async def infer(
        self, model: str, inputs: dict[str, np.ndarray], outputs: Sequence[Output], timeout_s: float, version: str = ""
    ) -> dict[str, np.ndarray]:
        """One call: ``inputs`` by name, the ``outputs`` asked for by name; ``version`` pins the model's version."""
        started = time.perf_counter()
        outcome = "ok"
        if timeout_s <= 0:
            raise ApiError(Error.DEADLINE_EXCEEDED, "Triton did not answer within the deadline")
        tensors = [_tensor(name, array) for name, array in inputs.items()]
        wanted = [triton.InferRequestedOutput(output.name, class_count=output.class_count) for output in outputs]
        try:
            # The deadline is the gRPC deadline (Triton cancels the request when it passes), Triton's queue
            # timeout, and a parameter every step of an ensemble sees: a run still going when it passes, which
            # Triton does not tell, stops itself (servables/python_models/onnx_runner.py). The request
            # id reaches Triton's traces and errors.
            call = self.tracing.triton_call(model, _request_id()) if self.tracing else nullcontext(None)
            deadline = {names.DEADLINE_PARAMETER: time.time_ns() + int(timeout_s * 1e9)}
            with call as trace_headers:
                result = await self.client.infer(
                    model, tensors, model_version=version, outputs=wanted, request_id=_request_id(),
                    client_timeout=timeout_s, timeout=int(timeout_s * 1e6), headers=trace_headers,
                    parameters=deadline,
                )  # fmt: skip
            self.answers(model, result.get_response().model_version).inc()
            return {output.name: result.as_numpy(output.name) for output in outputs}
        except InferenceServerException as exc:
            error = to_api_error(exc, self.settings.retry_after_s)
            outcome = error.error.code
            raise error from None
        except asyncio.CancelledError:  # abandoned (the client left): the RPC is cancelled, and so is the request
            outcome = Error.CLIENT_CLOSED_REQUEST.code
            raise
        finally:
            self.latency(model, outcome).observe(time.perf_counter() - started)

    async def infer_pinned(
        self, steps: Sequence[Any], inputs: dict[str, np.ndarray], outputs: Sequence[Output], timeout_s: float,
        version: str,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """An ensemble's ``steps`` run one call each, the last at ``version`` (a Triton ensemble always calls the
        latest version of a step, so a pin cannot go through it); ``inputs`` and ``outputs`` by the ensemble's
        names, as ``infer`` takes them for the ensemble itself."""
        deadline = time.monotonic() + timeout_s
        tensors = dict(inputs)
        *head, last = steps
        for step in head:
            fed = {own: tensors[mapped] for own, mapped in step.input_map.items() if mapped in tensors}
            answer = await self.infer(step.model_name, fed, [Output(own) for own in step.output_map],
                                      deadline - time.monotonic())  # fmt: skip
            tensors |= {mapped: answer[own] for own, mapped in step.output_map.items()}
        own = {mapped: own for own, mapped in last.output_map.items()}
        fed = {name: tensors[mapped] for name, mapped in last.input_map.items() if mapped in tensors}
        asked = [Output(own[output.name], output.class_count) for output in outputs]
        answer = await self.infer(last.model_name, fed, asked, deadline - time.monotonic(), version)
        return {output.name: answer[own[output.name]] for output in outputs}

    async def readiness(self) -> dict[str, str]:
        """Per component (Triton, then each kind's model): "ready", or why not. Short deadlines: a probe must not
        hang on a dead server."""
        probes = {kind.model(self.settings): kind.probe for kind in kinds()}
        try:
            if not await self.client.is_server_ready(client_timeout=1.0):
                return {"triton": "not ready"} | {m: "unknown" for m in probes}
            states = {m: await self.client.is_model_ready(m, client_timeout=1.0) for m in probes}
        except InferenceServerException as exc:
            return {"triton": f"unavailable: {exc.message()}"} | {m: "unknown" for m in probes}
        serving = await self._serving(probes) if all(states.values()) else {}
        return {"triton": "ready"} | {m: serving.get(m, "ready") if ok else "not ready" for m, ok in states.items()}

    async def _serving(self, probes: dict[str, Callable[[Inference, str], Awaitable[object]]]) -> dict[str, str]:
        """Whether each model really answers, from a tiny inference: Triton reports a model ready even when its
        stub processes died. Remembered for a second, so polling /readyz cannot turn into load on Triton."""
        now = time.monotonic()
        if now - self._probed_at > PROBE_TTL_S:
            self._probed_at = now
            outcomes = await asyncio.gather(*(probe(self, model) for model, probe in probes.items()),
                                            return_exceptions=True)  # fmt: skip
            self._probe = {
                model: f"not serving: {outcome.message}" for model, outcome in zip(probes, outcomes, strict=True)
                if isinstance(outcome, ApiError)
            }  # fmt: skip
        return self._probe


async def while_client_waits(request: Request, calls: Awaitable[T]) -> T:
    """``calls`` to Triton, cancelled if the client disconnects first: cancelling a grpc.aio call cancels its RPC,
    and Triton then drops the request or stops its run instead of computing an answer nobody will read. The calls
    run in this request's own task, which a watcher cancels when the client leaves (one task per request, not
    two and a wait)."""
    this = asyncio.current_task()
    assert this is not None
    left = False

    async def watch() -> None:
        nonlocal left
        await _disconnected(request)
        left = True
        this.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await calls
    except asyncio.CancelledError:
        if left and this.uncancel() == 0:  # the client left, and nothing else is cancelling this request
            raise ApiError(Error.CLIENT_CLOSED_REQUEST, "the client closed the connection before the answer") from None
        raise
    finally:
        watcher.cancel()


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects: once the body has been read, the next ASGI message is that."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _request_id() -> str:
    rid = request_id.get()
    return "" if rid == "-" else rid


def _tensor(name: str, array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), triton_dtype(array.dtype))
    owner = array.base
    while isinstance(owner, np.ndarray):
        owner = owner.base
    if isinstance(owner, bytes) and array.dtype == np.uint8 and array.flags.c_contiguous and array.size == len(owner):
        # An upload as it came (``encoded``): its own bytes are the tensor's, where set_data_from_numpy would copy
        # them on the event loop (tobytes: 3.3 MB for a phone photo).
        tensor._raw_content = owner
    else:
        tensor.set_data_from_numpy(array)
    return tensor


def encoded(data: bytes) -> np.ndarray:
    """A file's bytes as the entry points take them: ``uint8 [1, nbytes]``, no copy."""
    return np.frombuffer(data, np.uint8)[np.newaxis]


def to_api_error(exc: InferenceServerException, retry_after_s: int) -> ApiError:
    """gRPC status -> REST: unavailable 503, queue full 429, deadline 504, bad argument 422."""
    status, message = exc.status() or "", exc.message() or str(exc)
    retry = {"Retry-After": str(retry_after_s)}
    if "DEADLINE_EXCEEDED" in status or "timeout expired" in message.lower():
        return ApiError(Error.DEADLINE_EXCEEDED, "Triton did not answer within the deadline")
    if "protocol is restricted" in message:  # Triton's --grpc-restricted-protocol, and no key or another one
        return ApiError(Error.TRITON_UNAVAILABLE, f"Triton refused the gateway's call: its gRPC endpoint takes a key "
                        f"and GATEWAY_TRITON_GRPC_KEY is unset or another ({message})", retry)  # fmt: skip
    if "maximum queue size" in message:
        return ApiError(Error.TRITON_QUEUE_FULL, "Triton's queue is full; retry shortly", retry)
    if "No space left on device" in message:  # /dev/shm: the decode step's refusal, or the python backend's failure
        return ApiError(Error.TRITON_SHARED_MEMORY_FULL, f"Triton is out of shared memory: {message}", retry)
    if "unknown model" in message and "version" in message:  # a pinned version that is not (or no longer) served
        return ApiError(Error.MODEL_VERSION_NOT_FOUND, f"Triton does not serve it (GET /v1/models lists the versions "
                        f"it serves): {message}")  # fmt: skip
    if "UNAVAILABLE" in status or "unknown model" in message or "is not healthy" in message:
        # A restarting Triton has not loaded it yet, or a model's stub process died (the launcher restarts it).
        return ApiError(Error.TRITON_UNAVAILABLE, f"Triton is unavailable: {message}", retry)
    if "INVALID_ARGUMENT" in status:
        if refused := ImageError.from_message(message):
            return image_error(refused)
        return ApiError(Error.INVALID_IMAGE, f"Triton refused the input: {message}")
    if "RESOURCE_EXHAUSTED" in status:
        return ApiError(Error.PAYLOAD_TOO_LARGE, f"Triton refused the request size: {message}")
    if "CANCELLED" in status:
        return ApiError(Error.CANCELLED, "the request to Triton was cancelled", retry)
    return ApiError(Error.TRITON_ERROR, f"Triton answered with an error: {message}")
