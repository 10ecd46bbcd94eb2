"""The GPU kit: it builds, every part fits one device call, its torch models match the ONNX ones, and the device
script's CPU fallback runs end to end here (the kit's own trimmed tritonserver, real photos, a report written).

What is left untested is the GPU itself: nvJPEG, CUDA instances and DLPack between the stubs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gpu_kit import build
from gpu_kit.torch_models import Preprocess, classifier

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "build" / "gpu-kit"  # built once (downloads and xz take minutes), then reused


@pytest.fixture(scope="session")
def kit() -> dict:
    """The kit as ``make gpu-kit`` builds it: the manifest, after building whatever part is missing."""
    subprocess.run([sys.executable, "-m", "gpu_kit.build", "--out", str(KIT)], cwd=ROOT, check=True)
    return json.loads((KIT / build.MANIFEST).read_text())


def test_every_part_fits_one_device_call(kit: dict) -> None:
    paths = {part["path"] for part in kit["parts"]}
    assert build.RUNTIME in paths
    assert {path.split("-")[0] for path in paths if path.endswith(".whl")} == {
        "wheels/numpy", "wheels/tritonclient", "wheels/protobuf", "wheels/python_rapidjson", "wheels/ml_dtypes",
        "wheels/grpcio",
    }  # fmt: skip
    assert all(part["bytes"] <= build.PART_LIMIT for part in kit["parts"])
    assert kit["tree_bytes"] <= build.TREE_LIMIT
    assert "numpy-1.26.4-cp312" in " ".join(paths)


def test_runtime_holds_the_server_and_only_the_libraries_it_loads(kit: dict) -> None:
    with tarfile.open(KIT / build.RUNTIME) as archive:
        members = set(archive.getnames())
    server = "site/pytriton/tritonserver"
    assert {
        f"{server}/bin/tritonserver",
        f"{server}/backends/python/libtriton_python.so",
        f"{server}/backends/python/triton_python_backend_utils.py",
        f"{server}/python_backend_stubs/3.12/triton_python_backend_stub",
        "site/nvidia_pytriton.libs/" + next(m for m in members if "libtritonserver" in m).rsplit("/", 1)[1],
    } <= members
    libraries = [m for m in members if m.startswith("site/nvidia_pytriton.libs/lib")]
    assert not [m for m in libraries if "libpython" in m]
    wheel = build.installed_wheel()
    assert len(libraries) < len(list(wheel.libs.iterdir()))  # trimmed: the 32 MB libpython 3.13 stays behind


def test_torch_preprocess_matches_the_onnx_graph(test_repository: Path) -> None:
    session = ort.InferenceSession(str(test_repository / "preprocess" / "1" / "model.onnx"))
    rng = np.random.default_rng(0)
    for height, width in [(224, 224), (256, 341), (300, 451), (480, 640), (1000, 300)]:
        image = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        expected = session.run(None, {"IMAGE": image})[0]
        got = Preprocess()(torch.from_numpy(image)).numpy()
        # 1e-3 in normalised units is under a tenth of a uint8 level (1 / (255 * 0.225) = 0.017).
        assert np.abs(got - expected).max() < 1e-3, (height, width)


def test_torch_classifier_matches_the_onnx_model(test_repository: Path) -> None:
    session = ort.InferenceSession(str(test_repository / "resnet18" / "1" / "model.onnx"))
    batch = np.random.default_rng(1).standard_normal((2, 3, 224, 224), dtype=np.float32)
    with torch.inference_mode():
        logits, probabilities = classifier("resnet18", "seed:0", fp16=False)(torch.from_numpy(batch))
    expected = session.run(["LOGITS", "PROBABILITIES"], {"INPUT": batch})
    assert np.abs(logits.numpy() - expected[0]).max() < 1e-4
    assert np.abs(probabilities.numpy() - expected[1]).max() < 1e-6


def test_device_script_cpu_fallback_end_to_end(kit: dict, tmp_path: Path) -> None:
    """The command the lead runs on the GPU host, here with CPU instances, this Python's stub and ResNet-18."""
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "gpu_kit.device", "--kit", str(KIT), "--out", str(out), "--work", str(tmp_path / "work"),
        "--cpu", "--stub-env", "current", "--arch", "resnet18", "--levels", "1,4", "--warmup", "0.5",
        "--window", "2", "--phone-photos", "1",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    report = json.loads((out / "report.json").read_text())
    assert report["tritonserver"].startswith(str(tmp_path / "work" / "site"))  # the kit's binary, not the wheel's
    assert report["agreement"] == {"classify_cpu_fp32": {"top1_equal": 7, "top5_equal_sets": 7, "photos": 7}}
    rows = report["levels"]
    assert [(row["inputs"], row["concurrency"]) for row in rows] == [
        ("imagenet", 1), ("imagenet", 4), ("phone-12mp", 1), ("phone-12mp", 4),
    ]  # fmt: skip
    for row in rows:
        assert row["requests"] > 0 and not row["errors"]
        assert row["path_cpu_ms"] > 0 and row["cpu_ms_per_request"]["stubs"] > 0
        assert row["resnet_mean_batch"] >= 1 and row["gpu_utilisation_pct"] is None
    assert report["inputs"]["phone-12mp"]["astronaut"] > 2_000_000
    table = (out / "report.md").read_text()
    assert "| cpu | fp32 | phone-12mp | 4 |" in table
