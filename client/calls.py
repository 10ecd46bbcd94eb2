"""One image, one call: to the gateway's REST API or straight to Triton over gRPC, with bounded retries.

Both sides shed load instead of queueing without bound (the gateway answers 429/503 with ``Retry-After``,
Triton ``UNAVAILABLE`` when its queue is full), so a client sending a folder at once must wait and retry.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time
from typing import Any, TypeVar

import httpx
import numpy as np

from servables import names
from servables.classification import Identity

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRY_WAIT_S = 30.0
GRPC_RETRY_CODES = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"})


class Failure(Exception):
    """A call that did not give an answer; ``status`` is the HTTP status (None for transport or gRPC errors)."""

    def __init__(self, message: str, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message}


class Retryable(Failure):
    """A refusal the server asks us to retry: after ``retry_after_s`` when it said, else after a backoff."""

    def __init__(self, message: str, code: str, status: int | None, retry_after_s: float | None) -> None:
        super().__init__(message, code, status)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


@dataclass
class Attempts:
    """How many calls one file took; shown in JSON output so retries are visible."""

    count: int = 0


async def retrying(call: Callable[[], Awaitable[T]], retries: int, attempts: Attempts) -> T:
    """``call()``, retried up to ``retries`` times on :class:`Retryable`; waits what the server said, plus jitter."""
    for attempt in range(retries + 1):
        attempts.count += 1
        try:
            return await call()
        except Retryable as exc:
            if attempt == retries:
                message = f"{exc.message} (gave up after {attempts.count} attempts)"
                raise Failure(message, exc.code, exc.status) from None
            wait = exc.retry_after_s if exc.retry_after_s is not None else 0.25 * 2**attempt
            # Jitter: files refused together must not all come back in the same instant.
            await asyncio.sleep(min(wait, MAX_RETRY_WAIT_S) * random.uniform(1.0, 1.5))
    raise AssertionError("unreachable")


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


def _http_failure(response: httpx.Response) -> Failure:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text.strip()[:200] or response.reason_phrase
    text = f"HTTP {response.status_code}: {message}"
    if response.status_code in RETRY_STATUSES:
        return Retryable(text, code, response.status_code, _retry_after(response.headers.get("retry-after")))
    return Failure(text, code, response.status_code)


class Gateway:
    """The gateway's REST API over one pooled HTTP client; images go as the raw body (the server sniffs the type)."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    async def close(self) -> None:
        await self.http.aclose()

    async def _post(self, route: str, body: bytes, params: dict[str, Any]) -> httpx.Response:
        try:
            response = await self.http.post(
                route, content=body, params=params, headers={"Content-Type": "application/octet-stream"}
            )
        except httpx.TransportError as exc:
            raise Failure(f"{self.http.base_url}: {exc or type(exc).__name__}", "connection_error") from None
        if response.status_code != 200:
            raise _http_failure(response)
        return response

    async def classify(self, body: bytes, top_k: int, model: str | None = None) -> dict[str, Any]:
        route = f"/v1/models/{model}/classify" if model else "/v1/classify"
        answer: dict[str, Any] = (await self._post(route, body, {"top_k": top_k})).json()
        return answer

    async def edges(self, body: bytes, low: float, high: float) -> bytes:
        return (await self._post("/v1/edges", body, {"low": low, "high": high, "format": "png"})).content


class Triton:
    """A classifier's ensemble over gRPC (``classify`` unless told): the file's bytes in, top-k through the
    classification extension, and the version and weights that answered."""

    def __init__(self, url: str, timeout_s: float) -> None:
        import tritonclient.grpc.aio as grpcclient

        self.client = grpcclient.InferenceServerClient(url)
        self.url, self.timeout_s = url, timeout_s

    async def close(self) -> None:
        await self.client.close()

    async def classify(self, body: bytes, top_k: int, model: str | None = None) -> dict[str, Any]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        model = model or names.CLASSIFY
        image = grpcclient.InferInput(names.IMAGE, [1, len(body)], "UINT8")
        image.set_data_from_numpy(np.frombuffer(body, dtype=np.uint8)[None])
        outputs = [
            grpcclient.InferRequestedOutput(names.PROBABILITIES, class_count=top_k),
            grpcclient.InferRequestedOutput(names.MODEL_ID),
        ]
        try:
            result = await self.client.infer(model, [image], outputs=outputs, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            status = str(exc.status())
            code = status.removeprefix("StatusCode.").lower()
            if status in GRPC_RETRY_CODES:
                raise Retryable(f"{self.url}: {exc.message()}", code, None, None) from None
            raise Failure(f"{self.url}: {exc.message()}", code) from None
        identity = Identity.decode(result.as_numpy(names.MODEL_ID).reshape(-1)[0])  # the network's, as it ran
        return {
            "model": model,
            "model_version": identity.version,
            "weights": identity.weights,
            "image": None,  # Triton decodes the image; its size does not come back
            "predictions": [vars(p) for p in parse_classification(result.as_numpy(names.PROBABILITIES)[0])],
        }


def parse_classification(entries: np.ndarray) -> list[Prediction]:
    """Triton's classification extension answers ``b"score:index:label"`` per class, most probable first."""
    predictions = []
    for entry in entries:
        score, index, label = entry.decode().split(":", 2)
        predictions.append(Prediction(label=label, index=int(index), probability=float(score)))
    return predictions
