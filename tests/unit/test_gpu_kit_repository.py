"""The GPU kit's model repository as configs: each step on the device its variant names, written and read back
through Triton's protobuf (the kit built and run: tests/integration/test_gpu_kit.py)."""

from __future__ import annotations

from pathlib import Path

from gpu_kit.repository import repository_configs, write_repository
from servables import repository


def test_repository_puts_each_step_where_the_variant_says() -> None:
    models = repository_configs("resnet50", gpu=True)
    assert sorted(name for name in models if name.startswith("classify")) == [
        "classify_cpu_fp32", "classify_gpu_fp16", "classify_gpu_fp32",
    ]  # fmt: skip
    assert models["decode_gpu"]["instance_group"][0]["kind"] == "KIND_GPU"
    assert models["decode_cpu"]["instance_group"][0]["kind"] == "KIND_CPU"
    fp16 = models["resnet50_fp16"]
    assert fp16["parameters"]["precision"]["string_value"] == "fp16"
    assert fp16["parameters"]["FORCE_CPU_ONLY_INPUT_TENSORS"]["string_value"] == "no"
    assert fp16["dynamic_batching"]["max_queue_delay_microseconds"] > 0
    steps = models["classify_gpu_fp16"]["ensemble_scheduling"]["step"]
    assert [step["model_name"] for step in steps] == ["decode_gpu", "preprocess", "resnet50_fp16"]
    assert list(repository_configs("resnet18", gpu=False)) == [
        "decode_cpu", "preprocess", "resnet18_fp32", "classify_cpu_fp32",
    ]  # fmt: skip


def test_written_repository_reads_back_through_tritons_protobuf(tmp_path: Path) -> None:
    write_repository(tmp_path, "resnet18", gpu=True, labels=[f"class {i}" for i in range(1000)])
    read = repository.read_repository(tmp_path)
    assert read["resnet18_fp32"].backend == "python"
    assert (tmp_path / "preprocess" / "1" / "model.py").read_text().startswith('"""Triton python-backend model running')
    assert "GpuDecoder" in (tmp_path / "decode_gpu" / "1" / "model.py").read_text()
    assert (tmp_path / "classify_gpu_fp16" / "labels.txt").read_text().splitlines()[999] == "class 999"
