"""The gateway's one long-lived gRPC channel to Triton, and what its answers and errors mean over REST."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np
import tritonclient.grpc.aio as triton
from starlette.requests import Request
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException
from tritonclient.utils import np_to_triton_dtype as triton_dtype

from gateway.budget import Budget
from gateway.errors import ApiError, Error
from gateway.images import image_error
from gateway.observability import Metrics, request_id
from gateway.settings import Settings
from gateway.tracing import Tracing
from gateway.triton_wire import TritonWire
from imaging import ImageError
from servables import names
from servables.repository import weights_of

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


# The readiness probe: the smallest image the upload rules admit, run through each model once a second at most.
PROBE_IMAGE = bytes(cv2.imencode(".png", np.full((8, 8, 3), 128, np.uint8))[1])
PROBE_TTL_S = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class Classification:
    model: str
    model_version: str
    weights: str
    predictions: list[Prediction]


@dataclass(frozen=True)
class CannyParameters:
    """cv2.Canny's parameters, and the grayscale/blur option, as the edge detector takes them."""

    low: float = 100.0
    high: float = 200.0
    aperture_size: int = 3
    l2_gradient: bool = False
    gray: bool = False
    blur: int = 0


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
    return TritonWire(settings.triton_url, CHANNEL_ARGS)


class Inference:
    """Created in the app's lifespan: a ``tritonclient.grpc.aio`` client belongs to the loop that made it."""

    def __init__(
        self, settings: Settings, metrics: Metrics, client: TritonClient, tracing: Tracing | None = None
    ) -> None:
        self.settings = settings
        self.client = client
        self.tracing = tracing
        self.inflight = Budget(settings.max_inflight)
        self.latency = metrics.triton_latency
        self.answers = metrics.triton_answers
        self._weights: str | None = None
        self._probed_at = -PROBE_TTL_S
        self._probe: dict[str, str] = {}
        self._steps: list[Any] | None = None

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

    async def classify(self, encoded: bytes, top_k: int, version: str = "") -> Classification:
        """The file's bytes as they came: Triton decodes them at the scale the model needs. ``version`` pins the
        ResNet's version; the answer names the model and version that ran."""
        output = triton.InferRequestedOutput(names.PROBABILITIES, class_count=top_k)
        if version:
            result = await self._classify_pinned(encoded, output, version)
        else:
            model = self.settings.classify_model
            result = await self._infer(model, [_encoded(encoded)], [output], self.settings.classify_timeout_s)
        predictions = []
        for entry in result.as_numpy(names.PROBABILITIES).reshape(-1):
            score, index, label = entry.decode().split(":", 2)  # the classification extension's format
            predictions.append(Prediction(label=label, index=int(index), probability=float(score)))
        response = result.get_response()
        return Classification(response.model_name, response.model_version, await self.weights(), predictions)

    async def _classify_pinned(
        self, encoded: bytes, output: triton.InferRequestedOutput, version: str
    ) -> triton.InferResult:
        """The ensemble's own steps, run one call each, the last (the ResNet) at ``version``: a Triton ensemble
        always calls the latest version of a step, so a pin cannot go through it."""
        deadline = time.monotonic() + self.settings.classify_timeout_s
        *head, last = await self._ensemble_steps()
        tensors = {names.IMAGE: np.frombuffer(encoded, np.uint8)[np.newaxis]}
        for step in head:
            inputs = [_tensor(own, tensors[mapped]) for own, mapped in step.input_map.items()]
            outputs = [triton.InferRequestedOutput(own) for own in step.output_map]
            answer = await self._infer(step.model_name, inputs, outputs, deadline - time.monotonic())
            tensors |= {mapped: answer.as_numpy(own) for own, mapped in step.output_map.items()}
        inputs = [_tensor(own, tensors[mapped]) for own, mapped in last.input_map.items()]
        return await self._infer(last.model_name, inputs, [output], deadline - time.monotonic(), version)

    async def _ensemble_steps(self) -> list[Any]:
        """The classify ensemble's steps, read from Triton once (what the pinned path runs)."""
        if self._steps is None:
            try:
                answer = await self.client.get_model_config(self.settings.classify_model, client_timeout=1.0)
            except InferenceServerException as exc:
                raise to_api_error(exc, self.settings.retry_after_s) from None
            self._steps = list(answer.config.ensemble_scheduling.step)
        return self._steps

    async def weights(self) -> str:
        """What the served ResNet learnt (the exporter records it in the ensemble's config), asked once."""
        if self._weights is None:
            try:
                answer = await self.client.get_model_config(self.settings.classify_model, client_timeout=1.0)
            except InferenceServerException:
                return "unknown"
            self._weights = weights_of(answer.config)
        return self._weights

    async def edges(self, encoded: bytes, parameters: CannyParameters) -> np.ndarray:
        inputs = [
            _encoded(encoded),
            _tensor(names.LOW, np.array([[parameters.low]], np.float32)),
            _tensor(names.HIGH, np.array([[parameters.high]], np.float32)),
            _tensor(names.APERTURE_SIZE, np.array([[parameters.aperture_size]], np.int32)),
            _tensor(names.L2_GRADIENT, np.array([[parameters.l2_gradient]], np.bool_)),
            _tensor(names.GRAY, np.array([[parameters.gray]], np.bool_)),
            _tensor(names.BLUR, np.array([[parameters.blur]], np.int32)),
        ]
        output = [triton.InferRequestedOutput(names.EDGE_MAP)]
        result = await self._infer(self.settings.edges_model, inputs, output, self.settings.edges_timeout_s)
        return result.as_numpy(names.EDGE_MAP)[0]

    async def _infer(
        self, model: str, inputs: list[triton.InferInput], outputs: list, timeout_s: float, version: str = ""
    ) -> triton.InferResult:
        started = time.perf_counter()
        outcome = "ok"
        if timeout_s <= 0:
            raise ApiError(Error.DEADLINE_EXCEEDED, "Triton did not answer within the deadline")
        try:
            # The deadline is the gRPC deadline (Triton cancels the request when it passes), Triton's queue
            # timeout, and a parameter every step of an ensemble sees: a run still going when it passes, which
            # Triton does not tell, stops itself (servables/python_models/onnx_runner.py). The request
            # id reaches Triton's traces and errors.
            call = self.tracing.triton_call(model, _request_id()) if self.tracing else nullcontext(None)
            deadline = {names.DEADLINE_PARAMETER: time.time_ns() + int(timeout_s * 1e9)}
            with call as trace_headers:
                result = await self.client.infer(
                    model, inputs, model_version=version, outputs=outputs, request_id=_request_id(),
                    client_timeout=timeout_s, timeout=int(timeout_s * 1e6), headers=trace_headers,
                    parameters=deadline,
                )  # fmt: skip
            self.answers.labels(model=model, version=result.get_response().model_version).inc()
            return result
        except InferenceServerException as exc:
            error = to_api_error(exc, self.settings.retry_after_s)
            outcome = error.error.code
            raise error from None
        except asyncio.CancelledError:  # abandoned (the client left): the RPC is cancelled, and so is the request
            outcome = Error.CLIENT_CLOSED_REQUEST.code
            raise
        finally:
            self.latency.labels(model=model, outcome=outcome).observe(time.perf_counter() - started)

    async def readiness(self) -> dict[str, str]:
        """Per component: "ready", or why not. Short deadlines: a probe must not hang on a dead server."""
        models = (self.settings.classify_model, self.settings.edges_model)
        try:
            if not await self.client.is_server_ready(client_timeout=1.0):
                return {"triton": "not ready"} | {m: "unknown" for m in models}
            states = {m: await self.client.is_model_ready(m, client_timeout=1.0) for m in models}
        except InferenceServerException as exc:
            return {"triton": f"unavailable: {exc.message()}"} | {m: "unknown" for m in models}
        serving = await self._serving() if all(states.values()) else {}
        return {"triton": "ready"} | {m: serving.get(m, "ready") if ok else "not ready" for m, ok in states.items()}

    async def _serving(self) -> dict[str, str]:
        """Whether each model really answers, from a tiny inference: Triton reports a model ready even when its
        stub processes died. Remembered for a second, so polling /readyz cannot turn into load on Triton."""
        now = time.monotonic()
        if now - self._probed_at > PROBE_TTL_S:
            self._probed_at = now
            classify = self.classify(PROBE_IMAGE, 1)
            edges = self.edges(PROBE_IMAGE, CannyParameters())
            outcomes = await asyncio.gather(classify, edges, return_exceptions=True)
            models = (self.settings.classify_model, self.settings.edges_model)
            self._probe = {
                model: f"not serving: {outcome.message}" for model, outcome in zip(models, outcomes, strict=True)
                if isinstance(outcome, ApiError)
            }  # fmt: skip
        return self._probe


async def while_client_waits(request: Request, calls: Awaitable[T]) -> T:
    """``calls`` to Triton, cancelled if the client disconnects first: cancelling a grpc.aio call cancels its RPC,
    and Triton then drops the request or stops its run instead of computing an answer nobody will read."""
    answer = asyncio.ensure_future(calls)
    left = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait((answer, left), return_when=asyncio.FIRST_COMPLETED)
    finally:
        left.cancel()
        answer.cancel()  # no-op once answered; else the client left, or this request itself is being cancelled
    if answer in done:
        return answer.result()
    with suppress(asyncio.CancelledError):
        await answer
    raise ApiError(Error.CLIENT_CLOSED_REQUEST, "the client closed the connection before the answer")


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects: once the body has been read, the next ASGI message is that."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _request_id() -> str:
    rid = request_id.get()
    return "" if rid == "-" else rid


def _tensor(name: str, array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


def _encoded(data: bytes) -> triton.InferInput:
    return _tensor(names.IMAGE, np.frombuffer(data, np.uint8)[np.newaxis])


def to_api_error(exc: InferenceServerException, retry_after_s: int) -> ApiError:
    """gRPC status -> REST: unavailable 503, queue full 429, deadline 504, bad argument 422."""
    status, message = exc.status() or "", exc.message() or str(exc)
    retry = {"Retry-After": str(retry_after_s)}
    if "DEADLINE_EXCEEDED" in status or "timeout expired" in message.lower():
        return ApiError(Error.DEADLINE_EXCEEDED, "Triton did not answer within the deadline")
    if "maximum queue size" in message:
        return ApiError(Error.TRITON_QUEUE_FULL, "Triton's queue is full; retry shortly", retry)
    if "No space left on device" in message:  # /dev/shm: the decode step's refusal, or the python backend's failure
        return ApiError(Error.TRITON_SHARED_MEMORY_FULL, f"Triton is out of shared memory: {message}", retry)
    if "unknown model" in message and "version" in message:  # a pinned version that is not (or no longer) served
        return ApiError(Error.MODEL_VERSION_UNAVAILABLE, f"Triton does not serve it: {message}", retry)
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
