"""The app factory: settings in, a FastAPI app out, with its Triton channel and item store opened once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.auth import load_keys, require_api_key
from gateway.errors import install_error_handlers
from gateway.images import Admission
from gateway.inference import Inference, TritonClient, connect
from gateway.items import open_item_store
from gateway.items.store import ItemStoreError
from gateway.loop_lag import LoopLag
from gateway.observability import Metrics, ObservabilityMiddleware
from gateway.routes import health, images, items, models, ui
from gateway.settings import MiB, Settings
from gateway.tracing import start_tracing

DESCRIPTION = """
REST in front of NVIDIA Triton. The compute-heavy routes (`/v1/classify`, `/v1/edges`) decode the image on the
CPU and send it over gRPC to Triton, which runs the models (ONNX) and batches concurrent requests on the
GPU. `/v1/items` is plain CRUD on SQLite or DynamoDB and never waits behind inference.

Every error has the same JSON shape: `{"error": {"code": "...", "message": "..."}}`.
"""

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, triton_client: Callable[[Settings], TritonClient] = connect
) -> FastAPI:
    """``triton_client`` is the seam for in-process tests: a stand-in with the same interface."""
    settings = settings or Settings()
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
        metrics.watch("inference_slots", lambda: app.state.inference.inflight)
        metrics.watch("pixels", lambda: app.state.admission.pixels)
        try:
            async with loop_lag.watching():
                yield
        finally:
            await app.state.inference.close()
            await app.state.items.close()
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
    install_error_handlers(app)
    app.add_exception_handler(ItemStoreError, items.store_error_handler(settings.retry_after_s))
    # Only where keys are configured: the OpenAPI document then declares the key schemes exactly when they apply.
    protected = [Depends(require_api_key)] if app.state.api_keys else []
    app.include_router(health.router)
    app.include_router(health.metrics_router, dependencies=protected if settings.protect_metrics else [])
    app.include_router(images.router, dependencies=protected)
    app.include_router(models.router, dependencies=protected)
    if settings.triton_metrics_url:
        app.include_router(models.triton_metrics_router, dependencies=protected if settings.protect_metrics else [])
    app.include_router(items.router, dependencies=protected)
    app.include_router(ui.router)
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
