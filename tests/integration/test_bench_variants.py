"""bench.variants: the benchmark repository's ResNet variants differ from the export in the one intended setting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from google.protobuf import json_format

from bench.variants import batching_of, bench_repository, resnet_variant, sweep_repository
from servables.names import CLASSIFY
from servables.repository import read_config
from servables.specs import Batching

MODEL = "resnet18"


def _fields(path: Path) -> dict:
    return json_format.MessageToDict(read_config(path), preserving_proto_field_name=True)


def test_bench_repository_links_the_export_and_adds_an_unbatched_twin(test_repository: Path, tmp_path: Path) -> None:
    target = tmp_path / "models"
    models = bench_repository(test_repository, target, MODEL, "cpu")
    assert (models.resnet, models.nobatch, models.fp16) == (MODEL, f"{MODEL}_nobatch", None)
    others = sorted(path.parent.name for path in test_repository.glob("*/config.pbtxt") if path.parent.name != MODEL)
    assert CLASSIFY in others
    assert sorted(p.name for p in target.iterdir()) == sorted([*others, MODEL, models.nobatch])
    for linked in others:
        assert (target / linked).resolve() == (test_repository / linked).resolve()

    exported = _fields(test_repository / MODEL / "config.pbtxt")
    assert _fields(target / MODEL / "config.pbtxt") == exported  # rewritten, yet the same config
    unbatched = _fields(target / models.nobatch / "config.pbtxt")
    assert "dynamic_batching" not in unbatched and "dynamic_batching" in exported
    assert unbatched | {"name": MODEL, "dynamic_batching": exported["dynamic_batching"]} == exported
    for name in (MODEL, models.nobatch):
        assert (target / name / "1" / "model.onnx").resolve() == (
            test_repository / MODEL / "1" / "model.onnx"
        ).resolve()
        assert (target / name / "labels.txt").read_text() == (test_repository / MODEL / "labels.txt").read_text()


def test_gpu_variants_ask_for_gpu_instances(test_repository: Path) -> None:
    config = resnet_variant("x", test_repository / MODEL, Batching(instances=2), "cuda")
    assert config["instance_group"] == [{"count": 2, "kind": "KIND_GPU"}]
    assert "kind" not in resnet_variant("x", test_repository / MODEL, Batching(), "cpu")["instance_group"][0]


def test_a_sweep_point_serves_one_variant(test_repository: Path, tmp_path: Path) -> None:
    batching = batching_of(test_repository / MODEL)
    point = dataclasses.replace(batching, max_queue_delay_us=10_000, preferred_batch_sizes=(8,))
    sweep_repository(test_repository, tmp_path / "point", MODEL, point, "cpu")
    assert sorted(p.name for p in (tmp_path / "point").iterdir()) == [MODEL]
    assert batching_of(tmp_path / "point" / MODEL) == point
