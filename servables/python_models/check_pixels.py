"""Triton python-backend model: the head of the raw-pixel entry points (``classify_pixels``, ``canny``).

Clients that send decoded pixels (``uint8 [N, H, W, 3]``) skip the decode step, where the upload rules hold for
files, and the ONNX graphs behind cannot refuse anything (in production they run in Triton's native onnxruntime
backend). So this step refuses, before any work: more pixels than an upload may have (counted over the request's
N images), a side under the minimum (a zero side too), an aspect ratio over the maximum; and, when the request
carries the edge detector's parameters, values outside the REST route's ranges. Its config carries the limits. A
refusal answers INVALID_ARGUMENT, ``<code>: <message>``; what passes leaves as ``PIXELS``, the same array.
``python -m export`` copies this file into the repository as the model's ``1/model.py``.
"""

import json
import math

import triton_python_backend_utils as pb_utils

from imaging import ImageError, Limits, Problem
from imaging.header import check_size

INVALID_REQUEST = "invalid_request"  # the gateway's code for a parameter out of range


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.limits = Limits(
            max_pixels=int(parameters["max_image_pixels"]),
            min_side=int(parameters["min_image_side"]),
            max_aspect_ratio=float(parameters["max_aspect_ratio"]),
        )
        self.apertures = tuple(int(size) for size in parameters["aperture_sizes"].split(","))
        self.max_blur = int(parameters["max_blur"])
        self.max_threshold = float(parameters["max_threshold"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]

    def execute(self, requests):
        return [self._checked(request) for request in requests]

    def _checked(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, self.input)
        try:
            self._check_image(tensor.shape())
        except ImageError as exc:
            return _refusal(str(exc))
        if problem := self._canny_problem(request):
            return _refusal(f"{INVALID_REQUEST}: {problem}")
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, tensor.as_numpy())])

    def _check_image(self, shape):
        count, height, width, _ = shape
        check_size(width, height, self.limits)
        if count * width * height > self.limits.max_pixels:
            raise ImageError(
                Problem.TOO_LARGE,
                f"{count} images of {width}x{height} = {count * width * height:,} pixels is over the limit of "
                f"{self.limits.max_pixels:,} pixels for one request",
            )

    def _canny_problem(self, request):
        """Why the edge detector's parameters, where the request has them, are refused (the REST route's rules):
        the graph would clamp any value silently."""
        values = {}
        for name in ("LOW", "HIGH", "APERTURE_SIZE", "BLUR"):  # servables.names; L2_GRADIENT and GRAY are booleans
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                values[name] = tensor.as_numpy().reshape(-1)
        for name in ("LOW", "HIGH"):
            for value in values.get(name, ()):
                if not (math.isfinite(value) and 0 <= value <= self.max_threshold):
                    return f"{name} must be a number from 0 to {self.max_threshold:g}, not {value}"
        for low, high in zip(values.get("LOW", ()), values.get("HIGH", ()), strict=False):  # both, or no check
            if low > high:
                return f"LOW ({low:g}) must not exceed HIGH ({high:g})"
        for size in values.get("APERTURE_SIZE", ()):
            if size not in self.apertures:
                return f"APERTURE_SIZE must be one of {', '.join(map(str, self.apertures))}, not {size}"
        for size in values.get("BLUR", ()):
            if not (size == 0 or (size % 2 == 1 and 0 < size <= self.max_blur)):
                return f"BLUR must be 0 or an odd size up to {self.max_blur}, not {size}"
        return None


def _refusal(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))
