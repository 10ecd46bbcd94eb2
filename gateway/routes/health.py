"""Liveness, readiness and metrics: what load balancers, ECS and Prometheus poll."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from gateway.auth import trusted
from gateway.deps import ApiKeysDep, InferenceDep, MetricsDep, StoreDep, TritonMetricsDep
from gateway.errors import Error, error_responses
from gateway.items import StoreUnavailable

router = APIRouter(tags=["health"])
# Metrics may sit behind the API keys (GATEWAY_PROTECT_METRICS); probes stay open for load balancers.
metrics_router = APIRouter(tags=["health"])
# Beside /metrics, behind the same keys; only there when Triton's metrics URL is set.
triton_metrics_router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    components: dict[str, str]


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Triton, its models and the item store are ready",
    description="Why a component is not ready (Triton's error, which names its address) is shown to callers on "
    "the gateway's own host or with an API key; others see only `not ready` or `unavailable`.",
    responses={503: {"model": Readiness, "description": "a component is not ready; `components` says which"}},
)
async def readyz(request: Request, inference: InferenceDep, store: StoreDep, keys: ApiKeysDep) -> JSONResponse:
    components = await inference.readiness()
    try:
        await store.ping()
        components["items"] = "ready"
    except StoreUnavailable as exc:
        components["items"] = f"unavailable: {exc}"
    ready = all(state == "ready" for state in components.values())
    if not trusted(request, keys):
        components = {name: _summary(state) for name, state in components.items()}
    body = Readiness(status="ready" if ready else "not ready", components=components)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _summary(state: str) -> str:
    """A component's state without the reason ("unavailable: <gRPC error naming Triton's address>")."""
    return state.split(":", 1)[0]


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})  # fmt: skip
async def metrics(metrics: MetricsDep) -> Response:
    payload, content_type = metrics.exposition()
    return Response(payload, media_type=content_type)


@triton_metrics_router.get("/metrics/triton", summary="Triton's own Prometheus metrics, passed through",
    response_class=Response, responses={200: {"content": {"text/plain": {}}},
    **error_responses(Error.UNAUTHORIZED, Error.TRITON_UNAVAILABLE, Error.TRITON_ERROR)})  # fmt: skip
async def triton_metrics(triton_metrics: TritonMetricsDep) -> Response:
    return Response(await triton_metrics.get(), media_type="text/plain; version=0.0.4; charset=utf-8")
