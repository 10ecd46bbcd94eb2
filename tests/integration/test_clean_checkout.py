"""``make serve`` leaves the checkout clean: on a host where torch finds real ImageNet weights, the export it runs
writes which weights it used where git does not look (the network's graph and ``identity.json`` in the ignored
version folder), never into the committed ``config.pbtxt`` files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from torchvision.models import get_model

from export.weights import imagenet_weights
from tests.support.stack import ROOT
from tests.unit import test_weights

offline_torch_home = test_weights.offline_torch_home  # an empty TORCH_HOME, and no way out to the internet


def _git(checkout: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args]
    return subprocess.run(command, cwd=checkout, capture_output=True, text=True, check=True).stdout


def test_serves_export_with_real_weights_leaves_the_checkout_clean(offline_torch_home: Path, tmp_path: Path) -> None:
    # A checkout of the committed repository layout, in a git repository of its own.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    tracked = subprocess.run(["git", "ls-files", "model_repository", ".gitignore"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    for name in tracked:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, checkout / name)
    _git(checkout, "init", "-q")
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-q", "-m", "checkout")

    # Weights where torch looks: a state dict of ResNet-50, under the file name torchvision's weights carry.
    weights = imagenet_weights("resnet50")
    weights.cache_path.parent.mkdir(parents=True)
    torch.manual_seed(5)
    torch.save(get_model("resnet50").state_dict(), weights.cache_path)

    # What `make serve` runs first (the Makefile's `models`): the export with its default weights, auto.
    repository = checkout / "model_repository"
    export = [sys.executable, "-m", "export", "--model", "resnet50", "--repository", str(repository)]
    subprocess.run(export, cwd=ROOT, check=True, capture_output=True)

    identity = json.loads((repository / "resnet50" / "1" / "identity.json").read_text())
    assert identity == {"version": "1", "weights": weights.description}  # imagenet:IMAGENET1K_V2, really used
    assert _git(checkout, "status", "--porcelain", "--untracked-files=all") == ""
