"""Triton python-backend model that runs a ``model.onnx`` with ONNX Runtime.

The launcher copies this one file into each onnxruntime model of the runtime repository when the server at
hand has no onnxruntime backend. Requests the dynamic batcher hands over together are concatenated along the
batch axis and run as one ONNX Runtime call (that is what batching buys); requests whose shapes differ (raw
images of different sizes) run one by one. Uses the CUDA execution provider on a GPU instance when the
installed onnxruntime has it, else the CPU.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(parameters.get("inter_op_thread_count", "0"))
        # Several sessions share the cores (one per instance, each its own process): spinning idle workers
        # would steal them from the session doing the work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[str | tuple[str, dict[str, int]]] = ["CPUExecutionProvider"]
        if args["model_instance_kind"] == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0

    def execute(self, requests):
        feeds = [self._feeds(request) for request in requests]
        responses = [None] * len(requests)
        for indices in self._groups(feeds):
            try:
                results = self._run([feeds[i] for i in indices])
                for i, outputs in zip(indices, results, strict=True):
                    named = zip(self.outputs, outputs, strict=True)
                    tensors = [pb_utils.Tensor(name, array) for name, array in named]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            except Exception as exc:  # an ORT error answers the requests of its group, not the model
                error = pb_utils.TritonError(f"onnxruntime: {exc}")
                for i in indices:
                    responses[i] = pb_utils.InferenceResponse(error=error)
        return responses

    def _feeds(self, request):
        feeds = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:  # optional inputs fall back to the graph's defaults
                feeds[name] = tensor.as_numpy()
        return feeds

    def _groups(self, feeds):
        """Indices of requests that can share one call: same inputs present with the same per-item shapes."""
        groups: dict[object, list[int]] = {}
        for i, feed in enumerate(feeds):
            key = tuple((name, array.shape[1:] if self.batched else array.shape) for name, array in feed.items())
            groups.setdefault(key if self.batched else i, []).append(i)
        return groups.values()

    def _run(self, feeds):
        if len(feeds) == 1:
            return [self.session.run(self.outputs, feeds[0])]
        sizes = [len(next(iter(feed.values()))) for feed in feeds]
        stacked = {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
        outputs = self.session.run(self.outputs, stacked)
        bounds = np.cumsum(sizes)[:-1]
        split = [np.split(array, bounds) for array in outputs]
        return [[parts[i] for parts in split] for i in range(len(feeds))]
