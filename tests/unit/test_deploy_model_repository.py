"""The local model repository check: what is uploaded, what names it, what is refused before any upload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deploy.ecs.errors import DeployError
from deploy.ecs.model_repository import scan_repository

ENSEMBLE = """name: "classify"
platform: "ensemble"
max_batch_size: 8
output [ { name: "CLASSES" data_type: TYPE_STRING dims: [ -1 ] label_filename: "labels.txt" } ]
ensemble_scheduling { step [ { model_name: "resnet18" model_version: -1 } ] }
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The smallest repository the checks care about: one ONNX model and an ensemble with labels."""
    root = tmp_path / "model_repository"
    (root / "resnet18" / "1").mkdir(parents=True)
    (root / "resnet18" / "config.pbtxt").write_text('name: "resnet18"\nbackend: "onnxruntime"\nmax_batch_size: 8\n')
    (root / "resnet18" / "1" / "model.onnx").write_bytes(b"\x08\x07onnx")
    (root / "classify" / "1").mkdir(parents=True)
    (root / "classify" / "config.pbtxt").write_text(ENSEMBLE)
    (root / "classify" / "labels.txt").write_text("tench\n")
    return root


def test_scan_lists_every_visible_file(root: Path) -> None:
    (root / ".ipynb_checkpoints").mkdir()  # Triton would take a folder for a model
    (root / ".ipynb_checkpoints" / "config.pbtxt").write_text("junk")
    (root / "resnet18" / ".DS_Store").write_bytes(b"junk")
    repository = scan_repository(root)
    assert repository.models == ("classify", "resnet18")
    assert [f.relative for f in repository.files] == [
        "classify/config.pbtxt",
        "classify/labels.txt",
        "resnet18/1/model.onnx",
        "resnet18/config.pbtxt",
    ]
    assert repository.empty_dirs == ("classify/1",)  # S3 cannot hold it; the upload marks it
    assert repository.total_bytes == sum(f.path.stat().st_size for f in repository.files)


def test_digest_follows_content_only(root: Path) -> None:
    first = scan_repository(root).digest
    model = root / "resnet18" / "1" / "model.onnx"
    model.touch()  # a new mtime is not a new model
    assert scan_repository(root).digest == first
    model.write_bytes(b"\x08\x07onnY")  # same size, other bytes
    assert scan_repository(root).digest != first


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "resnet18" / "1" / "model.onnx").unlink(), "resnet18/1/model.onnx is missing"),
        (lambda root: (root / "classify" / "labels.txt").unlink(), "classify/labels.txt is missing"),
        (lambda root: (root / "classify" / "1").rmdir(), "classify/1/ is missing"),
        (
            lambda root: (root / "classify" / "config.pbtxt").write_text(ENSEMBLE.replace("resnet18", "resnet50")),
            "classify calls resnet50, which is not in the repository",
        ),
    ],
)
def test_an_incomplete_export_is_refused_with_the_fix(
    root: Path, damage: Callable[[Path], object], message: str
) -> None:
    damage(root)
    with pytest.raises(DeployError, match=f"{message}.*run `python -m export` first"):
        scan_repository(root)


def test_a_missing_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="no model repository at .*python -m export"):
        scan_repository(tmp_path / "absent")


def test_a_config_triton_would_reject_is_refused(root: Path) -> None:
    (root / "resnet18" / "config.pbtxt").write_text('name: "resnet18"\nbackend: "onnxruntime"\nmax_batch: 8\n')
    with pytest.raises(DeployError, match=r"resnet18/config.pbtxt.*max_batch"):
        scan_repository(root)


def test_a_model_named_unlike_its_folder_is_refused(root: Path) -> None:
    (root / "resnet18").rename(root / "resnet34")
    (root / "classify" / "config.pbtxt").write_text(ENSEMBLE.replace("resnet18", "resnet34"))
    with pytest.raises(DeployError, match="names the model 'resnet18'"):
        scan_repository(root)
