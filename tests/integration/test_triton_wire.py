"""The framed request path: byte for byte the message protobuf serializes, and the same answers and errors from a
real Triton as tritonclient's own infer()."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import pytest
import tritonclient.grpc.aio as aio
from tritonclient.grpc import service_pb2
from tritonclient.grpc._utils import _get_inference_request
from tritonclient.utils import InferenceServerException

from gateway.inference import CHANNEL_ARGS
from gateway.triton_wire import FRAME_OFF_LOOP_BYTES, TritonWire, framed
from launcher.triton import TritonServer
from servables import names


def _input(name: str, array: np.ndarray) -> aio.InferInput:
    item = aio.InferInput(name, list(array.shape), "UINT8")
    item.set_data_from_numpy(array)
    return item


def test_framed_pieces_are_the_message_protobuf_serializes() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (1, size), np.uint8) for size in (0, 1, 127, 128, 300_000)]
    inputs = [_input(f"in{i}", array) for i, array in enumerate(arrays)]
    options = {"model_version": "3", "request_id": "r-1", "outputs": [aio.InferRequestedOutput("out")],
               "sequence_id": 0, "sequence_start": False, "sequence_end": False, "priority": 0,
               "timeout": 5_000_000, "parameters": {names.DEADLINE_PARAMETER: 1_700_000_000_000_000_000}}  # fmt: skip
    whole = _get_inference_request(model_name="m", inputs=inputs, **options)
    bare = _get_inference_request(
        model_name="m", inputs=[aio.InferInput(i.name(), i.shape(), i.datatype()) for i in inputs], **options
    )
    message = b"".join(framed(bare, [array.tobytes() for array in arrays]))
    assert service_pb2.ModelInferRequest.FromString(message) == whole


def test_a_large_upload_gets_the_same_answer_and_errors_as_tritonclient(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    big = cv2.resize(photos["coffee"], (3000, 2000), interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".png", big)[1]  # a PNG: over the framing threshold
    assert data.size >= FRAME_OFF_LOOP_BYTES

    async def both() -> tuple[np.ndarray, np.ndarray, list[str]]:
        plain, wire = aio.InferenceServerClient(triton.grpc_url), TritonWire(triton.grpc_url, CHANNEL_ARGS)
        output = [aio.InferRequestedOutput(names.PROBABILITIES, class_count=5)]
        try:
            answers = [
                (await client.infer("classify", [_input(names.IMAGE, data[np.newaxis])], outputs=output,
                                    request_id="wire", client_timeout=60,
                                    parameters={names.DEADLINE_PARAMETER: time.time_ns() + 60 * 10**9},
                                    )).as_numpy(names.PROBABILITIES)
                for client in (plain, wire)
            ]  # fmt: skip
            errors = []
            for client in (plain, wire):
                with pytest.raises(InferenceServerException) as refused:
                    await client.infer("no_such_model", [_input(names.IMAGE, data[np.newaxis])])
                errors.append(f"{refused.value.status()}: {refused.value.message()}")
        finally:
            await plain.close()
            await wire.close()
        return answers[0], answers[1], errors

    expected, got, errors = asyncio.run(both())
    assert got.tolist() == expected.tolist()
    assert errors[0] == errors[1]
