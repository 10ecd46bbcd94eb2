"""gRPC clients bypass the gateway: hostile files sent straight to Triton are refused by its decode step with the
gateway's rules, and Triton keeps serving a normal photo beside each one."""

from __future__ import annotations

from collections import Counter
from functools import partial

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from imaging import ImageError
from launcher.triton import TritonServer
from servables import names
from tests.support.figures import Beside, hold, record
from tests.support.goals import PHOTO_BESIDE_HOSTILE
from tests.support.hostile import corpus, unusual_but_valid

pytestmark = pytest.mark.reliability


def _encoded_input(data: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(names.IMAGE, [1, len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, np.uint8)[None])
    return tensor


def test_hostile_files_sent_straight_to_triton_are_refused_and_it_keeps_serving(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    """gRPC clients bypass the gateway: the decode step enforces the same rules and answers INVALID_ARGUMENT, while
    a normal photo sent to the classify ensemble beside each file is answered."""
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    files = {
        case.name: case.kwargs["content"]
        for case in corpus(photos["coffee"], max_body_bytes=10 * 1024 * 1024)
        if case.path in ("/v1/classify", "/v1/edges")  # the image rules, not the query or content-type ones
        and case.status in (413, 415, 422)
        and isinstance(case.kwargs.get("content"), bytes)
        and case.kwargs["headers"].get("content-type", "").startswith(("image/", "application/octet-stream"))
        and len(case.kwargs["headers"].get("content-type", "")) < 100
    }
    assert len(files) >= 20
    photo = cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()
    other_client = grpcclient.InferenceServerClient(triton.grpc_url)

    def normal() -> str:
        try:
            other_client.infer(names.CLASSIFY, [_encoded_input(photo)], client_timeout=30)
        except InferenceServerException as exc:
            return str(exc.status())
        return "OK"

    refusals = {}
    with Beside(normal) as beside:
        for name, data in files.items():
            for model in (names.CLASSIFY, names.EDGES):
                with pytest.raises(InferenceServerException) as refused:
                    beside.send(f"{name} ({model})", partial(client.infer, model, [_encoded_input(data)],
                                                               client_timeout=60))  # fmt: skip
                assert "INVALID_ARGUMENT" in str(refused.value.status()), (name, model, refused.value)
                problem = ImageError.from_message(refused.value.message())
                assert problem is not None, (name, model, refused.value.message())
                refusals[name] = problem.problem.value
    record("hostile files refused straight by Triton, by problem", dict(Counter(refusals.values())))
    assert set(beside.outcomes) == {"OK"}, beside
    hold("normal photo beside each hostile file straight to Triton, slowest", beside.worst_s, PHOTO_BESIDE_HOSTILE,
         detail=str(beside))  # fmt: skip
    assert triton.process is not None and triton.process.poll() is None
    for name, (data, _) in unusual_but_valid(photos["chelsea"]).items():  # and odd but valid files still pass
        answer = client.infer(names.CLASSIFY, [_encoded_input(data)]).as_numpy(names.PROBABILITIES)[0]
        assert abs(float(answer.sum()) - 1.0) < 1e-4, name
