"""The local runtime's ONNX runner answers a batch as it answers each of its images alone, however the batch is
cut: in equal slices, one per core, with what does not divide evenly on the multi-threaded session."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from launcher.triton import TritonServer
from servables import names
from tests.support.stack import TEST_MODEL


def _probabilities(client: grpcclient.InferenceServerClient, batch: np.ndarray) -> np.ndarray:
    tensor = grpcclient.InferInput(names.INPUT, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return client.infer(TEST_MODEL, [tensor]).as_numpy(names.PROBABILITIES)


@pytest.mark.parametrize("size", [2, 3, 5, 8])
def test_a_batch_answers_what_its_images_answer_alone(triton: TritonServer, size: int) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    images = np.random.default_rng(size).standard_normal((size, 3, 224, 224), dtype=np.float32)
    alone = np.concatenate([_probabilities(client, image[np.newaxis]) for image in images])
    together = _probabilities(client, images)
    assert together.shape == (size, 1000)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert not np.allclose(together[0], together[-1], atol=1e-5)  # each image its own answer, not one repeated
