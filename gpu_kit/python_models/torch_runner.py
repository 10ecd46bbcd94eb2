"""Triton python-backend model running one of ``gpu_kit.torch_models`` on the instance's device.

Stands in for an onnxruntime model where ONNX Runtime has no CUDA provider. Config parameters: ``module``
(``preprocess`` or ``classifier``), and for the classifier ``arch``, ``weights`` and ``precision`` (fp32, fp16).
On a GPU instance inputs arrive as GPU tensors when Triton allows it (``FORCE_CPU_ONLY_INPUT_TENSORS: no``) and
outputs leave through DLPack, so decode -> preprocess -> ResNet never crosses to the host. Requests of one shape
(the ResNet's, from the dynamic batcher) run as one batch.
"""

import json

import torch
import triton_python_backend_utils as pb_utils
from torch.utils import dlpack

from gpu_kit.torch_models import Preprocess, classifier


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        on_gpu = args["model_instance_kind"] == "GPU" and torch.cuda.is_available()
        self.device = torch.device("cuda", int(args["model_instance_device_id"])) if on_gpu else torch.device("cpu")
        if parameters["module"] == "preprocess":
            module: torch.nn.Module = Preprocess()
        else:
            fp16 = parameters.get("precision", "fp32") == "fp16"
            module = classifier(parameters["arch"], parameters["weights"], fp16)
        self.module = module.to(self.device).eval()
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]

    def _tensor(self, request, name):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        value = torch.from_numpy(tensor.as_numpy()) if tensor.is_cpu() else dlpack.from_dlpack(tensor.to_dlpack())
        return value.to(self.device, non_blocking=True)

    def _output(self, name, value):
        if value.is_cuda:
            return pb_utils.Tensor.from_dlpack(name, dlpack.to_dlpack(value.contiguous()))
        return pb_utils.Tensor(name, value.contiguous().numpy())

    def execute(self, requests):
        feeds = [self._tensor(request, self.inputs[0]) for request in requests]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, feed in enumerate(feeds):
            groups.setdefault(tuple(feed.shape[1:]), []).append(i)
        responses = [None] * len(requests)
        with torch.inference_mode():
            for indices in groups.values():
                batch = torch.cat([feeds[i] for i in indices])
                results = self.module(batch)
                results = results if isinstance(results, tuple) else (results,)
                sizes = [feeds[i].shape[0] for i in indices]
                parts = [torch.split(result, sizes) for result in results]
                for j, i in enumerate(indices):
                    tensors = [self._output(name, part[j]) for name, part in zip(self.outputs, parts, strict=True)]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
