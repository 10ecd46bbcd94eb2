"""--tensorrt: the uploaded copy's ResNet runs on ONNX Runtime's TensorRT accelerator on a GPU instance, every other
model and the committed configs unchanged; the result parses through Triton's protobuf, strictly."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format

from deploy.ecs.tensorrt import ENGINE_CACHE, with_tensorrt
from servables.repository import CONFIG_FILE, read_repository, to_pbtxt

COMMITTED = Path(__file__).resolve().parents[2] / "model_repository"


def test_the_classifier_runs_on_tensorrt_in_fp16_with_its_engine_built_at_warm_up(tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in COMMITTED.glob(f"*/{CONFIG_FILE}")}
    assert with_tensorrt(COMMITTED, tmp_path / "copy") == ["resnet50"]
    configs = read_repository(tmp_path / "copy")
    resnet = configs["resnet50"]
    (accelerator,) = resnet.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": ENGINE_CACHE,
        "trt_profile_min_shapes": "INPUT:1x3x224x224",
        "trt_profile_opt_shapes": "INPUT:16x3x224x224",
        "trt_profile_max_shapes": f"INPUT:{resnet.max_batch_size}x3x224x224",
    }
    assert [(g.kind, g.count) for g in resnet.instance_group] == [(resnet.instance_group[0].KIND_GPU, 1)]
    assert [w.batch_size for w in resnet.model_warmup] == [1, resnet.max_batch_size]
    assert all(
        w.inputs["INPUT"].zero_data and list(w.inputs["INPUT"].dims) == [3, 224, 224] for w in resnet.model_warmup
    )
    # Strict: every field known to Triton's ModelConfig, as the exporter's writer demands.
    to_pbtxt(json_format.MessageToDict(resnet, preserving_proto_field_name=True))
    # Everything else as committed; the committed files untouched.
    for name, config in read_repository(COMMITTED).items():
        if name != "resnet50":
            assert configs[name] == config, name
    assert {p: p.read_bytes() for p in COMMITTED.glob(f"*/{CONFIG_FILE}")} == before
