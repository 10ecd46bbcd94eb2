"""The gateway's route logic and Triton error mapping in-process, with a stand-in for Triton's gRPC client.

The stand-in answers with real ``tritonclient`` result objects built from KServe v2 protobufs, so the gateway's
own parsing runs; the real-server tests (test_gateway.py) stay the proof that Triton agrees.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.errors import Error
from gateway.settings import Settings
from servables import names
from tests.support.fake_triton import FakeTriton
from tests.support.stack import TEST_MODEL
from tests.support.triton_answers import RECORDED as RECORDED_ANSWERS


@pytest.fixture
def fake() -> FakeTriton:
    return FakeTriton()


@pytest.fixture
def client(fake: FakeTriton, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(sqlite_path=tmp_path / "items.sqlite3")
    with TestClient(create_app(settings, triton_client=lambda _: fake)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_the_upload_reaches_triton_as_it_came(client: TestClient, fake: FakeTriton, jpeg: bytes) -> None:
    answer = client.post("/v1/classify?top_k=2", content=jpeg, headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "model": names.CLASSIFY,
        "model_version": "3",
        "weights": "imagenet:IMAGENET1K_V1",
        "image": {"width": 400, "height": 300, "format": "JPEG"},
        "predictions": [
            {"label": "tabby", "index": 281, "probability": 0.75},
            {"label": "tiger cat", "index": 282, "probability": 0.25},
        ],
    }
    [(model, tensors)] = fake.sent
    assert model == names.CLASSIFY
    assert tensors[names.IMAGE].tobytes() == jpeg  # bytes to Triton: exactly the upload, nothing decoded


# What the gateway answers to each of Triton's answers, recorded from a real Triton (tests/support/triton_answers.py).
ANSWERED_AS = {
    "deadline exceeded": Error.DEADLINE_EXCEEDED,
    "triton unreachable": Error.TRITON_UNAVAILABLE,
    "unknown model": Error.TRITON_UNAVAILABLE,
    "unknown model version": Error.MODEL_VERSION_NOT_FOUND,
    "queue full": Error.TRITON_QUEUE_FULL,
    "corrupt image": Error.CORRUPT_IMAGE,
    "image too large": Error.IMAGE_TOO_LARGE,
    "wrong input shape": Error.INVALID_IMAGE,
    "answer over the channel's message limit": Error.PAYLOAD_TOO_LARGE,
    "run stopped past its deadline": Error.CANCELLED,
    "onnxruntime failed": Error.TRITON_ERROR,
    "model instance lost": Error.TRITON_UNAVAILABLE,
}
RECORDED = json.loads(RECORDED_ANSWERS.read_text())


def recorded(case: str) -> InferenceServerException:
    """Triton's answer, as tritonclient raises it."""
    return InferenceServerException(RECORDED[case]["message"], status=RECORDED[case]["status"])


def test_every_recorded_triton_answer_has_its_expected_code() -> None:
    assert set(RECORDED) == set(ANSWERED_AS)


@pytest.mark.parametrize("case", sorted(ANSWERED_AS))
def test_triton_errors_answer_their_registered_code(
    client: TestClient, fake: FakeTriton, jpeg: bytes, case: str
) -> None:
    error = ANSWERED_AS[case]
    fake.error = InferenceServerException(RECORDED[case]["message"], status=RECORDED[case]["status"])
    answer = client.post("/v1/classify", content=jpeg, headers={"content-type": "image/jpeg"})
    assert answer.status_code == error.status
    assert answer.json()["error"]["code"] == error.code
    assert ("retry-after" in answer.headers) == (error.status in (429, 503))


def test_header_refusals_never_reach_triton(client: TestClient, fake: FakeTriton, jpeg: bytes) -> None:
    refused = [
        (b"", Error.EMPTY_IMAGE),
        (b"not an image at all" * 20, Error.UNSUPPORTED_IMAGE),
        (jpeg[:200], Error.CORRUPT_IMAGE),  # cut before its frame header
    ]
    for body, error in refused:
        answer = client.post("/v1/classify", content=body, headers={"content-type": "image/jpeg"})
        assert (answer.status_code, answer.json()["error"]["code"]) == (error.status, error.code)
    assert fake.sent == []
    # Cut after its header: the gateway cannot tell without decoding, so Triton's decode step has the last word.
    fake.error = recorded("corrupt image")
    cut = client.post("/v1/classify", content=jpeg[:1000], headers={"content-type": "image/jpeg"})
    assert (cut.status_code, cut.json()["error"]["code"]) == (422, Error.CORRUPT_IMAGE.code)
    assert len(fake.sent) == 1


def test_openapi_lists_every_error_code_a_route_gives(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/v1/classify"]["post"]["responses"]
    listed = {
        code
        for answer in responses.values()
        for code in answer.get("content", {}).get("application/json", {}).get("examples", {})
    }
    assert {Error.CORRUPT_IMAGE.code, Error.TRITON_QUEUE_FULL.code, Error.DEADLINE_EXCEEDED.code} <= listed
    example = responses["422"]["content"]["application/json"]["examples"][Error.ANIMATED_IMAGE.code]["value"]
    assert example == {"error": {"code": "animated_image", "message": Error.ANIMATED_IMAGE.meaning}}
    items = spec["paths"]["/v1/items/{item_id}"]["get"]["responses"]
    assert {"401", "404", "422", "503"} <= set(items)


def test_small_frictions_get_a_helpful_answer(client: TestClient, fake: FakeTriton, jpeg: bytes) -> None:
    # image/jpg is not a registered type, but many clients send it.
    assert client.post("/v1/classify", content=jpeg, headers={"content-type": "image/jpg"}).status_code == 200
    for body, media_type in [
        (b"https://example.com/cat.jpg", "image/jpeg"),
        (b"https://example.com/cat.jpg", "text/plain"),
    ]:
        answer = client.post("/v1/classify", content=body, headers={"content-type": media_type})
        assert answer.status_code == 415
        assert "URLs are not fetched" in answer.json()["error"]["message"]
    empty_form = client.post("/v1/classify", files={"note": (None, "hello")})
    assert empty_form.json()["error"]["code"] == Error.MISSING_FILE.code
    assert "-F file=@" in empty_form.json()["error"]["message"]


@pytest.mark.parametrize(
    ("host", "keys", "key", "status"),
    [
        ("203.0.113.7", [], None, 403),  # no keys: another host may not unload models
        ("127.0.0.1", [], None, 200),  # no keys: this host may (make serve's user)
        ("::1", [], None, 200),
        ("203.0.113.7", ["s3cret"], "s3cret", 200),  # keys: a key opens it from anywhere
        ("127.0.0.1", ["s3cret"], None, 401),  # keys: loopback needs one too
    ],
)
def test_model_control_needs_a_key_or_the_gateways_own_host(
    fake: FakeTriton, tmp_path: Path, host: str, keys: list[str], key: str | None, status: int
) -> None:
    settings = Settings(sqlite_path=tmp_path / "items.sqlite3", api_keys=keys)
    app = create_app(settings, triton_client=lambda _: fake)
    with TestClient(app, client=(host, 40000)) as remote:
        answer = remote.post(f"/v1/admin/models/{TEST_MODEL}/unload", headers={"X-API-Key": key} if key else {})
    assert answer.status_code == status, answer.text
    assert (f"unload {TEST_MODEL}", {}) in fake.sent if status == 200 else not fake.sent
    if status == 403:
        assert answer.json()["error"]["code"] == "forbidden"
