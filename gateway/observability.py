"""Request ids, access logs, Prometheus metrics and optional tracing, as one pure ASGI middleware (no per-request
tasks); Triton's own metrics passed through for scrapers that only reach the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import httpx
from fastapi.routing import iter_route_contexts
from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ApiError, Error
from gateway.tracing import Tracing

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")
log = logging.getLogger("gateway.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every log record, so any line can be traced to its request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


M = TypeVar("M", Counter, Gauge, Histogram)


class Children(Generic[M]):
    """A metric's labelled children, each looked up once: ``labels()`` checks and locks on every call, and a
    request made five such calls. The label sets are the metric's own (bounded: routes, statuses, models)."""

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._known: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._known.get(values)
        if child is None:
            child = self._known[values] = self.metric.labels(*values)
        return child


class Budget(Protocol):
    capacity: int
    used: int


class BudgetCollector(Collector):
    """This process's admission budgets, read when Prometheus scrapes: nothing to update per request."""

    def __init__(self) -> None:
        self.budgets: dict[str, Callable[[], Budget]] = {}

    def collect(self) -> Iterable[Metric]:
        used = GaugeMetricFamily("gateway_budget_used", "units of an admission budget in use", labels=["budget"])
        capacity = GaugeMetricFamily("gateway_budget_capacity", "an admission budget's ceiling", labels=["budget"])
        for name, budget in self.budgets.items():
            with contextlib.suppress(AttributeError):  # before the lifespan has built it
                current = budget()
                used.add_metric([name], current.used)
                capacity.add_metric([name], current.capacity)
        return [used, capacity]


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    inflight: Gauge
    triton_latency: Histogram
    triton_answers: Counter
    implied_peak_rss: Gauge
    budgets: BudgetCollector = field(default_factory=BudgetCollector)

    @classmethod
    def create(cls) -> Metrics:
        # prometheus_client's switch is process-wide: flipped here, where the app is built, not as an import's
        # side effect. *_created series would double the exposition for no use.
        disable_created_metrics()
        registry = CollectorRegistry()
        # The same process_* and python_info series the default registry carries (CPU, memory, open files).
        registry.register(PROCESS_COLLECTOR)
        registry.register(PLATFORM_COLLECTOR)
        budgets = BudgetCollector()
        registry.register(budgets)
        return cls(
            registry=registry,
            requests=Counter(
                "gateway_requests",
                "HTTP requests by route and status",
                ["method", "route", "status"],
                registry=registry,
            ),  # fmt: skip
            latency=Histogram(
                "gateway_request_seconds",
                "HTTP request latency by route and status",
                ["method", "route", "status"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),  # fmt: skip
            inflight=Gauge(
                "gateway_inflight_requests",
                "HTTP requests being served",
                ["route"],
                registry=registry,
                multiprocess_mode="livesum",
            ),  # fmt: skip
            triton_latency=Histogram(
                "gateway_triton_call_seconds",
                "gRPC calls to Triton by model and outcome",
                ["model", "outcome"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),  # fmt: skip
            triton_answers=Counter(
                "gateway_triton_answers",
                "Triton's answers by model and the version that ran (a version swap shows here)",
                ["model", "version"],
                registry=registry,
            ),  # fmt: skip
            implied_peak_rss=Gauge(
                "gateway_implied_peak_rss_bytes",
                "the peak RSS per process these settings imply (beside process_resident_memory_bytes)",
                registry=registry,
                multiprocess_mode="livemax",
            ),  # fmt: skip
            budgets=budgets,
        )

    def watch(self, name: str, budget: Callable[[], Budget]) -> None:
        """Expose a budget as ``gateway_budget_used``/``_capacity{budget=name}``, read at scrape time."""
        self.budgets.budgets[name] = budget

    def exposition(self) -> tuple[bytes, str]:
        """This process's metrics, or every worker's when uvicorn runs several (prometheus multiprocess: the
        counters and histograms add up; process and budget gauges are per process, so they are left out)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


TRITON_METRICS_MAX_BYTES = 8 * 1024 * 1024  # Triton's exposition is tens of kB; a runaway label set is not


class TritonMetrics:
    """Triton's Prometheus text, for scrapers that reach only the gateway: one HTTP client for the process, one
    fetch upstream at a time, shared by every scrape that arrives while it runs, whole within ``timeout_s`` and
    under ``TRITON_METRICS_MAX_BYTES``, or a 502/503 (a scrape must never hang or balloon the gateway). A client
    per scrape, as before, built its TLS context on the event loop: 300 concurrent scrapes held /healthz 12 s."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s, limits=httpx.Limits(max_connections=1))
        self._fetch: asyncio.Future[bytes] | None = None

    async def get(self) -> bytes:
        if self._fetch is None:
            self._fetch = asyncio.ensure_future(self._fetched())
            self._fetch.add_done_callback(self._done)
        # Shielded: a scraper that leaves does not cancel the fetch the others wait for.
        return await asyncio.shield(self._fetch)

    def _done(self, fetch: asyncio.Future[bytes]) -> None:
        self._fetch = None
        if not fetch.cancelled():
            fetch.exception()  # retrieved here too, in case every scraper left before it came

    async def _fetched(self) -> bytes:
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s), self._client.stream("GET", self.url) as answer:
                if answer.status_code != 200:
                    raise ApiError(Error.TRITON_ERROR, f"Triton's metrics answered {answer.status_code}")
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > TRITON_METRICS_MAX_BYTES:
                        raise ApiError(
                            Error.TRITON_ERROR, f"Triton's metrics are over {TRITON_METRICS_MAX_BYTES} bytes"
                        )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise ApiError(Error.TRITON_UNAVAILABLE, f"Triton's metrics are unavailable: {exc!r}") from None
        return bytes(body)

    async def close(self) -> None:
        await self._client.aclose()


def loggable_path(scope: Scope) -> str:
    """The path as the client sent it (``raw_path``: still percent-encoded, so ``%0A`` stays three characters),
    with anything outside printable ASCII escaped: no request can write a line break or a forged field."""
    raw: bytes | None = scope.get("raw_path")
    path = scope["path"] if raw is None else raw.decode("latin-1")
    return _UNPRINTABLE.sub(lambda m: "\\x20" if m.group() == " " else ascii(m.group())[1:-1], path)


class RouteLabels:
    """The route a request is counted under: its path template as clients see it, with the prefixes of the routers
    that include it (``/v1/admin/...``; the route FastAPI records has its own router's path only), also for requests
    refused before a route ran (``gateway.auth.Gate``) or served by a plain route (``/openapi.json``, which FastAPI
    does not record); else ``unmatched``."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        contexts = list(iter_route_contexts(routes))
        # Routes compare by value, not by identity: keyed by id, for the life of the app they belong to.
        self._templates = {id(context.original_route): str(context.path_format) for context in contexts}
        self._patterns = [(context.path_regex, str(context.path_format)) for context in contexts]

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return self._templates.get(id(route), getattr(route, "path", "unmatched"))
        return next((template for regex, template in self._patterns if regex.match(scope["path"])), "unmatched")


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, tracing: Tracing | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing
        self._labels: RouteLabels | None = None  # made at the first request: routes are added after middleware
        self._requests = Children(metrics.requests)
        self._latency = Children(metrics.latency)
        self._inflight = Children(metrics.inflight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        rid = sent if _CLIENT_ID.match(sent) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        client_left = answered = False

        async def receive_noting_disconnect() -> Message:
            nonlocal client_left
            message = await receive()
            client_left = client_left or message["type"] == "http.disconnect"
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        inflight = self._inflight(scope["path"] if scope["path"] in _FIXED else "other")
        inflight.inc()
        traced = self.tracing.request(scope["method"], scope["path"], rid) if self.tracing else nullcontext(None)
        try:
            with traced as span:
                try:
                    await self.app(scope, receive_noting_disconnect, send_with_id)
                finally:
                    if span is not None:
                        span.set_attribute("http.response.status_code", status)
        finally:
            inflight.dec()
            if client_left and not answered:
                status = (
                    Error.CLIENT_CLOSED_REQUEST.status
                )  # whatever the app made of it (a 500 by default), nobody was served
            if self._labels is None:
                self._labels = RouteLabels(scope["app"].routes)
            elapsed = time.perf_counter() - started
            labels = (scope["method"], self._labels.of(scope), str(status))  # method, route, status
            self._requests(*labels).inc()
            self._latency(*labels).observe(elapsed)
            log.info("%s %s %s %.1f ms", scope["method"], loggable_path(scope), status, elapsed * 1000)
            request_id.reset(token)


# In-flight is labelled by the routes worth watching; everything else shares one label (bounded cardinality).
_FIXED = {"/v1/classify", "/v1/classify/batch", "/v1/edges"}
