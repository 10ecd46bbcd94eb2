"""Optional OpenTelemetry tracing: a request's span in the gateway, a child span per call to Triton.

Off unless ``GATEWAY_OTLP_ENDPOINT`` is set (e.g. ``http://collector:4318/v1/traces``): without it
OpenTelemetry's SDK and exporter are never loaded, and the request path pays one ``None`` check. When on, spans go
out in batches over OTLP/HTTP, carry the request id, and the W3C ``traceparent`` rides along to Triton as gRPC
metadata, so a Triton started with ``--trace-config mode=opentelemetry`` continues the same trace. Probes
(``/healthz``, ``/readyz``: a load balancer's every few seconds, each readiness check a tiny inference) make no
spans, in the gateway or in Triton, unless ``GATEWAY_TRACE_PROBES`` asks for them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SERVICE_NAME = "tritonserve-gateway"
PROBES = frozenset({"/healthz", "/readyz"})
# Set while a request that is not traced runs: its calls to Triton are not traced either.
_untraced: contextvars.ContextVar[bool] = contextvars.ContextVar("untraced", default=False)


class Tracing:
    """The tracer provider and the two kinds of span the gateway makes."""

    def __init__(self, endpoint: str, trace_probes: bool = False) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.propagate import inject
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace import SpanKind

        self.provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self.tracer = self.provider.get_tracer("gateway")
        self._inject = inject
        self._kind = SpanKind
        self.untraced_paths = frozenset() if trace_probes else PROBES

    @contextmanager
    def request(self, method: str, path: str, request_id: str) -> Iterator[Any]:
        """The span of one HTTP request (None for a probe); the caller sets its status attribute when the answer
        is known."""
        if path in self.untraced_paths:
            token = _untraced.set(True)
            try:
                yield None
            finally:
                _untraced.reset(token)
            return
        attributes = {"http.request.method": method, "url.path": path, "request.id": request_id}
        with self.tracer.start_as_current_span(
            f"{method} {path}", kind=self._kind.SERVER, attributes=attributes
        ) as span:
            yield span

    @contextmanager
    def triton_call(self, model: str, request_id: str) -> Iterator[dict[str, str]]:
        """A child span around one gRPC call; yields the metadata that carries the trace to Triton."""
        if _untraced.get():
            yield {}
            return
        attributes = {"rpc.system": "grpc", "triton.model": model, "request.id": request_id}
        with self.tracer.start_as_current_span(f"triton {model}", kind=self._kind.CLIENT, attributes=attributes):
            headers: dict[str, str] = {}
            self._inject(headers)
            yield headers

    def close(self) -> None:
        self.provider.shutdown()  # flushes what is still batched


def start_tracing(endpoint: str | None, trace_probes: bool = False) -> Tracing | None:
    return Tracing(endpoint, trace_probes) if endpoint else None
