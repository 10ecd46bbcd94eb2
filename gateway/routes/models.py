"""What Triton serves and how to change it without a restart: models and versions, loads and unloads (Triton's
explicit model control, each logged with who asked)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel, Field
from tritonclient.utils import InferenceServerException

from gateway.auth import presented_key
from gateway.deps import InferenceDep, SettingsDep
from gateway.errors import ApiError, Error, error_responses
from gateway.inference import Inference, to_api_error
from gateway.kinds import kind_of
from gateway.settings import Settings

log = logging.getLogger("gateway.models")

router = APIRouter(prefix="/v1", tags=["models"])
# Model control: unloading a model stops every client's requests for it (gateway.auth.Gate guards /v1/admin).
admin = APIRouter(prefix="/admin")


class VersionState(BaseModel):
    version: str = Field(examples=["2"])
    state: str = Field(description="Triton's: READY, LOADING, UNLOADING, UNAVAILABLE", examples=["READY"])
    reason: str = Field("", description="why it is not ready, when Triton says")


class ModelState(BaseModel):
    name: str = Field(examples=["resnet50"])
    ready: bool = Field(description="at least one version is ready")
    versions: list[VersionState]
    kind: str | None = Field(
        None,
        description="for an entry point clients call: its kind (classification, edges); else null",
        examples=["classification"],
    )
    about: dict[str, Any] | None = Field(
        None,
        description="what the kind says of it: for a classifier its labels count, preprocessing, network (whose "
        "versions are listed under its own name), pixel entry point, route and whether /v1/classify calls it",
        examples=[{"labels": 1000, "preprocessing": {"resize": 256, "crop": 224, "interpolation": "linear",
                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, "network": "resnet50",
                   "pixels": "classify_pixels", "route": "/v1/models/classify/classify", "default": True}],
    )  # fmt: skip


class ModelsResponse(BaseModel):
    models: list[ModelState]


class Versions(BaseModel):
    versions: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1, description="version numbers (the repository's folder names)", examples=[[2]]
    )


ModelName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="a model of Triton's repository")]
OptionalVersions = Annotated[Versions | None, Body()]
_ERRORS = error_responses(Error.UNAUTHORIZED, Error.TRITON_UNAVAILABLE, Error.DEADLINE_EXCEEDED, Error.TRITON_ERROR)
_CONTROL_ERRORS = error_responses(
    Error.BAD_REQUEST,  # a body FastAPI cannot even parse (not UTF-8)
    Error.UNAUTHORIZED,
    Error.FORBIDDEN,
    Error.MODEL_NOT_FOUND,
    Error.MODEL_CONTROL_FAILED,
    Error.INVALID_REQUEST,
    Error.TRITON_UNAVAILABLE,
    Error.DEADLINE_EXCEEDED,
)


async def _index(inference: Inference) -> dict[str, ModelState]:
    """Triton's repository index, grouped by model, versions in order."""
    models: dict[str, ModelState] = {}
    for entry in await inference.index():
        model = models.setdefault(entry["name"], ModelState(name=entry["name"], ready=False, versions=[]))
        if "version" in entry:  # a model that never loaded has no version
            state = VersionState(version=entry["version"], state=entry.get("state", ""), reason=entry.get("reason", ""))
            model.versions.append(state)
            model.ready |= state.state == "READY"
    for model in models.values():
        model.versions.sort(key=lambda v: int(v.version) if v.version.isdigit() else 0)
    return dict(sorted(models.items()))


async def _known(inference: Inference, name: str) -> ModelState:
    models = await _index(inference)
    if name not in models:
        raise ApiError(Error.MODEL_NOT_FOUND, f"Triton's repository has no model {name!r}")
    return models[name]


async def _described(inference: Inference, name: str) -> ModelState:
    """The model as ``GET /v1/models`` lists it."""
    model = await _known(inference, name)
    if model.ready:
        await _describe(inference, inference.settings, model)
    return model


async def _control(inference: Inference, name: str, action: str, **options: Any) -> None:
    """Load or unload; Triton answers once the new versions are loaded and warmed up (or the load failed)."""
    call = inference.client.load_model if action == "load" else inference.client.unload_model
    try:
        await call(name, client_timeout=inference.settings.model_control_timeout_s, **options)
    except InferenceServerException as exc:
        status = exc.status() or ""
        if "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status:
            raise to_api_error(exc, inference.settings.retry_after_s) from None
        raise ApiError(Error.MODEL_CONTROL_FAILED, f"Triton could not {action} {name!r}: {exc.message()}") from None


async def _load_versions(inference: Inference, name: str, versions: list[int]) -> None:
    """Serve exactly ``versions``: the model's own config with a ``specific`` version policy. Triton loads the new
    set before it drops the old, and lets requests in flight on a dropped version finish."""
    try:
        config = (await inference.client.get_model_config(name, as_json=True, client_timeout=5.0))["config"]
    except InferenceServerException as exc:
        raise to_api_error(exc, inference.settings.retry_after_s) from None
    config["version_policy"] = {"specific": {"versions": sorted(set(versions))}}
    await _control(inference, name, "load", config=json.dumps(config))


async def _describe(inference: Inference, settings: Settings, model: ModelState) -> None:
    """The model's kind and what its kind says of it, from its config (a model not loaded has none to read)."""
    try:
        config = (await inference.client.get_model_config(model.name, client_timeout=5.0)).config
    except InferenceServerException:
        return  # unloaded meanwhile: listed without a kind
    if kind := kind_of(config):
        model.kind, model.about = kind.name, kind.about(config, settings)


@router.get(
    "/models",
    response_model=ModelsResponse,
    summary="Models and versions Triton serves; the classifiers among them, with their labels and preprocessing",
    responses=_ERRORS,
)
async def list_models(inference: InferenceDep, settings: SettingsDep) -> ModelsResponse:
    models = list((await _index(inference)).values())
    await asyncio.gather(*(_describe(inference, settings, model) for model in models if model.ready))
    return ModelsResponse(models=models)


def _caller(request: Request) -> str:
    """Who asked, for the log: the client's address, and which key (a fingerprint, never the key) if one came."""
    key = presented_key(request.headers)
    host = request.client.host if request.client else "unknown"
    return f"{host} with key sha256:{hashlib.sha256(key).hexdigest()[:12]}" if key else f"{host} (no key)"


async def _event(
    request: Request, action: str, name: str, body: Versions | None, change: Callable[[], Awaitable[ModelState]]
) -> ModelState:
    """One model-control event, logged when asked and when done (or refused), with who asked."""
    what = f"{action} {name}" + (f" versions {body.versions}" if body else "")
    who = _caller(request)
    log.info("model control: %s asked by %s", what, who)
    try:
        state = await change()
    except ApiError as error:
        log.warning("model control: %s asked by %s failed: %s %s", what, who, error.error.code, error.message)
        raise
    ready = [v.version for v in state.versions if v.state == "READY"]
    log.info("model control: %s asked by %s done: versions ready %s", what, who, ready or "none")
    return state


@admin.post(
    "/models/{name}/load",
    response_model=ModelState,
    summary="Load a model, or reload it to pick up new versions and its config",
    description="Without a body, Triton re-reads the model's folder and config and serves the versions its "
    'version policy names (every version folder, for the ResNet). With `{"versions": [...]}`, exactly those. '
    "Ensembles that use the model are reloaded with it; requests keep being served throughout.",
    responses=_CONTROL_ERRORS,
)
async def load(request: Request, inference: InferenceDep, name: ModelName, body: OptionalVersions = None) -> ModelState:
    return await _event(request, "load", name, body, lambda: _load(inference, name, body))


async def _load(inference: Inference, name: str, body: Versions | None) -> ModelState:
    await _known(inference, name)  # Triton's index lists unloaded models too
    inference.forget_configs()  # its kind, steps or labels may be new
    if body is None:
        await _control(inference, name, "load")
    else:
        await _load_versions(inference, name, body.versions)
    return await _described(inference, name)


@admin.post(
    "/models/{name}/unload",
    response_model=ModelState,
    summary="Unload a model, or only some of its versions",
    description='Without a body, the whole model (requests for it then get 503). With `{"versions": [...]}`, '
    "only those: the model is reloaded serving its other ready versions.",
    responses=_CONTROL_ERRORS,
)
async def unload(
    request: Request, inference: InferenceDep, name: ModelName, body: OptionalVersions = None
) -> ModelState:
    return await _event(request, "unload", name, body, lambda: _unload(inference, name, body))


async def _unload(inference: Inference, name: str, body: Versions | None) -> ModelState:
    model = await _known(inference, name)
    inference.forget_configs()
    if body is None:
        await _control(inference, name, "unload")
    else:
        ready = {int(v.version) for v in model.versions if v.state == "READY"}
        keep = ready - set(body.versions)
        if not keep:
            raise ApiError(Error.INVALID_REQUEST, f"that would leave {name!r} no version: unload it without a body")
        await _load_versions(inference, name, sorted(keep))
    return await _described(inference, name)


router.include_router(admin)  # after its routes: including copies them
