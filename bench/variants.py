"""The benchmark's model repositories: the exported models, plus ResNet variants that differ in one setting.

A variant is the exported ResNet's ``model.onnx`` and labels (linked, not copied) under a config written by the
export's own writer (``Classifier.network_config``) from the exported config's batching settings with
one change: batching off (scenario 5), FP16 weights, or a sweep point. So a comparison between two variants
measures that one setting and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servables import default
from servables.names import LABELS
from servables.repository import VERSION, read_config, write_configs
from servables.specs import Batching, PreprocessSpec

NOBATCH_SUFFIX = "_nobatch"
FP16_SUFFIX = "_fp16"


class MissingExport(RuntimeError):
    """The repository has no exported model to benchmark; the message says how to export it."""


def exported_model(repository: Path, model: str) -> Path:
    """The model's folder, checked to hold an exported ``model.onnx``."""
    folder = repository / model
    if not (folder / VERSION / "model.onnx").is_file():
        raise MissingExport(
            f"no exported {model} in {repository}: run `python -m export --model {model} --repository "
            f"{repository}` (or `make models`) first"
        )
    return folder


def batching_of(folder: Path) -> Batching:
    """The batching settings a ResNet config was written with: the inverse of ``network_config``."""
    config = read_config(folder / "config.pbtxt")
    instances = config.instance_group[0].count if config.instance_group else 1
    if not config.HasField("dynamic_batching"):
        return Batching(max_batch_size=config.max_batch_size, instances=instances, enabled=False)
    batching = config.dynamic_batching
    return Batching(
        max_batch_size=config.max_batch_size,
        max_queue_delay_us=batching.max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(batching.preferred_batch_size),
        max_queue_size=batching.default_queue_policy.max_queue_size,
        queue_timeout_us=batching.default_queue_policy.default_timeout_microseconds,
        instances=instances,
    )


def _crop(folder: Path) -> int:
    return int(read_config(folder / "config.pbtxt").input[0].dims[-1])


def resnet_variant(name: str, source: Path, batching: Batching, device: str) -> dict[str, Any]:
    """The config of a ResNet named ``name`` serving ``source``'s network with ``batching``."""
    crop = _crop(source)
    # The network's config reads only the crop of the preprocessing spec (the ResNet's input size).
    spec = PreprocessSpec(resize=max(crop, PreprocessSpec.resize), crop=crop)
    config = default.classifier(name, spec).network_config(batching)
    if device == "cuda":  # explicit, so every variant runs on the GPU whatever the exported config leaves open
        config["instance_group"] = [{**group, "kind": "KIND_GPU"} for group in config["instance_group"]]
    return config


def _write_variant(repository: Path, source: Path, config: Mapping[str, Any]) -> None:
    """``source``'s network and labels under a new config (and name) in ``repository``."""
    folder = repository / config["name"]
    (folder / VERSION).mkdir(parents=True)
    (folder / VERSION / "model.onnx").symlink_to((source / VERSION / "model.onnx").resolve())
    if (source / LABELS).is_file():
        (folder / LABELS).symlink_to((source / LABELS).resolve())
    write_configs(repository, {config["name"]: dict(config)})


def _link(repository: Path, source: Path) -> None:
    (repository / source.name).symlink_to(source.resolve(), target_is_directory=True)


@dataclass(frozen=True)
class BenchModels:
    """Names of the models the scenarios call in the benchmark repository."""

    resnet: str
    nobatch: str
    fp16: str | None


def bench_repository(
    source: Path, target: Path, model: str, device: str, fp16_source: Path | None = None
) -> BenchModels:
    """The exported repository's models, its ResNet rewritten for ``device``, a ``_nobatch`` twin and, given an
    FP16 export, an ``_fp16`` twin."""
    resnet = exported_model(source, model)
    target.mkdir(parents=True)
    for config_path in sorted(source.glob("*/config.pbtxt")):
        if config_path.parent.name != model:
            _link(target, config_path.parent)
    batching = batching_of(resnet)
    _write_variant(target, resnet, resnet_variant(model, resnet, batching, device))
    nobatch = model + NOBATCH_SUFFIX
    unbatched = dataclasses.replace(batching, enabled=False)
    _write_variant(target, resnet, resnet_variant(nobatch, resnet, unbatched, device))
    fp16 = None
    if fp16_source is not None:
        fp16, fp16_resnet = model + FP16_SUFFIX, exported_model(fp16_source, model)
        _write_variant(target, fp16_resnet, resnet_variant(fp16, fp16_resnet, batching, device))
    return BenchModels(model, nobatch, fp16)


def sweep_repository(source: Path, target: Path, model: str, batching: Batching, device: str) -> None:
    """One ResNet variant under the model's own name (the sweep sends it preprocessed tensors)."""
    resnet = exported_model(source, model)
    target.mkdir(parents=True)
    _write_variant(target, resnet, resnet_variant(model, resnet, batching, device))
