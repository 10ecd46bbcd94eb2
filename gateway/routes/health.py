"""Liveness, readiness and metrics: what load balancers, ECS and Prometheus poll."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from gateway.deps import InferenceDep, MetricsDep, StoreDep
from gateway.items import StoreUnavailable

router = APIRouter(tags=["health"])
# Metrics may sit behind the API keys (GATEWAY_PROTECT_METRICS); probes stay open for load balancers.
metrics_router = APIRouter(tags=["health"])


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
    responses={503: {"model": Readiness, "description": "a component is not ready; `components` says which"}},
)
async def readyz(inference: InferenceDep, store: StoreDep) -> JSONResponse:
    components = await inference.readiness()
    try:
        await store.ping()
        components["items"] = "ready"
    except StoreUnavailable as exc:
        components["items"] = f"unavailable: {exc}"
    ready = all(state == "ready" for state in components.values())
    body = Readiness(status="ready" if ready else "not ready", components=components)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@metrics_router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})  # fmt: skip
async def metrics(metrics: MetricsDep) -> Response:
    payload, content_type = metrics.exposition()
    return Response(payload, media_type=content_type)
