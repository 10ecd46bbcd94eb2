"""The kit's model repository: the classify ensemble in every variant measured, all served by one Triton.

Configs come from ``servables.configs`` (the production truth) with three changes for the borrowed host:
``preprocess`` and the ResNet run as ``torch_runner`` python models (its ONNX Runtime is CPU-only), the decode
step exists twice (``decode_gpu``: nvJPEG on GPU instances; ``decode_cpu``: libjpeg-turbo on CPU instances), and
the ResNet twice where there is a GPU (fp32 and fp16). Each ensemble is ``classify_<decode>_<precision>``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servables import configs, default, names, repository
from servables.specs import Batching, PreprocessSpec

TORCH_RUNNER = Path(__file__).with_name("python_models") / "torch_runner.py"
DECODE_SOURCE = repository.PYTHON_MODELS / repository.PYTHON_SOURCES[names.DECODE_REDUCED]
WEIGHTS = "seed:0"  # nothing can be downloaded there; the exporter's deterministic init, reproduced per instance
DECODE_CPU_INSTANCES = 8  # half the borrowed host's 16 cores: CPU decode is what the GPU path is measured against


@dataclass(frozen=True)
class Variant:
    decode: str  # "gpu" or "cpu"
    precision: str  # "fp32" or "fp16"

    @property
    def ensemble(self) -> str:
        return f"{names.CLASSIFY}_{self.decode}_{self.precision}"


def variants(gpu: bool, gpu_decode: bool = True) -> list[Variant]:
    """``gpu_decode`` False where the production GPU decoder cannot load: its variants are left out rather than
    measured as the CPU path under a GPU name."""
    if not gpu:
        return [Variant("cpu", "fp32")]
    if not gpu_decode:
        return [Variant("cpu", "fp32"), Variant("cpu", "fp16")]
    return [Variant("gpu", "fp32"), Variant("cpu", "fp32"), Variant("gpu", "fp16")]


def resnet_name(arch: str, precision: str) -> str:
    return f"{arch}_{precision}"


def _kind(gpu: bool) -> str:
    return "KIND_GPU" if gpu else "KIND_CPU"


def _torch_model(config: dict[str, Any], gpu: bool, count: int, **parameters: str) -> dict[str, Any]:
    config = {**config, "backend": "python", "instance_group": [{"count": count, "kind": _kind(gpu)}]}
    # GPU inputs stay on the GPU (DLPack) instead of Triton copying them to the host first.
    extra = {"FORCE_CPU_ONLY_INPUT_TENSORS": "no" if gpu else "yes", **parameters}
    config["parameters"] = {key: {"string_value": value} for key, value in extra.items()}
    return config


def repository_configs(
    arch: str, gpu: bool, batching: Batching | None = None, gpu_decode: bool = True
) -> dict[str, dict[str, Any]]:
    spec = PreprocessSpec()
    # The torch stand-in answers no MODEL_ID: the kit measures speed, and its weights are WEIGHTS.
    classifier = default.classifier(arch, spec)
    models: dict[str, dict[str, Any]] = {}
    wanted = variants(gpu, gpu_decode)
    for decode in sorted({variant.decode for variant in wanted}):
        config = configs.decode_config(f"{names.DECODE}_{decode}", min_side=spec.resize)
        count = 2 if decode == "gpu" else DECODE_CPU_INSTANCES if gpu else 1  # CPU-only: a stub per step
        models[config["name"]] = {**config, "instance_group": [{"count": count, "kind": _kind(decode == "gpu")}]}
    models[names.PREPROCESS] = _torch_model(classifier.preprocess_config(), gpu, 2 if gpu else 1, module="preprocess")
    for precision in sorted({variant.precision for variant in wanted}):
        name = resnet_name(arch, precision)
        resnet = {**classifier.network_config(batching or Batching(), identity=False), "name": name}
        models[name] = _torch_model(
            resnet, gpu, 1, module="classifier", arch=arch, weights=WEIGHTS, precision=precision
        )
    for variant in wanted:
        ensemble = classifier.entry_config(identity=False)
        steps = ensemble["ensemble_scheduling"]["step"]
        steps[0]["model_name"] = f"{names.DECODE}_{variant.decode}"
        steps[-1]["model_name"] = resnet_name(arch, variant.precision)
        models[variant.ensemble] = {**ensemble, "name": variant.ensemble}
    return models


def write_repository(
    target: Path, arch: str, gpu: bool, labels: list[str], gpu_decode: bool = True
) -> dict[str, dict[str, Any]]:
    """Configs, each python model's ``1/model.py`` and the labels where an output names them."""
    models = repository_configs(arch, gpu, gpu_decode=gpu_decode)
    repository.write_configs(target, models)
    for name, config in models.items():
        if config.get("backend") != "python":
            continue
        if "module" in config["parameters"]:
            shutil.copyfile(TORCH_RUNNER, target / name / repository.VERSION / repository.PYTHON_FILE)
        else:  # the production decode model, with the imaging package beside it as export writes it
            repository.write_python_model(target / name / repository.VERSION, DECODE_SOURCE)
    labelled = [
        name
        for name, config in models.items()
        if name.startswith(names.CLASSIFY) or "arch" in config.get("parameters", {})
    ]
    repository.write_labels(target, labelled, labels)
    return models
