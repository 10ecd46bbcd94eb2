"""The model kinds the gateway serves, one contract module each (``classification``, ``edges``).

A contract owns, for its kind: the routes and their OpenAPI (request parameters, answer schema, errors), the
Triton tensors it sends and how it reads the answer, its limits, the model its fixed routes call and how to probe
it for readiness, and what ``GET /v1/models`` says of each of its models (the entry point's ``kind`` parameter
names the kind). The gateway derives its inference routes (``gateway.routes.images``), its readiness
(``Inference.readiness``) and the page's choices (``GET /v1/models``) from the modules found here: a new kind is a
module in this package that defines ``KIND``, and the export that writes its models; nothing else in the gateway.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from tritonclient.grpc import model_config_pb2

from gateway.settings import Settings

if TYPE_CHECKING:
    from gateway.inference import Inference


@dataclass(frozen=True)
class Kind:
    name: str  # the ``kind`` parameter its entry points carry in their configs
    router: APIRouter
    model: Callable[[Settings], str]  # the model its fixed routes call, which readiness probes
    probe: Callable[[Inference, str], Awaitable[object]]  # one tiny inference of that model; raises ApiError
    about: Callable[[model_config_pb2.ModelConfig, Settings], dict[str, Any]]  # for GET /v1/models


@cache
def kinds() -> tuple[Kind, ...]:
    """Every contract module of this package (those defining ``KIND``), imported on first use."""
    found = []
    for module in pkgutil.iter_modules(__path__):
        kind = getattr(importlib.import_module(f"{__name__}.{module.name}"), "KIND", None)
        if isinstance(kind, Kind):
            found.append(kind)
    return tuple(sorted(found, key=lambda kind: kind.name))


def kind_of(config: model_config_pb2.ModelConfig) -> Kind | None:
    """The kind whose entry point this config is, from its ``kind`` parameter; None for every other model."""
    named = config.parameters["kind"].string_value if "kind" in config.parameters else None
    return next((kind for kind in kinds() if kind.name == named), None)
