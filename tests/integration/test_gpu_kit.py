"""The GPU kit: it builds (the runtime from the installed wheel, offline; the device's wheels from the package index,
once), every part fits one device call, its torch models match the ONNX ones, and the device script's CPU fallback
runs end to end here (the kit's own trimmed tritonserver, real photos, a report written).

What is left untested is the GPU itself: nvJPEG, CUDA instances and DLPack between the stubs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gpu_kit import build
from gpu_kit.torch_models import Preprocess, classifier

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "build" / "gpu-kit"  # what `make gpu-kit` builds: each part made once (xz takes minutes), then reused
PYTHONS = sorted({build.DEVICE_PYTHON, f"{sys.version_info.major}.{sys.version_info.minor}"})  # as make gpu-kit


@pytest.fixture(scope="session")
def kit() -> Path:
    """The kit's runtime (the trimmed tritonserver), packed from the installed wheel when missing: no network."""
    if not (KIT / build.RUNTIME).is_file():
        KIT.mkdir(parents=True, exist_ok=True)
        build.pack_runtime(build.installed_wheel(), PYTHONS, KIT)
    return KIT


def _index_reachable() -> bool:
    """Whether pip's index answers (its proxy settings apply): the device wheels come from it once."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        with urllib.request.urlopen(f"{index.rstrip('/')}/numpy/", timeout=10):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def manifest(kit: Path) -> dict[str, Any]:
    """The whole kit as `make gpu-kit` builds it: the device's wheels too, downloaded when missing (the one step
    that needs a package index)."""
    try:
        return build.build(kit, ROOT, PYTHONS)
    except subprocess.CalledProcessError:
        if not _index_reachable():
            pytest.skip("no package index reachable: the device wheels need one once (make gpu-kit)")
        raise


def test_every_part_fits_one_device_call(manifest: dict[str, Any]) -> None:
    paths = {part["path"] for part in manifest["parts"]}
    assert build.RUNTIME in paths
    assert {path.split("-")[0] for path in paths if path.endswith(".whl")} == {
        "wheels/numpy", "wheels/tritonclient", "wheels/protobuf", "wheels/python_rapidjson", "wheels/ml_dtypes",
        "wheels/grpcio",
    }  # fmt: skip
    assert all(part["bytes"] <= build.PART_LIMIT for part in manifest["parts"])
    assert manifest["tree_bytes"] <= build.TREE_LIMIT
    assert "numpy-1.26.4-cp312" in " ".join(paths)


def test_runtime_holds_the_server_and_only_the_libraries_it_loads(kit: Path) -> None:
    with tarfile.open(kit / build.RUNTIME) as archive:
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


def test_device_script_cpu_fallback_end_to_end(kit: Path, tmp_path: Path) -> None:
    """The command the lead runs on the GPU host, here with CPU instances, this Python's stub and ResNet-18."""
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "gpu_kit.device", "--kit", str(kit), "--out", str(out), "--work", str(tmp_path / "work"),
        "--cpu", "--stub-env", "current", "--arch", "resnet18", "--levels", "4", "--warmup", "0.5",
        "--window", "2", "--phone-photos", "1",
    ]  # fmt: skip
    subprocess.run(command, cwd=ROOT, check=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    report = json.loads((out / "report.json").read_text())
    assert report["tritonserver"].startswith(str(tmp_path / "work" / "site"))  # the kit's binary, not the wheel's
    assert report["agreement"] == {"classify_cpu_fp32": {"top1_equal": 7, "top5_equal_sets": 7, "photos": 7}}
    rows = report["levels"]
    assert [(row["inputs"], row["concurrency"]) for row in rows] == [("imagenet", 4), ("phone-12mp", 4)]
    for row in rows:
        assert row["requests"] > 0 and not row["errors"]
        assert row["path_cpu_ms"] > 0 and row["cpu_ms_per_request"]["stubs"] > 0
        assert row["resnet_mean_batch"] >= 1 and row["gpu_utilisation_pct"] is None
    assert report["inputs"]["phone-12mp"]["astronaut"] > 2_000_000
    table = (out / "report.md").read_text()
    assert "| cpu | fp32 | phone-12mp | 4 |" in table
