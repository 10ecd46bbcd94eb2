"""Triton python-backend model: an uploaded file's bytes -> BGR pixels, every upload rule enforced first.

The head of the ``classify`` and ``edges`` ensembles. Its config says at which scale to decode (``min_side``: the
classifier's resize target, or 0 for full resolution) and the upload limits. A refused image answers
INVALID_ARGUMENT with ``<code>: <message>``, the codes the gateway answers with; Triton keeps serving.
``python -m export`` copies this file into the repository as each decode model's ``1/model.py``.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from imaging import ImageError, Limits, decode


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.min_side = int(parameters["min_side"])
        self.limits = Limits(
            max_pixels=int(parameters["max_image_pixels"]),
            min_side=int(parameters["min_image_side"]),
            max_aspect_ratio=float(parameters["max_aspect_ratio"]),
        )
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        encoded = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy()
        if encoded.shape[0] != 1:
            return _refusal(f"send one encoded image per request, not a batch of {encoded.shape[0]}")
        try:
            pixels = decode(encoded.tobytes(), self.limits, self.min_side)
        except ImageError as exc:
            return _refusal(str(exc))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, pixels[np.newaxis])])


def _refusal(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
