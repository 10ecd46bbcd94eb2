"""The ECS task's opt-in gRPC endpoint, locally: the local tritonserver with the flag the task definition renders
(``deploy/ecs/grpc_endpoint.py``) refuses a call without the key header and answers one with it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from deploy.ecs.grpc_endpoint import CLIENT_HEADER, restricted_protocol_flag
from launcher.triton import TritonServer
from servables import names
from tests.support.stack import running_triton

KEY = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def keyed_triton(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(test_repository, tmp_path_factory, (restricted_protocol_flag(KEY),)) as server:
        yield server


def _image(photos: dict[str, np.ndarray]) -> grpcclient.InferInput:
    data = np.frombuffer(cv2.imencode(".jpg", photos["coffee"])[1].tobytes(), np.uint8)[np.newaxis]
    image = grpcclient.InferInput(names.IMAGE, list(data.shape), "UINT8")
    image.set_data_from_numpy(data)
    return image


def test_a_call_without_the_key_is_refused(keyed_triton: TritonServer, photos: dict[str, np.ndarray]) -> None:
    client = grpcclient.InferenceServerClient(keyed_triton.grpc_url)
    for call in (
        lambda headers: client.infer(names.CLASSIFY, [_image(photos)], headers=headers),
        lambda headers: client.unload_model(names.CLASSIFY, headers=headers),
        lambda headers: client.get_model_config(names.CLASSIFY, headers=headers),
    ):
        for headers in (None, {CLIENT_HEADER: "not-the-key"}):
            with pytest.raises(InferenceServerException, match="restricted"):
                call(headers)
    assert client.is_server_live() and client.is_model_ready(names.CLASSIFY)  # health and metadata stay open


def test_a_call_with_the_key_is_answered(keyed_triton: TritonServer, photos: dict[str, np.ndarray]) -> None:
    client = grpcclient.InferenceServerClient(keyed_triton.grpc_url)
    output = grpcclient.InferRequestedOutput(names.PROBABILITIES, class_count=3)
    result = client.infer(names.CLASSIFY, [_image(photos)], outputs=[output], headers={CLIENT_HEADER: KEY})
    assert len(result.as_numpy(names.PROBABILITIES).reshape(-1)) == 3
