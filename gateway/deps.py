"""Typed dependencies: what a route needs, taken from the app's state (built once in the lifespan).

``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request
for a getattr (one item GET at a time: 705 req/s that way, 1,100 without).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.inference import Inference
from gateway.observability import Metrics
from gateway.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_inference(request: Request) -> Inference:
    return request.app.state.inference


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
InferenceDep = Annotated[Inference, Depends(get_inference)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
