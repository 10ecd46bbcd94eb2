"""The gateway's one long-lived gRPC channel to Triton, and what its answers and errors mean over REST."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc.aio as triton
from prometheus_client import Histogram
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException

from gateway.budget import Budget
from gateway.errors import ApiError
from gateway.settings import Settings

CHANNEL_ARGS = [
    # Images travel as raw pixels: allow Triton's own limit rather than gRPC's 4 MB default.
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    # After Triton restarts, reconnect within a second or so (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class Classification:
    model: str
    model_version: str
    predictions: list[Prediction]


class Inference:
    """Created in the app's lifespan: a ``tritonclient.grpc.aio`` client belongs to the loop that made it."""

    def __init__(self, settings: Settings, triton_latency: Histogram) -> None:
        self.settings = settings
        self.client = triton.InferenceServerClient(settings.triton_url, channel_args=CHANNEL_ARGS)
        self.inflight = Budget(settings.max_inflight)
        self.latency = triton_latency

    async def close(self) -> None:
        await self.client.close()

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold one of this process's inference slots for the whole request, or answer 429 at once."""
        if not self.inflight.try_take():
            raise ApiError(
                429, "overloaded", f"this gateway process has {self.inflight.capacity} inference requests in "
                "flight; retry shortly", {"Retry-After": str(self.settings.retry_after_s)},
            )  # fmt: skip
        try:
            yield
        finally:
            self.inflight.give_back()

    async def classify(self, image: np.ndarray, top_k: int) -> Classification:
        output = triton.InferRequestedOutput("PROBABILITIES", class_count=top_k)
        result = await self._infer(
            self.settings.classify_model,
            [_tensor("IMAGE", image[None])],
            [output],
            self.settings.classify_timeout_s,
        )
        predictions = []
        for entry in result.as_numpy("PROBABILITIES").reshape(-1):
            score, index, label = entry.decode().split(":", 2)  # the classification extension's format
            predictions.append(Prediction(label=label, index=int(index), probability=float(score)))
        response = result.get_response()
        return Classification(response.model_name, response.model_version, predictions)

    async def edges(self, image: np.ndarray, low: float, high: float) -> np.ndarray:
        inputs = [
            _tensor("IMAGE", image[None]),
            _tensor("LOW", np.array([[low]], np.float32)),
            _tensor("HIGH", np.array([[high]], np.float32)),
        ]
        output = [triton.InferRequestedOutput("EDGES")]
        result = await self._infer(self.settings.edges_model, inputs, output, self.settings.edges_timeout_s)
        return result.as_numpy("EDGES")[0]

    async def _infer(
        self, model: str, inputs: list[triton.InferInput], outputs: list, timeout_s: float
    ) -> triton.InferResult:
        started = time.perf_counter()
        outcome = "ok"
        try:
            # The deadline is both the gRPC deadline and Triton's queue timeout: a request its client gave up
            # on leaves the queue instead of running late.
            return await self.client.infer(
                model, inputs, outputs=outputs, client_timeout=timeout_s, timeout=int(timeout_s * 1e6)
            )
        except InferenceServerException as exc:
            error = to_api_error(exc, self.settings.retry_after_s)
            outcome = error.code
            raise error from None
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
        return {"triton": "ready"} | {m: "ready" if ok else "not ready" for m, ok in states.items()}


def _tensor(name: str, array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), "UINT8" if array.dtype == np.uint8 else "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


def to_api_error(exc: InferenceServerException, retry_after_s: int) -> ApiError:
    """gRPC status -> REST: unavailable 503, queue full 429, deadline 504, bad argument 422."""
    status, message = exc.status() or "", exc.message() or str(exc)
    retry = {"Retry-After": str(retry_after_s)}
    if "DEADLINE_EXCEEDED" in status or "timeout expired" in message.lower():
        return ApiError(504, "deadline_exceeded", "Triton did not answer within the deadline")
    if "maximum queue size" in message:
        return ApiError(429, "triton_queue_full", "Triton's queue is full; retry shortly", retry)
    if "UNAVAILABLE" in status:
        return ApiError(503, "triton_unavailable", f"Triton is unavailable: {message}", retry)
    if "INVALID_ARGUMENT" in status:
        return ApiError(422, "invalid_image", f"Triton refused the input: {message}")
    if "RESOURCE_EXHAUSTED" in status:
        return ApiError(413, "payload_too_large", f"Triton refused the request size: {message}")
    if "CANCELLED" in status:
        return ApiError(503, "cancelled", "the request to Triton was cancelled", retry)
    return ApiError(502, "triton_error", f"Triton answered with an error: {message}")
