"""A stand-in for Triton's gRPC client that answers with real ``tritonclient`` result objects built from KServe v2
protobufs, so the gateway's own parsing runs in-process (``create_app(triton_client=...)``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from servables import default, names
from servables.classification import Identity
from servables.specs import Batching, PreprocessSpec
from tests.support.stack import TEST_MODEL

# The configs the test repository's models have: what the gateway reads of a model (its kind, its steps).
CONFIGS = default.model_configs(TEST_MODEL, PreprocessSpec(), Batching())


class FakeTriton:
    """Records what the gateway sends; answers a fixed top-k, or raises the error a test sets."""

    def __init__(self) -> None:
        self.error: InferenceServerException | None = None
        self.sent: list[tuple[str, dict[str, np.ndarray]]] = []

    async def infer(self, model_name: str, inputs: list[triton.InferInput], **options: Any) -> triton.InferResult:
        self.sent.append((model_name, {t.name(): _array(t) for t in inputs}))
        if self.error is not None:
            raise self.error
        response = service_pb2.ModelInferResponse(model_name=model_name, model_version="1")
        entries = np.array([b"0.75:281:tabby", b"0.25:282:tiger cat"], dtype=np.object_)
        identity = np.array([Identity("3", "imagenet:IMAGENET1K_V1").encode().encode()], dtype=np.object_)
        for name, tensor in ((names.PROBABILITIES, entries), (names.MODEL_ID, identity)):
            response.outputs.add(name=name, datatype="BYTES", shape=[1, len(tensor)])
            response.raw_output_contents.append(serialize_byte_tensor(tensor).item())
        return triton.InferResult(response)

    async def get_model_config(self, model_name: str, **options: Any) -> Any:
        if model_name not in CONFIGS:
            raise InferenceServerException(
                f"Request for unknown model: '{model_name}' is not found", "StatusCode.NOT_FOUND"
            )
        answer = service_pb2.ModelConfigResponse()
        answer.config.CopyFrom(json_format.ParseDict(CONFIGS[model_name], model_config_pb2.ModelConfig()))
        return answer

    async def is_server_ready(self, **options: Any) -> bool:
        return True

    async def is_model_ready(self, model_name: str, **options: Any) -> bool:
        return True

    async def get_model_repository_index(self, **options: Any) -> dict[str, Any]:
        return {"models": [{"name": TEST_MODEL, "version": "1", "state": "READY"}]}

    async def unload_model(self, model_name: str, **options: Any) -> None:
        self.sent.append((f"unload {model_name}", {}))

    async def close(self) -> None:
        pass


def _array(tensor: triton.InferInput) -> np.ndarray:
    request = tensor._get_tensor()  # the protobuf the client would send, and its raw bytes
    return np.frombuffer(tensor._get_content(), np.uint8) if request.datatype == "UINT8" else np.array([])
