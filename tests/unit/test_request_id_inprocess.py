"""The request id in-process, with the stand-in Triton client: the id a client sends is the id of its Triton
request."""

from __future__ import annotations

import cv2
import numpy as np
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.fake_triton import FakeTriton


def test_request_id_reaches_triton(photos: dict[str, np.ndarray]) -> None:
    """The id the client sent (or the gateway made) is the id of the Triton request: Triton's traces and error
    messages carry it."""
    fake = FakeTriton()
    sent: list[str] = []
    infer = fake.infer

    async def recording(model_name: str, inputs: list, **options: object) -> object:
        sent.append(str(options["request_id"]))
        return await infer(model_name, inputs, **options)

    fake.infer = recording  # type: ignore[method-assign]
    body = cv2.imencode(".jpg", photos["coffee"])[1].tobytes()
    with TestClient(create_app(Settings(), triton_client=lambda _: fake)) as client:
        answer = client.post("/v1/classify", content=body,
                             headers={"content-type": "image/jpeg", "x-request-id": "trace-me-42"})  # fmt: skip
    assert answer.status_code == 200
    assert sent == ["trace-me-42"]
