"""Classification: every classifier Triton serves, through one contract.

Routes: ``POST /v1/models/{name}/classify`` for any classifier, ``POST /v1/classify`` and ``/v1/classify/batch`` for
the default one (``GATEWAY_CLASSIFY_MODEL``, ``classify``). A classifier is an ensemble whose config says
``kind: classification`` (``servables.classification``); it takes the file's bytes as ``IMAGE`` and answers the
top k of ``PROBABILITIES`` through Triton's classification extension, and ``MODEL_ID``: the version and weights of
the network that ran, which every answer reports. ``model_version`` pins the network's version.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from tritonclient.grpc import model_config_pb2

from gateway.deps import Serving, ServingDep
from gateway.errors import ApiError, Error
from gateway.images import Upload
from gateway.inference import PROBE_IMAGE, Inference, Output, encoded, while_client_waits
from gateway.kinds import Kind
from gateway.kinds.image_route import ImageInfo, errors, image_body, image_info
from gateway.settings import Settings
from servables import names
from servables.classification import KIND as CLASSIFICATION
from servables.classification import Identity, Served, parse_predictions

router = APIRouter(prefix="/v1", tags=["inference"])
MAX_TOP_K = 20


class Prediction(BaseModel):
    label: str = Field(examples=["tabby"])
    index: int = Field(ge=0, examples=[281])
    probability: float = Field(ge=0, le=1, examples=[0.8731])


class ClassifyResponse(BaseModel):
    model: str = Field(description="the classifier that answered", examples=["classify"])
    model_version: str = Field(description="the version of its network that ran", examples=["2"])
    weights: str = Field(description="what that version learnt, as exported", examples=["imagenet:IMAGENET1K_V2"])
    image: ImageInfo
    predictions: list[Prediction] = Field(description="top-k, most probable first; softmax over all classes")


class ClassifyBatchItem(ClassifyResponse):
    filename: str


class ClassifyBatchResponse(BaseModel):
    results: list[ClassifyBatchItem] = Field(description="one per uploaded file, in upload order")


async def served(inference: Inference, name: str) -> Served:
    """The classifier ``name`` as Triton serves it: 404 when Triton has no such classifier, 503 while it is not
    loaded (or Triton is away)."""
    try:
        classifier = await inference.derived(name, Served.of)
    except ApiError as error:
        if error.error is not Error.TRITON_UNAVAILABLE:
            raise
        listed = [model for model in await inference.index() if model["name"] == name]
        if not listed:
            raise ApiError(Error.MODEL_NOT_FOUND, f"Triton serves no classifier {name!r}: GET /v1/models lists "
                           "them (kind classification)") from None  # fmt: skip
        raise ApiError(Error.TRITON_UNAVAILABLE, f"{name!r} is not loaded: POST /v1/admin/models/{name}/load "
                       "loads it", error.headers) from None  # fmt: skip
    if classifier is None:
        raise ApiError(Error.MODEL_NOT_FOUND, f"{name!r} is not a classifier: GET /v1/models lists them (kind "
                       "classification)")  # fmt: skip
    return classifier


async def classify(inference: Inference, name: str, data: bytes, top_k: int, version: str = "") -> dict[str, Any]:
    """The file's bytes as they came (Triton decodes them at the scale the classifier needs); the answer names the
    classifier, and the network version and weights that produced it."""
    classifier = await served(inference, name)
    outputs = [Output(names.PROBABILITIES, class_count=top_k), Output(names.MODEL_ID)]  # Triton caps k at its classes
    inputs, timeout_s = {names.IMAGE: encoded(data)}, inference.settings.classify_timeout_s
    if version:
        answer = await inference.infer_pinned(classifier.steps, inputs, outputs, timeout_s, version)
    else:
        answer = await inference.infer(name, inputs, outputs, timeout_s)
    identity = Identity.decode(answer[names.MODEL_ID].reshape(-1)[0])
    return {
        "model": name,
        "model_version": identity.version,
        "weights": identity.weights,
        "predictions": [vars(p) for p in parse_predictions(answer[names.PROBABILITIES].reshape(-1))],
    }


def _answer(upload: Upload, result: dict[str, Any]) -> dict[str, Any]:
    named = {key: result[key] for key in ("model", "model_version", "weights")}
    return {**named, "image": image_info(upload), "predictions": result["predictions"]}


TopK = Annotated[int, Query(ge=1, le=MAX_TOP_K, description="how many classes to return (at most the classifier's)")]
ModelVersion = Annotated[
    str,
    Query(
        pattern=r"^[1-9][0-9]{0,8}$", description="run this version of the network (GET /v1/models); default: latest"
    ),
]
ClassifierName = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="a classifier: GET /v1/models lists them (kind classification)"
    ),
]
_DESCRIPTION = (
    "Send the image as the raw body (`Content-Type: image/jpeg`, `image/png`, `image/webp`, `image/bmp`, "
    "`image/tiff`) or as a multipart upload in the field `file`. EXIF orientation is honoured; grayscale and RGBA "
    "images are converted to 3 channels. The answer names the network version and weights that ran."
)


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    summary="Classify one image with the default classifier (dynamically batched on Triton)",
    description=_DESCRIPTION,
    openapi_extra=image_body("file", multiple=False),
    responses=errors(Error.MODEL_VERSION_NOT_FOUND),
)
async def classify_default(
    request: Request, serving: ServingDep, top_k: TopK = 5, model_version: ModelVersion = ""
) -> Any:
    return await _classify_one(request, serving, serving.settings.classify_model, top_k, model_version)


@router.post(
    "/models/{name}/classify",
    response_model=ClassifyResponse,
    summary="Classify one image with the classifier of that name",
    description=_DESCRIPTION,
    openapi_extra=image_body("file", multiple=False),
    responses=errors(Error.MODEL_NOT_FOUND, Error.MODEL_VERSION_NOT_FOUND),
)
async def classify_named(
    request: Request, serving: ServingDep, name: ClassifierName, top_k: TopK = 5, model_version: ModelVersion = ""
) -> Any:
    return await _classify_one(request, serving, name, top_k, model_version)


async def _classify_one(request: Request, serving: Serving, name: str, top_k: int, version: str) -> Any:
    inference = serving.inference
    # The body first, then an inference slot: a slow client holds only the bytes it sent, not capacity.
    async with serving.admission.received(request, max_files=1) as [upload], inference.admitted():
        result = await while_client_waits(request, classify(inference, name, upload.data, top_k, version))
    return JSONResponse(_answer(upload, result))


@router.post(
    "/classify/batch",
    response_model=ClassifyBatchResponse,
    summary="Classify several images with the default classifier; each is its own Triton request, so Triton "
    "batches them",
    openapi_extra=image_body("files", multiple=True),
    responses=errors(),
)
async def classify_batch(request: Request, serving: ServingDep, top_k: TopK = 5) -> Any:
    inference, settings = serving.inference, serving.settings
    received = serving.admission.received(request, max_files=settings.max_batch_images)
    async with received as uploads, inference.admitted():
        calls = (classify(inference, settings.classify_model, upload.data, top_k) for upload in uploads)
        results = await while_client_waits(request, asyncio.gather(*calls))
    answers = [
        {"filename": upload.name, **_answer(upload, result)} for upload, result in zip(uploads, results, strict=True)
    ]
    return JSONResponse({"results": answers})


def about(config: model_config_pb2.ModelConfig, settings: Settings) -> dict[str, Any]:
    """What ``GET /v1/models`` says of a classifier: its labels count, preprocessing, network and routes."""
    classifier = Served.of(config)
    assert classifier is not None  # kind_of() found its kind parameter
    spec = classifier.spec
    return {
        "labels": classifier.classes,
        "preprocessing": {
            "resize": spec.resize,
            "crop": spec.crop,
            "interpolation": spec.interpolation,
            "mean": list(spec.mean),
            "std": list(spec.std),
        },
        "network": classifier.network,
        "pixels": classifier.pixels,
        "route": f"/v1/models/{classifier.name}/classify",
        "default": classifier.name == settings.classify_model,
    }


async def _probe(inference: Inference, model: str) -> object:
    return await classify(inference, model, PROBE_IMAGE, 1)


KIND = Kind(CLASSIFICATION, router, lambda settings: settings.classify_model, _probe, about)
