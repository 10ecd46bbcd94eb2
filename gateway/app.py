"""The app factory: settings in, a FastAPI app out, with its Triton channel and item store opened once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.auth import Gate, key_schemes, load_keys
from gateway.errors import install_error_handlers
from gateway.images import Admission
from gateway.inference import Inference, TritonClient, connect
from gateway.items import open_item_store
from gateway.items.store import ItemStoreError
from gateway.loop_lag import LoopLag
from gateway.memory import freeze_startup_objects, keep_freed_memory
from gateway.observability import Metrics, ObservabilityMiddleware, TritonMetrics
from gateway.routes import health, images, items, models, ui
from gateway.settings import MiB, Settings
from gateway.tracing import start_tracing
from gateway.uploads import BodyIntake, BodyRefused, answer_refusal

DESCRIPTION = """
REST in front of NVIDIA Triton. The compute-heavy routes (`/v1/classify`, `/v1/edges`) check the image's header
and forward its encoded bytes over gRPC to Triton, which decodes them (on the GPU where there is one), runs the
models (ONNX) and batches concurrent requests. `/v1/items` is plain CRUD on SQLite or DynamoDB and never waits
behind inference.

Every error has the same JSON shape: `{"error": {"code": "...", "message": "..."}}`.
"""

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, triton_client: Callable[[Settings], TritonClient] = connect
) -> FastAPI:
    """``triton_client`` is the seam for in-process tests: a stand-in with the same interface."""
    settings = settings or Settings()
    keep_freed_memory()  # process-wide, like the metrics' switch below: set where the app is built
    metrics = Metrics.create()
    metrics.implied_peak_rss.set(settings.peak_rss_bytes)
    log.info("settings imply a peak RSS of %d MiB per process", settings.peak_rss_bytes // MiB)
    tracing = start_tracing(settings.otlp_endpoint, settings.trace_probes)
    loop_lag = LoopLag(metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.inference = Inference(settings, metrics, triton_client(settings), tracing)
        app.state.items = await open_item_store(settings)
        app.state.admission = Admission.from_settings(settings)
        if settings.triton_metrics_url:
            app.state.triton_metrics = TritonMetrics(settings.triton_metrics_url, settings.triton_metrics_timeout_s)
        metrics.watch("inference_slots", lambda: app.state.inference.inflight)
        metrics.watch("pixels", lambda: app.state.admission.pixels)
        freeze_startup_objects()
        try:
            async with loop_lag.watching():
                yield
        finally:
            await app.state.inference.close()
            await app.state.items.close()
            if settings.triton_metrics_url:
                await app.state.triton_metrics.close()
            if tracing:
                tracing.close()

    app = FastAPI(
        title="tritonserve gateway",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by gateway.routes.ui from installed packages instead of FastAPI's CDN links: works offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.api_keys = load_keys(settings)
    if not app.state.api_keys and settings.host not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "no API key is configured: model control (/v1/admin) is open to clients on this host only, and a proxy "
            "on this host that sends no X-Forwarded-For, Forwarded or X-Real-IP makes every client it forwards look "
            "local; set GATEWAY_API_KEYS"
        )
    install_error_handlers(app)
    app.add_exception_handler(ItemStoreError, items.store_error_handler(settings.retry_after_s))
    app.add_exception_handler(BodyRefused, answer_refusal)
    # Only where keys are configured: the OpenAPI document then declares the key schemes exactly when they apply.
    # gateway.auth.Gate checks the keys, before any route (and its body) is read.
    protected = [Depends(key_schemes)] if app.state.api_keys else []
    app.include_router(health.router)
    app.include_router(health.metrics_router, dependencies=protected if settings.protect_metrics else [])
    for router in images.routers:
        app.include_router(router, dependencies=protected)
    app.include_router(models.router, dependencies=protected)
    if settings.triton_metrics_url:
        app.include_router(health.triton_metrics_router, dependencies=protected if settings.protect_metrics else [])
    app.include_router(items.router, dependencies=protected)
    app.include_router(ui.router)
    # Innermost first: every body through the one reader; who may call what, from the head; then the request's
    # id, log line and metrics, which count what the two refuse too.
    app.add_middleware(BodyIntake, pace=settings.pace)
    app.add_middleware(Gate, keys=app.state.api_keys, protect_metrics=settings.protect_metrics)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, tracing=tracing)
    if settings.cors_origins:
        # Outermost, so preflights are answered before anything else; the headers a browser client needs to see.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID", "If-Match", "Idempotency-Key"],
            expose_headers=["X-Request-ID", "Retry-After", "ETag", "Location"],
        )
    return app
