"""On a CPU host the local runtime runs classify's decode and preprocessing as one python-backend step: the
same answers as the two steps called one after the other, and the decode's refusals as they were."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from launcher.triton import TritonServer
from servables import names
from tests.support.stack import TEST_MODEL

FUSED = f"{names.DECODE_REDUCED}_then_{names.PREPROCESS}"


def _call(
    client: grpcclient.InferenceServerClient, model: str, name: str, array: np.ndarray, output: str
) -> np.ndarray:
    tensor = grpcclient.InferInput(name, list(array.shape), {np.uint8: "UINT8", np.float32: "FP32"}[array.dtype.type])
    tensor.set_data_from_numpy(array)
    return client.infer(model, [tensor], outputs=[grpcclient.InferRequestedOutput(output)]).as_numpy(output)


def test_classify_runs_decode_and_preprocessing_as_one_step(triton: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    steps = client.get_model_config(names.CLASSIFY).config.ensemble_scheduling.step
    assert [step.model_name for step in steps] == [FUSED, TEST_MODEL]
    assert client.is_model_ready(names.DECODE_REDUCED) and client.is_model_ready(names.PREPROCESS)  # still served


def test_the_fused_step_answers_what_the_two_steps_answer(triton: TritonServer, photos: dict[str, np.ndarray]) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    for name, image in photos.items():
        encoded = np.frombuffer(cv2.imencode(".jpg", image)[1].tobytes(), np.uint8)[np.newaxis]
        pixels = _call(client, names.DECODE_REDUCED, names.IMAGE, encoded, names.PIXELS)
        split = _call(client, names.PREPROCESS, names.IMAGE, pixels, names.INPUT)
        fused = _call(client, FUSED, names.IMAGE, encoded, names.INPUT)
        np.testing.assert_array_equal(fused, split, err_msg=name)
        alone = _call(client, TEST_MODEL, names.INPUT, split, names.PROBABILITIES)
        together = _call(client, names.CLASSIFY, names.IMAGE, encoded, names.PROBABILITIES)
        np.testing.assert_allclose(together, alone, atol=1e-6, err_msg=name)


def test_what_the_decode_refuses_is_answered_as_it_answered(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    jpeg = cv2.imencode(".jpg", next(iter(photos.values())))[1].tobytes()
    truncated = np.frombuffer(jpeg[: len(jpeg) // 2], np.uint8)[np.newaxis]
    answers = []
    for model, output in (
        (names.DECODE_REDUCED, names.PIXELS),
        (FUSED, names.INPUT),
        (names.CLASSIFY, names.PROBABILITIES),
    ):
        with pytest.raises(InferenceServerException) as refused:
            _call(client, model, names.IMAGE, truncated, output)
        answers.append(refused.value)
    assert all(answer.status() == "StatusCode.INVALID_ARGUMENT" for answer in answers)
    assert all("corrupt_image: the JPEG is truncated" in answer.message() for answer in answers), answers
