"""The framed request path: the same answers and errors from a real Triton as tritonclient's own infer() (byte for
byte the message protobuf serializes: tests/unit/test_triton_wire_framing.py)."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import pytest
import tritonclient.grpc.aio as aio
from tritonclient.utils import InferenceServerException

from gateway.inference import CHANNEL_ARGS
from gateway.triton_wire import FRAME_OFF_LOOP_BYTES, TritonWire
from launcher.triton import TritonServer
from servables import names
from tests.support.tensors import infer_input


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
                (await client.infer("classify", [infer_input(names.IMAGE, data[np.newaxis])], outputs=output,
                                    request_id="wire", client_timeout=60,
                                    parameters={names.DEADLINE_PARAMETER: time.time_ns() + 60 * 10**9},
                                    )).as_numpy(names.PROBABILITIES)
                for client in (plain, wire)
            ]  # fmt: skip
            errors = []
            for client in (plain, wire):
                with pytest.raises(InferenceServerException) as refused:
                    await client.infer("no_such_model", [infer_input(names.IMAGE, data[np.newaxis])])
                errors.append(f"{refused.value.status()}: {refused.value.message()}")
        finally:
            await plain.close()
            await wire.close()
        return answers[0], answers[1], errors

    expected, got, errors = asyncio.run(both())
    assert got.tolist() == expected.tolist()
    assert errors[0] == errors[1]
