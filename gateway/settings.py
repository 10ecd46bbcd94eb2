"""Gateway configuration: one pydantic-settings class, read from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT

from gateway.uploads import Pace
from imaging.limits import MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE
from servables import names

KiB, MiB = 1 << 10, 1 << 20

# What one process holds beside its budgets' units: the terms of Settings.peak_rss_bytes, each from the code's copies
# and checked by saturating floods here (README, Reliability, Memory).
BASELINE_RSS_BYTES = 160 * MiB  # a warm idle gateway: 130 MiB measured (Python 3.11, x86-64), room for malloc arenas
# An image body as read, tritonclient's tobytes(), the message framed around it (gateway.triton_wire; under 1 MiB,
# the protobuf request and its serialization) and gRPC core's send buffer: 4.9 to 5.0 x the body budget measured
# with it full before large uploads were framed, one copy fewer since, and another since the upload's bytes are the
# tensor's (no tobytes); kept at 5, which also covers what malloc keeps for reuse (gateway.memory).
BODY_COPIES = 5
# Edge maps come back at 1 byte per pixel: gRPC's message, the protobuf answer and the array; then the array, its PNG
# and the PNG's bytes.
EDGE_MAP_BYTES_PER_PIXEL = 3
# A byte of JSON parses into up to 48 bytes of Python objects: 44 measured (tracemalloc) for one-element lists nested
# to the depth limit, the densest body an item may be (tests/unit/test_peak_rss.py).
JSON_OBJECT_BYTES = 48
# Per open connection beside its head: uvicorn's unread body (it pauses reading past HIGH_WATER_LIMIT, after one
# socket read of up to 256,000 bytes from uvloop) and the request's own objects (about 64 KiB measured).
CONNECTION_BYTES = HIGH_WATER_LIMIT + 256_000 + 64 * KiB
# Connections a process takes past max_connections when it has none idle to close, for /healthz and /readyz only
# (gateway.protocol): probes are answered even when every connection is busy.
PROBE_CONNECTIONS = 16


class Settings(BaseSettings):
    """Everything the gateway process can be told; built once in ``create_app`` and injected."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    # Where it listens (python -m gateway).
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field("text", description="log lines as text, or one JSON object per line")
    shutdown_timeout_s: float = Field(20.0, gt=0, description="graceful shutdown bound; keep below the ECS stopTimeout")

    # Triton, over gRPC (KServe v2).
    triton_url: str = "127.0.0.1:8001"
    triton_grpc_key: SecretStr | None = Field(
        None, description="the key Triton's restricted gRPC protocol asks for (the ECS opt-in gRPC endpoint's secret)"
    )
    classify_model: str = names.CLASSIFY
    edges_model: str = names.EDGES
    classify_timeout_s: float = Field(10.0, gt=0, description="deadline of one classify call to Triton")
    edges_timeout_s: float = Field(10.0, gt=0, description="deadline of one edges call to Triton")
    max_inflight: int = Field(256, ge=1, description="inference requests in flight per process; more get 429")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 429 and 503")
    model_control_timeout_s: float = Field(
        120.0, gt=0, description="deadline of one model load or unload (Triton loads and warms the model first)"
    )
    triton_metrics_url: str | None = Field(
        None, description="Triton's metrics endpoint, e.g. http://127.0.0.1:8002/metrics: served at /metrics/triton"
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); unset: no tracing at all"
    )
    triton_metrics_timeout_s: float = Field(5.0, gt=0, description="bound of one /metrics/triton fetch")
    trace_probes: bool = Field(False, description="trace /healthz and /readyz too (left out: a probe a second)")

    # Uploads.
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="image request body limit")
    max_image_pixels: int = Field(MAX_IMAGE_PIXELS, ge=1, description="width x height limit, read from the header")
    min_image_side: int = Field(MIN_IMAGE_SIDE, ge=1, description="smallest width or height accepted")
    max_aspect_ratio: float = Field(MAX_ASPECT_RATIO, ge=1, description="longest over shortest side")
    max_batch_images: int = Field(32, ge=1, description="files in one /v1/classify/batch request")
    max_pixels_in_flight: int = Field(
        400_000_000, ge=1, description="decoded pixels held at once per process (about 3 bytes each)"
    )
    max_body_bytes_in_flight: int = Field(
        512 * 1024 * 1024, ge=1024, description="image body bytes held at once per process; more get 429"
    )
    body_timeout_s: float = Field(
        Pace.timeout_s, gt=0, description="a request body arrives whole within this, else 408"
    )
    body_min_bytes_per_s: int = Field(
        Pace.min_bytes_per_s, ge=1, description="after body_grace_s a request body must average this rate (else 408)"
    )
    body_grace_s: float = Field(Pace.grace_s, ge=0, description="time before body_min_bytes_per_s applies")

    # Items (CRUD).
    item_store: Literal["sqlite", "dynamodb"] = "sqlite"
    sqlite_path: Path = Path("var/items.sqlite3")
    dynamodb_table: str = "items"
    aws_region: str = "us-east-1"
    dynamodb_endpoint_url: str | None = None
    max_item_bytes: int = Field(64 * 1024, ge=256, description="JSON body limit for /v1/items")
    max_page_bytes: int = Field(1024 * 1024, ge=1024, description="stored JSON in one GET /v1/items page")
    sqlite_write_timeout_s: float = Field(1.0, gt=0, description="a write waits this long, else 503")
    sqlite_readers: int = Field(4, ge=1, description="read-only SQLite connections (reads never queue on writes)")

    # Connections (python -m gateway): how many, idle keep-alive, and the request head's deadline, size and
    # header count.
    max_connections: int = Field(512, ge=1, description="open connections per process; more are answered 429")
    max_connections_per_client: int = Field(
        128, ge=1, description="open connections per client address (IPv6: per /64) and process; more are answered 429"
    )
    keep_alive_s: int = Field(5, ge=1, description="idle keep-alive connections close after this")
    head_timeout_s: float = Field(5.0, gt=0, description="a request head arrives within this, else 408")
    max_head_bytes: int = Field(64 * 1024, ge=1024, description="request line and headers, else 431")
    max_headers: int = Field(100, ge=1, description="header fields in one request, else 400")

    # Authentication: off while no key is configured.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, description="comma-separated API keys")
    api_keys_file: Path | None = Field(None, description="one API key per line")
    protect_metrics: bool = Field(False, description="require a key for /metrics too (probes stay open)")

    # Browsers: origins allowed to call the API from another site's pages; empty sends no CORS headers at all.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed by CORS, e.g. https://app.example.com"
    )

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @property
    def pace(self) -> Pace:
        """How fast every request body must arrive (``gateway.uploads.Intake``)."""
        return Pace(self.body_timeout_s, self.body_min_bytes_per_s, self.body_grace_s)

    @property
    def peak_rss_bytes(self) -> int:
        """The most memory one gateway process should hold under these settings: a measured baseline, plus each
        budget's ceiling times the copies the code makes of what it admits (image bodies, edge maps, listing pages
        being built), plus ``max_connections`` connections each holding a head, its unread body and a page answer
        or item body (and the few past the cap that may only ask for a probe)."""
        from gateway.items.dynamodb import POOL_SIZE  # here: gateway.items imports these settings

        page_builders = self.sqlite_readers if self.item_store == "sqlite" else POOL_SIZE
        connection = (
            CONNECTION_BYTES + self.max_head_bytes + max(self.max_page_bytes, JSON_OBJECT_BYTES * self.max_item_bytes)
        )
        return (
            BASELINE_RSS_BYTES
            + BODY_COPIES * self.max_body_bytes_in_flight
            + EDGE_MAP_BYTES_PER_PIXEL * self.max_pixels_in_flight
            # Built on the store's threads, one more serialized on the loop; a page reads one item past its bytes.
            + (page_builders + 1) * JSON_OBJECT_BYTES * (self.max_page_bytes + self.max_item_bytes)
            + (self.max_connections + PROBE_CONNECTIONS) * connection
        )
