"""One image, one call: to the gateway's REST API or straight to Triton over gRPC, with bounded retries.

Both sides shed load instead of queueing without bound (the gateway answers 429/503 with ``Retry-After``,
Triton ``UNAVAILABLE`` when its queue is full), so a client sending a folder at once must wait and retry.
Answers are read as they stream in, up to a size no real answer reaches, within one deadline for the whole call
(``--timeout``), and checked before they are believed: a server that is not the gateway, or one that sends
without end or a byte a minute, gets a clear error, never the client's memory or a hang.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np

from servables import names
from servables.classification import Identity

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRY_WAIT_S = 30.0
GRPC_RETRY_CODES = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"})
# The most a real answer takes: top-20 classes as JSON; an edge map of the gateway's largest image (40 MP at a
# byte per pixel, before PNG compresses it); an error.
MAX_JSON_ANSWER_BYTES = 1 << 20
MAX_PNG_ANSWER_BYTES = 64 << 20
MAX_ERROR_BYTES = 64 << 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PREFLIGHT_TIMEOUT_S = 5.0


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


def _http_failure(response: httpx.Response, content: bytes) -> Failure:
    try:
        error = json.loads(content)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = content.decode(errors="replace").strip()[:200]
        code, message = "http_error", f"{text or response.reason_phrase} (not a tritonserve gateway's error: --url?)"
    text = f"HTTP {response.status_code}: {message}"
    if response.status_code in RETRY_STATUSES:
        return Retryable(text, code, response.status_code, _retry_after(response.headers.get("retry-after")))
    return Failure(text, code, response.status_code)


def gateway_url(text: str) -> str:
    """``host:port`` or ``http(s)://host:port[/prefix]``, as ``http(s)://...`` (the scheme defaults to http)."""
    url = text if "://" in text else f"http://{text}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not the gateway's address: host:port, or http(s)://host:port")
    return url.rstrip("/")


def triton_address(text: str) -> tuple[str, bool]:
    """``host:port`` or ``grpc://``, ``http://`` (plain), ``grpcs://``, ``https://`` (TLS) ``host:port``: the
    address as tritonclient takes it, and whether to use TLS."""
    parts = urlsplit(text if "://" in text else f"grpc://{text}")
    if parts.scheme not in ("grpc", "http", "grpcs", "https") or not parts.hostname or parts.path.strip("/"):
        raise ValueError(f"{text!r} is not Triton's gRPC address: host:port, or grpc://host:port")
    return parts.netloc, parts.scheme in ("grpcs", "https")


async def _read(response: httpx.Response, cap: int) -> bytes:
    """The body as it streams in, refused past ``cap`` bytes (an endless answer must not take our memory)."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise Failure(f"the answer is over {cap:,} bytes: not what the gateway sends (--url?)", "answer_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_answer(content: bytes, url: str) -> dict[str, Any]:
    try:
        answer = json.loads(content)
    except ValueError:
        raise Failure(f"{url}: the answer is not JSON (not a tritonserve gateway? --url)", "invalid_answer") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
        raise Failure(f"{url}: the answer has no predictions (not a tritonserve gateway? --url)", "invalid_answer")
    return answer


class Gateway:
    """The gateway's REST API over one pooled HTTP client; images go as the raw body (the server sniffs the type)."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self.http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    async def close(self) -> None:
        await self.http.aclose()

    async def check(self) -> None:
        """Fail at once, with what to do, when nothing answers at the URL or what answers is not the gateway."""
        url = self.http.base_url
        try:
            async with asyncio.timeout(min(self.timeout_s, PREFLIGHT_TIMEOUT_S)):
                response = await self.http.get("/healthz")
        except (httpx.TransportError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise Failure(f"cannot reach the gateway at {url} ({reason}): is it running (make serve)? "
                          "Else set --url or TRITONSERVE_URL", "connection_error") from None  # fmt: skip
        try:
            healthy = response.status_code == 200 and response.json().get("status") == "ok"
        except (ValueError, AttributeError):
            healthy = False
        if not healthy:
            raise Failure(f"{url} is not a tritonserve gateway (GET /healthz answered HTTP {response.status_code}): "
                          "set --url or TRITONSERVE_URL", "not_the_gateway")  # fmt: skip

    async def _post(self, route: str, body: bytes, params: dict[str, Any], cap: int) -> bytes:
        """The answer's body, read within ``timeout_s`` for the whole call (not per read) and up to ``cap``."""
        try:
            async with asyncio.timeout(self.timeout_s), self.http.stream(
                "POST", route, content=body, params=params, headers={"Content-Type": "application/octet-stream"}
            ) as response:  # fmt: skip
                if response.status_code != 200:
                    raise _http_failure(response, await _read(response, MAX_ERROR_BYTES))
                return await _read(response, cap)
        except TimeoutError:
            raise Failure(f"no whole answer within {self.timeout_s:g} s (--timeout)", "timeout") from None
        except httpx.TransportError as exc:
            raise Failure(f"{self.http.base_url}: {exc or type(exc).__name__}", "connection_error") from None

    async def classify(self, body: bytes, top_k: int, model: str | None = None) -> dict[str, Any]:
        route = f"/v1/models/{model}/classify" if model else "/v1/classify"
        content = await self._post(route, body, {"top_k": top_k}, MAX_JSON_ANSWER_BYTES)
        return _json_answer(content, str(self.http.base_url))

    async def edges(self, body: bytes, low: float, high: float) -> bytes:
        params = {"low": low, "high": high, "format": "png"}
        png = await self._post("/v1/edges", body, params, MAX_PNG_ANSWER_BYTES)
        if not png.startswith(PNG_SIGNATURE):
            raise Failure(f"{self.http.base_url}: the answer is not a PNG (--url?)", "invalid_answer")
        return png


class Triton:
    """A classifier's ensemble over gRPC (``classify`` unless told): the file's bytes in, top-k through the
    classification extension, and the version and weights that answered."""

    def __init__(self, url: str, timeout_s: float) -> None:
        import tritonclient.grpc.aio as grpcclient

        address, tls = triton_address(url)
        # Files of any size go out; a top-k answer comes back, so nothing larger is taken in.
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", MAX_JSON_ANSWER_BYTES)]
        self.client = grpcclient.InferenceServerClient(address, ssl=tls, channel_args=options)
        self.url, self.timeout_s = url, timeout_s

    async def close(self) -> None:
        await self.client.close()

    async def check(self) -> None:
        """Fail at once, with what to do, when Triton does not answer (a closed port, another server)."""
        from tritonclient.utils import InferenceServerException

        try:
            live = await self.client.is_server_live(client_timeout=min(self.timeout_s, PREFLIGHT_TIMEOUT_S))
        except InferenceServerException as exc:
            live, reason = False, exc.message() or str(exc.status())
        else:
            reason = "it says it is not live"
        if not live:
            raise Failure(f"cannot reach Triton's gRPC at {self.url} ({reason}): is it running? "
                          "Else set --triton-url or TRITONSERVE_TRITON_URL", "connection_error")  # fmt: skip

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
