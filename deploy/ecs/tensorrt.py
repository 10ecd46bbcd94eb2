"""``--tensorrt``: the ECS repository's ResNet on TensorRT, as NVIDIA's own ResNet-50 ONNX example on Triton runs it.

The committed configs stay the CPU-and-GPU ones (ONNX Runtime, instance kind left to Triton). For GPU tasks the
deploy can upload a copy whose classifier (the model that takes ``INPUT``, fixed 3x224x224 with a dynamic batch)
runs ONNX Runtime with the TensorRT execution accelerator in FP16 on a GPU instance, with an optimisation profile
over its batch sizes and a warm-up at the smallest and largest batch, so the engine is built while Triton loads the
model, before it reports ready, not on the first requests. The preprocessing and edge graphs take images of any
size, which would rebuild an engine per shape: they stay on ONNX Runtime's CUDA provider.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from servables import names
from servables.repository import CONFIG_FILE, read_repository

# Inside the container: the engine lives as long as the task (each new task builds it during its warm-up).
ENGINE_CACHE = "/tmp/tritonserve-tensorrt"
WORKSPACE_BYTES = 1 << 30
OPTIMAL_BATCH = 16


def is_classifier(config: model_config_pb2.ModelConfig) -> bool:
    return config.backend == "onnxruntime" and [tensor.name for tensor in config.input] == [names.INPUT]


def on_tensorrt(config: model_config_pb2.ModelConfig, precision: str = "FP16") -> model_config_pb2.ModelConfig:
    """A copy of the classifier's config on a GPU instance with the TensorRT accelerator."""
    result = model_config_pb2.ModelConfig()
    result.CopyFrom(config)
    (tensor,) = config.input
    shape = "x".join(str(d) for d in tensor.dims)
    batches = {"min": 1, "opt": min(OPTIMAL_BATCH, config.max_batch_size), "max": config.max_batch_size}
    accelerator = result.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    for key, value in {
        "precision_mode": precision,
        "max_workspace_size_bytes": str(WORKSPACE_BYTES),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": ENGINE_CACHE,
        **{f"trt_profile_{kind}_shapes": f"{tensor.name}:{batch}x{shape}" for kind, batch in batches.items()},
    }.items():
        accelerator.parameters[key] = value
    del result.instance_group[:]
    result.instance_group.add(count=1, kind=model_config_pb2.ModelInstanceGroup.KIND_GPU)
    del result.model_warmup[:]
    for batch in sorted({batches["min"], batches["max"]}):
        warmup = result.model_warmup.add(name=f"tensorrt_engine_batch_{batch}", batch_size=batch)
        warmup.inputs[tensor.name].data_type = tensor.data_type
        warmup.inputs[tensor.name].dims.extend(tensor.dims)
        warmup.inputs[tensor.name].zero_data = True
    return result


def with_tensorrt(repository: Path, target: Path) -> list[str]:
    """``target``: a copy of ``repository`` (files hard-linked where they can be) whose classifiers run on TensorRT;
    returns their names."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(repository, target, copy_function=_link_or_copy, ignore=shutil.ignore_patterns("__pycache__"))
    changed = []
    for name, config in read_repository(target).items():
        if is_classifier(config):
            path = target / name / CONFIG_FILE
            path.unlink()  # a link to the committed file: write a new one, not through it
            path.write_text(text_format.MessageToString(on_tensorrt(config)))
            changed.append(name)
    return changed


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
