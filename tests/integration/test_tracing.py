"""Optional OpenTelemetry tracing, against a real gateway and Triton and a real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import httpx
import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from launcher.triton import TritonServer
from tests.support.stack import Gateway


class Receiver(ThreadingHTTPServer):
    """Collects the spans that arrive on ``POST /v1/traces`` (OTLP/HTTP, protobuf)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[tuple[str, object]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        export = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans.extend((span.name, span) for span in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _attributes(span: object) -> dict[str, object]:
    return {item.key: item.value.string_value or item.value.int_value for item in span.attributes}  # type: ignore[attr-defined]


def test_a_request_is_traced_from_the_gateway_into_triton(
    receiver: Receiver, gateway_factory: Callable[..., Gateway], triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    traced = gateway_factory(
        GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100"
    )
    jpeg = cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()
    answer = httpx.post(
        f"{traced.url}/v1/classify", content=jpeg, headers={"content-type": "image/jpeg", "x-request-id": "trace-me"}
    )
    assert answer.status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not {"POST /v1/classify", "triton classify"} <= {
        n for n, _ in receiver.spans
    }:
        time.sleep(0.1)
    spans = dict(receiver.spans)
    server, client = spans["POST /v1/classify"], spans["triton classify"]
    assert client.trace_id == server.trace_id  # type: ignore[attr-defined]
    assert client.parent_span_id == server.span_id  # type: ignore[attr-defined]
    assert _attributes(server)["request.id"] == _attributes(client)["request.id"] == "trace-me"
    assert _attributes(server)["http.response.status_code"] == 200


def test_probes_make_no_spans(
    receiver: Receiver, gateway_factory: Callable[..., Gateway], triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    """A load balancer's /readyz every few seconds (each one a tiny inference) must not bury the traces that matter
    (GATEWAY_TRACE_PROBES=true would trace them)."""
    gateway = gateway_factory(
        GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100"
    )
    for probe in ("/healthz", "/readyz"):
        assert httpx.get(f"{gateway.url}{probe}", headers={"x-request-id": "probe"}, timeout=30).status_code == 200
    jpeg = cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()
    headers = {"content-type": "image/jpeg", "x-request-id": "after-the-probes"}
    assert httpx.post(f"{gateway.url}/v1/classify", content=jpeg, headers=headers).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "POST /v1/classify" not in {name for name, _ in receiver.spans}:
        time.sleep(0.1)
    # The batch processor exports in the order spans end: the probes' spans, had there been any, came first.
    traced = {(name, _attributes(span)["request.id"]) for name, span in receiver.spans}
    assert not {(name, rid) for name, rid in traced if rid == "probe"}
    assert {("POST /v1/classify", "after-the-probes"), ("triton classify", "after-the-probes")} <= traced
