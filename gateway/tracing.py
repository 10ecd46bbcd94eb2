"""Optional OpenTelemetry tracing: a request's span in the gateway, a child span per call to Triton.

Off unless ``GATEWAY_OTLP_ENDPOINT`` is set (e.g. ``http://collector:4318/v1/traces``): without it
OpenTelemetry's SDK and exporter are never loaded, and the request path pays one ``None`` check. When on, spans go
out in batches over OTLP/HTTP, carry the request id, and the W3C ``traceparent`` rides along to Triton as gRPC
metadata, so a Triton started with ``--trace-config mode=opentelemetry`` continues the same trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SERVICE_NAME = "tritonserve-gateway"


class Tracing:
    """The tracer provider and the two kinds of span the gateway makes."""

    def __init__(self, endpoint: str) -> None:
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

    @contextmanager
    def request(self, method: str, path: str, request_id: str) -> Iterator[Any]:
        """The span of one HTTP request; the caller sets its status attribute when the answer is known."""
        attributes = {"http.request.method": method, "url.path": path, "request.id": request_id}
        with self.tracer.start_as_current_span(
            f"{method} {path}", kind=self._kind.SERVER, attributes=attributes
        ) as span:
            yield span

    @contextmanager
    def triton_call(self, model: str, request_id: str) -> Iterator[dict[str, str]]:
        """A child span around one gRPC call; yields the metadata that carries the trace to Triton."""
        attributes = {"rpc.system": "grpc", "triton.model": model, "request.id": request_id}
        with self.tracer.start_as_current_span(f"triton {model}", kind=self._kind.CLIENT, attributes=attributes):
            headers: dict[str, str] = {}
            self._inject(headers)
            yield headers

    def close(self) -> None:
        self.provider.shutdown()  # flushes what is still batched


def start_tracing(endpoint: str | None) -> Tracing | None:
    return Tracing(endpoint) if endpoint else None
