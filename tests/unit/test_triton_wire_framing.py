"""The framed request path, byte for byte the message protobuf serializes (against a real Triton:
tests/integration/test_triton_wire.py)."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc.aio as aio
from tritonclient.grpc import service_pb2
from tritonclient.grpc._utils import _get_inference_request

from gateway.triton_wire import framed
from servables import names
from tests.support.tensors import infer_input


def test_framed_pieces_are_the_message_protobuf_serializes() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (1, size), np.uint8) for size in (0, 1, 127, 128, 300_000)]
    inputs = [infer_input(f"in{i}", array) for i, array in enumerate(arrays)]
    options = {"model_version": "3", "request_id": "r-1", "outputs": [aio.InferRequestedOutput("out")],
               "sequence_id": 0, "sequence_start": False, "sequence_end": False, "priority": 0,
               "timeout": 5_000_000, "parameters": {names.DEADLINE_PARAMETER: 1_700_000_000_000_000_000}}  # fmt: skip
    whole = _get_inference_request(model_name="m", inputs=inputs, **options)
    bare = _get_inference_request(
        model_name="m", inputs=[aio.InferInput(i.name(), i.shape(), i.datatype()) for i in inputs], **options
    )
    message = b"".join(framed(bare, [array.tobytes() for array in arrays]))
    assert service_pb2.ModelInferRequest.FromString(message) == whole
