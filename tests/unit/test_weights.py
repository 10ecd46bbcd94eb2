"""``--weights imagenet`` and ``auto``: torchvision's ImageNet weights through torch.hub's cache, offline-safe.

Every test points TORCH_HOME at its own folder and routes HTTPS through a closed loopback port, so nothing here
touches the internet: "offline" is real (the download really fails), and "cached" is a file the test wrote.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torchvision.models import ResNet18_Weights, get_model

from export import weights
from export.__main__ import main
from launcher.process import free_ports
from tests.support.stack import ROOT

EXPECTED_FILE = Path(urlparse(ResNet18_Weights.DEFAULT.url).path).name  # resnet18-f37072fd.pth


@pytest.fixture
def offline_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME and no way out: HTTPS goes to a loopback port nobody listens on."""
    # torch.hub opens URLs through urllib's global opener, which keeps the proxies of its first use for the life of
    # the process: restored after the test, or every later urlopen in this process goes to the dead proxy.
    monkeypatch.setattr(urllib.request, "_opener", None)
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, closed)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _cache_file(home: Path) -> Path:
    """Where torch.hub looks, spelled out independently of the code under test."""
    return home / "hub" / "checkpoints" / EXPECTED_FILE


def test_cached_imagenet_file_is_what_gets_exported(offline_torch_home: Path, tmp_path: Path) -> None:
    torch.manual_seed(3)
    reference = get_model("resnet18", weights=None).eval()
    cached = _cache_file(offline_torch_home)
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)

    repository = tmp_path / "repository"
    assert main(["--model", "resnet18", "--weights", "imagenet", "--repository", str(repository)]) == 0

    batch = np.random.default_rng(1).standard_normal((2, 3, 224, 224), dtype=np.float32)
    session = ort.InferenceSession(str(repository / "resnet18" / "1" / "model.onnx"))
    [logits] = session.run(["LOGITS"], {"INPUT": batch})
    with torch.no_grad():
        eager = reference(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(logits, eager, atol=1e-4)
    assert weights.describe("resnet18", "imagenet") == "imagenet:IMAGENET1K_V1"


def test_offline_imagenet_names_the_file_and_where_to_put_it(
    offline_torch_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", "resnet18", "--weights", "imagenet", "--repository", str(tmp_path / "repo")]) == 1
    error = capsys.readouterr().err
    assert EXPECTED_FILE in error
    assert str(_cache_file(offline_torch_home)) in error
    assert ResNet18_Weights.DEFAULT.url in error
    assert not (tmp_path / "repo" / "resnet18").exists()
    assert not _cache_file(offline_torch_home).exists()  # no half-downloaded file left to trust later


def test_auto_falls_back_to_seed_0_loudly_offline(offline_torch_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert weights.resolve("resnet18", "auto") == "seed:0"
    warning = capsys.readouterr().err
    assert "WARNING" in warning and EXPECTED_FILE in warning and "seed:0" in warning
    assert weights.describe("resnet18", "seed:0") == "seed:0 (random init: predictions are meaningless)"


def test_auto_takes_imagenet_when_cached(offline_torch_home: Path) -> None:
    cached = _cache_file(offline_torch_home)
    cached.parent.mkdir(parents=True)
    torch.manual_seed(4)
    state = get_model("resnet18", weights=None).state_dict()
    torch.save(state, cached)
    assert weights.resolve("resnet18", "auto") == "imagenet"
    from export.network import load_backbone

    assert torch.equal(load_backbone("resnet18", "imagenet").state_dict()["fc.weight"], state["fc.weight"])


def test_other_specs_are_described_as_given() -> None:
    assert weights.describe("resnet50", "s3://models/r50.pth") == "s3://models/r50.pth"
    assert weights.describe("resnet50", "/tmp/some/fine-tuned.pth") == "file:fine-tuned.pth"
    assert weights.describe("resnet50", "imagenet") == "imagenet:IMAGENET1K_V2"
    with pytest.raises(ValueError, match="resolve"):
        weights.describe("resnet50", "auto")


def test_help_does_not_import_torch() -> None:
    """`python -m export --help` was 30 s because it imported torch; the architectures list must not need it."""
    probe = (
        "import sys\n"
        "from export.__main__ import parse_args\n"
        "try:\n    parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'onnxruntime') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "resnet152" in result.stdout and "imagenet" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"
