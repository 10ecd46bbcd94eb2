"""The compute-heavy routes: classification (ResNet ensemble) and edge detection, both run by Triton."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.deps import AdmissionDep, InferenceDep, SettingsDep
from gateway.errors import ApiError, Error, error_responses
from gateway.images import Upload
from gateway.inference import CannyParameters, Classification, while_client_waits
from imaging.header import MEDIA_TYPES as IMAGE_MEDIA_TYPES
from servables.configs import APERTURE_SIZES, MAX_BLUR

router = APIRouter(prefix="/v1", tags=["inference"])


def _image_body(multipart_field: str, multiple: bool) -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    field = {"type": "array", "items": binary} if multiple else binary
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {multipart_field: field},
                "required": [multipart_field],
            }
        }
    }
    if not multiple:
        content |= {media: {"schema": binary} for media in IMAGE_MEDIA_TYPES}
    return {"requestBody": {"required": True, "content": content}}


_ERRORS = error_responses(
    Error.UNAUTHORIZED,
    Error.PAYLOAD_TOO_LARGE,
    Error.IMAGE_TOO_LARGE,
    Error.UNSUPPORTED_MEDIA_TYPE,
    Error.UNSUPPORTED_IMAGE,
    Error.REQUEST_TIMEOUT,
    Error.INVALID_REQUEST,
    Error.IMAGE_TOO_COMPLEX,
    Error.EMPTY_IMAGE,
    Error.CORRUPT_IMAGE,
    Error.ANIMATED_IMAGE,
    Error.IMAGE_TOO_SMALL,
    Error.BAD_ASPECT_RATIO,
    Error.INVALID_IMAGE,
    Error.MALFORMED_MULTIPART,
    Error.MISSING_FILE,
    Error.OVERLOADED,
    Error.TRITON_QUEUE_FULL,
    Error.TRITON_ERROR,
    Error.TRITON_UNAVAILABLE,
    Error.TRITON_SHARED_MEMORY_FULL,
    Error.CANCELLED,
    Error.DEADLINE_EXCEEDED,
)


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str = Field(examples=["JPEG"])


class Prediction(BaseModel):
    label: str = Field(examples=["tabby"])
    index: int = Field(ge=0, examples=[281])
    probability: float = Field(ge=0, le=1, examples=[0.8731])


class ClassifyResponse(BaseModel):
    model: str = Field(description="the Triton model that answered", examples=["classify"])
    model_version: str = Field(examples=["1"])
    weights: str = Field(description="what the ResNet learnt, as exported", examples=["imagenet:IMAGENET1K_V2"])
    image: ImageInfo
    predictions: list[Prediction] = Field(description="top-k, most probable first; softmax over all classes")


class ClassifyBatchItem(ClassifyResponse):
    filename: str


class ClassifyBatchResponse(BaseModel):
    results: list[ClassifyBatchItem] = Field(description="one per uploaded file, in upload order")


def _answer(upload: Upload, result: Classification) -> dict[str, Any]:
    width, height = upload.header.oriented_size  # as classified: after EXIF orientation
    return {
        "model": result.model,
        "model_version": result.model_version,
        "weights": result.weights,
        "image": {"width": width, "height": height, "format": upload.header.format},
        "predictions": [vars(p) for p in result.predictions],
    }


TopK = Annotated[int, Query(ge=1, le=20, description="how many classes to return")]
ModelVersion = Annotated[
    str, Query(pattern=r"^[1-9][0-9]{0,8}$", description="run this ResNet version (GET /v1/models); default: latest")
]


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    summary="Classify one image (ResNet on Triton, dynamically batched)",
    description="Send the image as the raw body (`Content-Type: image/jpeg`, `image/png`, `image/webp`, "
    "`image/bmp`, `image/tiff`) or as a multipart upload in the field `file`. EXIF orientation is honoured; "
    "grayscale and RGBA images are converted to 3 channels.",
    openapi_extra=_image_body("file", multiple=False),
    responses=_ERRORS,
)
async def classify(
    request: Request,
    inference: InferenceDep,
    admission: AdmissionDep,
    top_k: TopK = 5,
    model_version: ModelVersion = "",
) -> Any:
    # The body first, then an inference slot: a slow client holds only the bytes it sent, not capacity.
    async with admission.received(request, max_files=1) as [upload], inference.admitted():
        return _answer(upload, await while_client_waits(request, inference.classify(upload.data, top_k, model_version)))


@router.post(
    "/classify/batch",
    response_model=ClassifyBatchResponse,
    summary="Classify several images; each is its own Triton request, so Triton batches them",
    openapi_extra=_image_body("files", multiple=True),
    responses=_ERRORS,
)
async def classify_batch(
    request: Request, inference: InferenceDep, admission: AdmissionDep, settings: SettingsDep, top_k: TopK = 5
) -> Any:
    async with admission.received(request, max_files=settings.max_batch_images) as uploads, inference.admitted():
        classified = asyncio.gather(*(inference.classify(upload.data, top_k) for upload in uploads))
        results = await while_client_waits(request, classified)
    return {
        "results": [
            {"filename": upload.name, **_answer(upload, result)}
            for upload, result in zip(uploads, results, strict=True)
        ]
    }


class EdgesFormat(StrEnum):
    png = "png"
    json = "json"


class EdgesSummary(BaseModel):
    width: int
    height: int
    edge_pixels: int = Field(description="pixels marked as edges (255 in the PNG)")
    edge_fraction: float
    low: float
    high: float


@router.post(
    "/edges",
    summary="Edge map of one image: cv2.Canny as an ONNX model on Triton",
    description="The same upload rules as `/v1/classify`. By default exactly `cv2.Canny(image, low, high)` on the "
    "colour image (OpenCV's per-pixel strongest channel, no blur); `gray=true&blur=5` is a grayscale, blurred "
    "variant. Answers a black-and-white PNG of the image's size, or with `format=json` a summary.",
    openapi_extra=_image_body("file", multiple=False),
    responses={
        200: {
            "content": {"image/png": {}, "application/json": {"schema": EdgesSummary.model_json_schema()}},
            "description": "the edge map (PNG) or its summary (JSON)",
        },
        **_ERRORS,
    },  # fmt: skip
)
async def edges(
    request: Request,
    inference: InferenceDep,
    admission: AdmissionDep,
    low: Annotated[float, Query(ge=0, le=10_000, description="cv2.Canny's threshold1 (hysteresis low)")] = 100.0,
    high: Annotated[float, Query(ge=0, le=10_000, description="cv2.Canny's threshold2 (hysteresis high)")] = 200.0,
    aperture_size: Annotated[int, Query(description="Sobel aperture: 3, 5 or 7 (cv2.Canny's apertureSize)")] = 3,
    l2_gradient: Annotated[bool, Query(description="L2 gradient magnitude (cv2.Canny's L2gradient)")] = False,
    gray: Annotated[bool, Query(description="convert to grayscale first (else OpenCV's colour gradient)")] = False,
    blur: Annotated[int, Query(ge=0, le=MAX_BLUR, description="Gaussian blur size first: 0 (none) or odd")] = 0,
    format: Annotated[EdgesFormat, Query(description="png (default) or json")] = EdgesFormat.png,
) -> Response:
    if low > high:
        raise ApiError(Error.INVALID_REQUEST, f"low ({low:g}) must not exceed high ({high:g})")
    if aperture_size not in APERTURE_SIZES:
        raise ApiError(Error.INVALID_REQUEST, f"aperture_size must be 3, 5 or 7, not {aperture_size}")
    if blur and blur % 2 == 0:
        raise ApiError(Error.INVALID_REQUEST, f"blur must be 0 or odd, not {blur}")
    parameters = CannyParameters(low, high, aperture_size, l2_gradient, gray, blur)
    async with admission.received(request, max_files=1) as [upload]:
        async with inference.admitted():
            edge_map = await while_client_waits(request, inference.edges(upload.data, parameters))
        # Inside the pixel budget: the map (a byte per pixel) and its PNG are what this request holds now.
        return await _edges_answer(edge_map, format, low, high)


async def _edges_answer(edge_map: np.ndarray, format: EdgesFormat, low: float, high: float) -> Response:
    if format is EdgesFormat.json:
        count = int(np.count_nonzero(edge_map))
        summary = EdgesSummary(
            width=edge_map.shape[1], height=edge_map.shape[0], edge_pixels=count,
            edge_fraction=count / edge_map.size, low=low, high=high,
        )  # fmt: skip
        return Response(summary.model_dump_json(), media_type="application/json")
    ok, png = await asyncio.to_thread(cv2.imencode, ".png", edge_map)
    if not ok:
        raise ApiError(Error.INTERNAL, "the edge map could not be encoded")
    return Response(png.tobytes(), media_type="image/png")
