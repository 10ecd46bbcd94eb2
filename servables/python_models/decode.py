"""Triton python-backend model: uploaded files' bytes -> BGR pixels, every upload rule enforced first.

The head of the ``classify`` and ``edges`` ensembles. Its config says at which scale to decode (``min_side``: the
classifier's resize target, or 0 for full resolution) and the upload limits. A refused image answers
INVALID_ARGUMENT with ``<code>: <message>``, the codes the gateway answers with; Triton keeps serving. A file over
the byte limit is refused from its size alone, before a byte of it is read (gRPC clients reach Triton directly, and
Triton 2.51 has no message-size limit of its own).

When ``/dev/shm``, where the python backend moves every tensor, has less free space than a request may need,
every request is answered UNAVAILABLE saying so (a retryable error, not the backend's failure halfway through),
and the gateway's readiness probe, which runs through this step, turns red with that reason.

On a GPU instance (``KIND_GPU``, or ``KIND_AUTO`` on a GPU host) JPEGs are decoded by nvImageCodec (nvJPEG),
every JPEG the dynamic batcher hands over in one call, and leave as GPU arrays through DLPack (no host round
trip; ``imaging/gpu.py``). Elsewhere, and where the GPU path cannot load (said in Triton's log), libjpeg-turbo
decodes on the CPU at the smallest DCT scale the model needs. ``python -m export`` copies this file into the
repository as each decode model's ``1/model.py``, with the ``imaging`` package beside it.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from imaging import Header, ImageError, Limits, Problem, decode, read_header
from imaging.allocation import keep_freed_memory
from imaging.decode import decodable
from imaging.gpu import GpuDecoder, GpuUnavailable

SHARED_MEMORY = "/dev/shm"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.min_side = int(parameters["min_side"])
        self.max_bytes = int(parameters["max_image_bytes"])
        # Every file the limit admits, and this process's copies of it, from the heap and kept there: a phone photo's
        # were faulted in afresh on every request, 12% of this step's CPU in the kernel (imaging.allocation).
        keep_freed_memory(self.max_bytes, 2 * self.max_bytes)
        self.min_free_shared_memory = int(parameters["min_free_shared_memory_bytes"])
        self.limits = Limits(
            max_pixels=int(parameters["max_image_pixels"]),
            min_side=int(parameters["min_image_side"]),
            max_aspect_ratio=float(parameters["max_aspect_ratio"]),
        )
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]
        try:
            self.gpu = GpuDecoder.for_instance(args["model_instance_kind"], int(args["model_instance_device_id"]))
        except GpuUnavailable as exc:
            pb_utils.Logger.log_warn(f"{args['model_instance_name']} decodes on the CPU: {exc}")
            self.gpu = None

    def execute(self, requests):
        if full := self._shared_memory_full():
            return [_unavailable(full) for _ in requests]
        files = [self._file(request) for request in requests]
        responses = [None] * len(requests)
        on_gpu = []
        for i, file in enumerate(files):
            if isinstance(file, str):
                responses[i] = _refusal(file)
            elif self.gpu is not None and file[1].format == "JPEG":
                try:  # the checks every decoder needs (truncation, scan count), which decode() makes on the CPU
                    files[i] = decodable(*file), file[1]
                    on_gpu.append(i)
                except ImageError as exc:
                    responses[i] = _refusal(str(exc))
            else:
                responses[i] = self._on_cpu(*file)
        if self.gpu is not None and on_gpu:
            decoded = self.gpu.decode([files[i] for i in on_gpu], self.min_side)
            for i, pixels in zip(on_gpu, decoded, strict=True):
                # nvJPEG refuses some JPEGs libjpeg reads (CMYK, arithmetic coding): those go the CPU way.
                tensor = pb_utils.Tensor.from_dlpack(self.output, pixels) if pixels is not None else None
                responses[i] = self._on_cpu(*files[i]) if tensor is None else _answer(tensor)
        return responses

    def _shared_memory_full(self):
        """Why no request can be taken, when /dev/shm is (nearly) full; else None."""
        stat = os.statvfs(SHARED_MEMORY)
        free = stat.f_bavail * stat.f_frsize
        if free >= self.min_free_shared_memory:
            return None
        return (
            f"Triton's shared memory is full: {SHARED_MEMORY} has {free >> 20} MiB free, under the "
            f"{self.min_free_shared_memory >> 20} MiB a request may need (No space left on device); retry later"
        )

    def _file(self, request):
        """(bytes, header) of a request's one encoded image, or why it is refused."""
        tensor = pb_utils.get_input_tensor_by_name(request, self.input)
        count, size = tensor.shape()
        if count != 1:
            return f"{Problem.UNSUPPORTED.value}: send one encoded image per request, not a batch of {count}"
        if size > self.max_bytes:
            return str(ImageError(Problem.TOO_MANY_BYTES, f"{size:,} bytes is over the limit of {self.max_bytes:,}"))
        data = tensor.as_numpy().tobytes()
        try:
            return data, read_header(data, self.limits)
        except ImageError as exc:
            return str(exc)

    def _on_cpu(self, data: bytes, header: Header):
        try:
            pixels = decode(data, self.limits, self.min_side, header)
        except ImageError as exc:
            return _refusal(str(exc))
        return _answer(pb_utils.Tensor(self.output, pixels[np.newaxis]))


def _answer(tensor):
    return pb_utils.InferenceResponse(output_tensors=[tensor])


def _refusal(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def _unavailable(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.UNAVAILABLE))
