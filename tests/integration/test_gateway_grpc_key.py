"""The gateway in front of a Triton started as the ECS task's opt-in gRPC endpoint starts it (``--grpc-restricted-
protocol``, ``deploy/ecs/grpc_endpoint.py``): without ``GATEWAY_TRITON_GRPC_KEY`` every call it makes is refused and
``/readyz`` says why; with it, every call goes through (inference, the framed path, model config, the repository
index, model control)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from deploy.ecs.grpc_endpoint import restricted_protocol_flag
from gateway.triton_wire import FRAME_OFF_LOOP_BYTES
from launcher.triton import TritonServer
from servables import names
from tests.support.stack import Gateway, running_triton

KEY = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def keyed_triton(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(test_repository, tmp_path_factory, (restricted_protocol_flag(KEY),)) as server:
        yield server


def _jpeg(photo: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", photo)[1].tobytes()


def _framed_jpeg() -> bytes:
    """A JPEG over the size from which the gateway frames the gRPC message itself (``gateway.triton_wire``)."""
    noise = np.random.default_rng(0).integers(0, 256, (900, 1200, 3), np.uint8)
    data = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert len(data) >= FRAME_OFF_LOOP_BYTES
    return data


def test_without_the_key_the_gateway_is_refused_and_says_why(
    gateway_factory: Callable[..., Gateway], keyed_triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    gateway = gateway_factory(GATEWAY_TRITON_URL=keyed_triton.grpc_url)
    ready = httpx.get(f"{gateway.url}/readyz", timeout=30)
    assert ready.status_code == 503
    components = ready.json()["components"]
    assert components["triton"] == "ready"  # health stays open: Triton is up, the gateway's calls are refused
    for model in (names.CLASSIFY, names.EDGES):
        assert "GATEWAY_TRITON_GRPC_KEY" in components[model], components
    headers = {"Content-Type": "image/jpeg"}
    answer = httpx.post(f"{gateway.url}/v1/classify", content=_jpeg(photos["coffee"]), headers=headers, timeout=30)
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "triton_unavailable"
    assert "GATEWAY_TRITON_GRPC_KEY" in answer.json()["error"]["message"]
    assert httpx.get(f"{gateway.url}/v1/models", timeout=30).status_code == 503


def test_with_the_key_every_call_goes_through(
    gateway_factory: Callable[..., Gateway], keyed_triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    gateway = gateway_factory(GATEWAY_TRITON_URL=keyed_triton.grpc_url, GATEWAY_TRITON_GRPC_KEY=KEY)
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.json()
        headers = {"Content-Type": "image/jpeg"}
        for image in (_jpeg(photos["coffee"]), _framed_jpeg()):
            classified = client.post("/v1/classify?top_k=3", content=image, headers=headers)
            assert classified.status_code == 200, classified.json()
            assert len(classified.json()["predictions"]) == 3
        edges = client.post("/v1/edges", content=_jpeg(photos["coffee"]), headers=headers)
        assert edges.status_code == 200 and edges.headers["content-type"] == "image/png"
        listed = {model["name"]: model for model in client.get("/v1/models").json()["models"]}
        assert listed[names.CLASSIFY]["kind"] == "classification"  # its config, read with the key
        unloaded = client.post(f"/v1/admin/models/{names.CANNY}/unload")
        assert unloaded.status_code == 200 and not unloaded.json()["ready"], unloaded.json()
        loaded = client.post(f"/v1/admin/models/{names.CANNY}/load")
        assert loaded.status_code == 200 and loaded.json()["ready"], loaded.json()
    assert KEY not in gateway.log()  # the key is sent, never written down
