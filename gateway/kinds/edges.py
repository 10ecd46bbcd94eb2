"""Edge detection: ``POST /v1/edges`` runs the ``edges`` ensemble (``GATEWAY_EDGES_MODEL``): the file's bytes,
decoded at full resolution inside Triton, and cv2.Canny's parameters as optional tensors (``servables.edges``);
the answer is the edge map (``EDGES``, a byte per pixel), sent as a PNG or summarised."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from tritonclient.grpc import model_config_pb2

from gateway.deps import ServingDep
from gateway.errors import ApiError, Error
from gateway.inference import PROBE_IMAGE, Inference, Output, encoded, while_client_waits
from gateway.kinds import Kind
from gateway.kinds.image_route import errors, image_body
from gateway.settings import Settings
from servables import edges as detector
from servables import names
from servables.configs import APERTURE_SIZES, MAX_BLUR, MAX_THRESHOLD

router = APIRouter(prefix="/v1", tags=["inference"])


@dataclass(frozen=True)
class CannyParameters:
    """cv2.Canny's parameters, and the grayscale/blur option, as the edge detector takes them."""

    low: float = 100.0
    high: float = 200.0
    aperture_size: int = 3
    l2_gradient: bool = False
    gray: bool = False
    blur: int = 0

    def tensors(self) -> dict[str, np.ndarray]:
        return {
            names.LOW: np.array([[self.low]], np.float32),
            names.HIGH: np.array([[self.high]], np.float32),
            names.APERTURE_SIZE: np.array([[self.aperture_size]], np.int32),
            names.L2_GRADIENT: np.array([[self.l2_gradient]], np.bool_),
            names.GRAY: np.array([[self.gray]], np.bool_),
            names.BLUR: np.array([[self.blur]], np.int32),
        }


async def edge_map(inference: Inference, model: str, data: bytes, parameters: CannyParameters) -> np.ndarray:
    """The file's bytes as they came, decoded at full resolution by Triton: ``uint8 [H, W]``, 0 or 255."""
    inputs = {names.IMAGE: encoded(data), **parameters.tensors()}
    answer = await inference.infer(model, inputs, [Output(names.EDGE_MAP)], inference.settings.edges_timeout_s)
    return answer[names.EDGE_MAP][0]


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
    openapi_extra=image_body("file", multiple=False),
    responses={
        200: {
            "content": {"image/png": {}, "application/json": {"schema": EdgesSummary.model_json_schema()}},
            "description": "the edge map (PNG) or its summary (JSON)",
        },
        **errors(),
    },  # fmt: skip
)
async def edges(
    request: Request,
    serving: ServingDep,
    low: Annotated[float, Query(ge=0, le=MAX_THRESHOLD, description="cv2.Canny's threshold1 (hysteresis low)")] = 100.0,
    high: Annotated[
        float, Query(ge=0, le=MAX_THRESHOLD, description="cv2.Canny's threshold2 (hysteresis high)")
    ] = 200.0,
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
    inference = serving.inference
    async with serving.admission.received(request, max_files=1) as [upload]:
        async with inference.admitted():
            found = await while_client_waits(
                request, edge_map(inference, serving.settings.edges_model, upload.data, parameters)
            )
        # Inside the pixel budget: the map (a byte per pixel) and its PNG are what this request holds now.
        return await _edges_answer(found, format, low, high)


async def _edges_answer(found: np.ndarray, format: EdgesFormat, low: float, high: float) -> Response:
    if format is EdgesFormat.json:
        count = int(np.count_nonzero(found))
        summary = EdgesSummary(
            width=found.shape[1], height=found.shape[0], edge_pixels=count,
            edge_fraction=count / found.size, low=low, high=high,
        )  # fmt: skip
        return Response(summary.model_dump_json(), media_type="application/json")
    ok, png = await asyncio.to_thread(cv2.imencode, ".png", found)
    if not ok:
        raise ApiError(Error.INTERNAL, "the edge map could not be encoded")
    return Response(png.tobytes(), media_type="image/png")


def about(config: model_config_pb2.ModelConfig, settings: Settings) -> dict[str, Any]:
    """What ``GET /v1/models`` says of the edge detector: its route and the parameters it takes."""
    return {"route": "/v1/edges", "parameters": [name.lower() for name in detector.PARAMETERS]}


async def _probe(inference: Inference, model: str) -> object:
    return await edge_map(inference, model, PROBE_IMAGE, CannyParameters())


KIND = Kind(detector.KIND, router, lambda settings: settings.edges_model, _probe, about)
