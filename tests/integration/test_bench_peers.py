"""bench.peers against the real processes: the FastAPI + ONNX Runtime app and LitServe serving the test ResNet-18
answer the reference top-5 (OpenCV decode, reference preprocessing, the same model.onnx) and refuse non-images; the
hand-written relay answers what Triton's classify ensemble computes, and passes on its refusals."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from bench import peers
from bench.inputs import PHOTOGRAPHS, photographs
from export.preprocess import reference_preprocess
from launcher.process import LOOPBACK as HOST
from launcher.process import Service, free_ports
from launcher.triton import TritonServer
from servables.names import CLASSIFY, IMAGE, LABELS, PROBABILITIES

MODEL = "resnet18"


@pytest.fixture(scope="module", params=[peers.FASTAPI_ORT, peers.LITSERVE])
def peer(
    request: pytest.FixtureRequest, test_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    (port,) = free_ports(1)
    command = [sys.executable, "-m", "bench.peers", request.param, "--repository", str(test_repository),
               "--model", MODEL, "--host", HOST, "--port", str(port)]  # fmt: skip
    log = tmp_path_factory.mktemp("peer") / "log"
    with Service.http(request.param, command, log, f"http://{HOST}:{port}", "/health").start(120) as service:
        yield service


@pytest.fixture(scope="module")
def relay(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    (port,) = free_ports(1)
    command = [sys.executable, "-m", "bench.peers", peers.FASTAPI_TRITON, "--triton-url", triton.grpc_url,
               "--host", HOST, "--port", str(port)]  # fmt: skip
    log = tmp_path_factory.mktemp("relay") / "log"
    with Service.http(peers.FASTAPI_TRITON, command, log, f"http://{HOST}:{port}", "/health").start(120) as service:
        yield service


def _post(service: Service, body: bytes) -> httpx.Response:
    if service.name == peers.LITSERVE:
        files = {peers.UPLOAD_FIELD: ("photo.jpg", body, "image/jpeg")}
        return httpx.post(service.url + peers.PATH, files=files, timeout=60)
    return httpx.post(service.url + peers.PATH, content=body, headers={"content-type": "image/jpeg"}, timeout=60)


def test_a_peer_answers_the_reference_top5(peer: Service, test_repository: Path) -> None:
    session = ort.InferenceSession(str(test_repository / MODEL / "1" / "model.onnx"))
    labels = (test_repository / MODEL / LABELS).read_text().splitlines()
    for jpeg in photographs(PHOTOGRAPHS[:3]).values():
        pixels = reference_preprocess(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
        (expected,) = session.run([PROBABILITIES], {session.get_inputs()[0].name: pixels[np.newaxis]})
        top = np.argsort(expected[0])[::-1][: peers.TOP_K]
        answer = _post(peer, jpeg)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["index"] for p in predictions] == top.tolist()
        assert [p["label"] for p in predictions] == [labels[i] for i in top]
        assert [p["probability"] for p in predictions] == pytest.approx(expected[0][top].tolist(), abs=1e-5)


def test_a_peer_refuses_what_is_not_an_image(peer: Service) -> None:
    answer = _post(peer, b"not an image at all")
    assert answer.status_code == 422


def test_the_relay_answers_the_classify_ensembles_top5(relay: Service, triton: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    labels = (triton.repository / CLASSIFY / LABELS).read_text().splitlines()
    for jpeg in photographs(PHOTOGRAPHS[:3]).values():
        encoded = np.frombuffer(jpeg, np.uint8)[np.newaxis]
        tensor = grpcclient.InferInput(IMAGE, list(encoded.shape), "UINT8")
        tensor.set_data_from_numpy(encoded)
        (expected,) = client.infer(CLASSIFY, [tensor]).as_numpy(PROBABILITIES)  # every class's probability
        top = np.argsort(expected)[::-1][: peers.TOP_K]
        answer = _post(relay, jpeg)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["index"] for p in predictions] == top.tolist()
        assert [p["label"] for p in predictions] == [labels[i] for i in top]
        assert [p["probability"] for p in predictions] == pytest.approx(expected[top].tolist(), abs=1e-5)


def test_the_relay_passes_on_tritons_refusal(relay: Service) -> None:
    answer = _post(relay, b"not an image at all")
    assert answer.status_code == 422
    assert "not a supported image" in answer.json()["error"]["message"]
