"""bench.naive: the baseline service answers the same top-5 as the model run by hand on the same input."""

from __future__ import annotations

import asyncio

import cv2
import httpx
import numpy as np
import pytest
import skimage.data
import torch
import torchvision
from fastapi import FastAPI

from bench.naive import create_naive_app


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    """A real photograph (scikit-image's astronaut, 512x512), JPEG-encoded."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_naive_app("resnet18", "seed:0")


def _post(app: FastAPI, body: bytes) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://naive") as client:
            return await client.post("/v1/classify", content=body, headers={"content-type": "image/jpeg"})

    return asyncio.run(call())


def _by_hand(image_bgr: np.ndarray) -> torch.Tensor:
    """The spec written out again: shorter side 256 (INTER_LINEAR), centre 224, RGB, /255, mean/std."""
    height, width = image_bgr.shape[:2]
    scale = 256 / min(height, width)
    resized = cv2.resize(image_bgr, (int(width * scale), int(height * scale)), interpolation=cv2.INTER_LINEAR)
    top, left = (resized.shape[0] - 224) // 2, (resized.shape[1] - 224) // 2
    rgb = resized[top : top + 224, left : left + 224, ::-1].astype(np.float32) / 255
    normalised = (rgb - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))[None]


def test_classify_matches_softmax_on_the_same_preprocessing(app: FastAPI, jpeg: bytes) -> None:
    response = _post(app, jpeg)
    assert response.status_code == 200
    body = response.json()
    predictions = body["predictions"]
    assert body["model"] == "resnet18" and len(predictions) == 5

    torch.manual_seed(0)  # the project's seed:0 weights
    model = torchvision.models.get_model("resnet18", weights=None, num_classes=1000).eval()
    with torch.no_grad():
        reference = torch.softmax(model(_by_hand(cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1))), dim=1)[0]
    scores, indices = reference.topk(5)

    labels = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert [p["index"] for p in predictions] == indices.tolist()
    assert [p["label"] for p in predictions] == [labels[i] for i in indices.tolist()]
    np.testing.assert_allclose([p["score"] for p in predictions], scores.numpy(), rtol=1e-5)
    ordered = [p["score"] for p in predictions]
    assert ordered == sorted(ordered, reverse=True) and 0 < sum(ordered) <= 1


@pytest.mark.parametrize("body", [b"not a jpeg", b""])
def test_a_body_that_is_not_an_image_is_refused(app: FastAPI, body: bytes) -> None:
    response = _post(app, body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_image"
