"""The gateway's gRPC client for Triton: ``tritonclient.grpc.aio``'s, except that a request carrying a large
input is framed without protobuf copying the bytes on the event loop.

tritonclient copies an input's bytes into the request message and then serializes it: two copies of an upload,
in C, holding the GIL, on the event loop (about 20 ms for a 9 MB phone photo here, up to 60 ms on fresh memory).
A dozen such uploads at once held every other request, ``/healthz`` included, for 300-450 ms. A protobuf message
is a concatenation of its fields, and ``raw_input_contents`` is field 7: the request is serialized without the
bytes, and the bytes appended as that field by ``bytes.join``, which copies without the GIL in a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import tritonclient.grpc.aio as triton
from tritonclient.grpc import InferenceServerClientPlugin, InferResult, Request, service_pb2

# tritonclient's own request builder and error translation: the framed call must mean exactly what infer() means.
from tritonclient.grpc._utils import _get_inference_request, raise_error_grpc

from servables import names

# From this many input bytes on, framing in a thread pays for its hop (bytes.join drops the GIL from 1 MiB).
FRAME_OFF_LOOP_BYTES = 1 << 20
_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
_RAW_INPUT_CONTENTS = service_pb2.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, low = value >> 7, value & 0x7F
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def framed(request: service_pb2.ModelInferRequest, contents: list[bytes]) -> list[bytes]:
    """The pieces of ``request`` with ``contents`` as its raw_input_contents, in order; joined, they are the
    message protobuf would serialize (the tests parse them back)."""
    key = _varint(_RAW_INPUT_CONTENTS << 3 | 2)  # length-delimited
    pieces = [request.SerializeToString()]
    for content in contents:
        pieces += [key, _varint(len(content)), content]
    return pieces


class TritonKey(InferenceServerClientPlugin):
    """The key of Triton's restricted gRPC protocol (``--grpc-restricted-protocol``, the ECS opt-in endpoint's), as
    the header Triton asks every call for but health and metadata: inference, model config, the repository index,
    loads and unloads."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: Request) -> None:
        request.headers[names.GRPC_KEY_HEADER] = self._key


class TritonWire(triton.InferenceServerClient):
    def __init__(self, url: str, channel_args: list[tuple[str, Any]], key: str | None = None) -> None:
        super().__init__(url, channel_args=channel_args)
        if key:
            # tritonclient asks its plugin for the headers of every call, the framed one's too (_get_metadata).
            self.register_plugin(TritonKey(key))
        # The same RPC taking the message already serialized.
        self._model_infer_bytes = self._channel.unary_unary(
            _MODEL_INFER, request_serializer=None, response_deserializer=service_pb2.ModelInferResponse.FromString
        )

    async def infer(self, model_name: str, inputs: list[triton.InferInput], **options: Any) -> InferResult:
        contents = [item._get_content() for item in inputs]
        if sum(len(content) for content in contents if content is not None) < FRAME_OFF_LOOP_BYTES:
            return await super().infer(model_name, inputs, **options)
        client_timeout, headers = options.pop("client_timeout", None), options.pop("headers", None)
        bare = [triton.InferInput(item.name(), item.shape(), item.datatype()) for item in inputs]
        request = _get_inference_request(
            model_name=model_name, inputs=bare, model_version=options.pop("model_version", ""),
            request_id=options.pop("request_id", ""), outputs=options.pop("outputs", None),
            timeout=options.pop("timeout", None), parameters=options.pop("parameters", None), sequence_id=0,
            sequence_start=False, sequence_end=False, priority=0,
        )  # fmt: skip
        if options:
            raise TypeError(f"unsupported options for a framed request: {sorted(options)}")
        message = await asyncio.to_thread(b"".join, framed(request, [c for c in contents if c is not None]))
        try:
            response = await self._model_infer_bytes(
                message, metadata=self._get_metadata(headers), timeout=client_timeout
            )
        except grpc.RpcError as exc:
            raise_error_grpc(exc)
        return InferResult(response)
