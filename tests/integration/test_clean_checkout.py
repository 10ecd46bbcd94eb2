"""``make serve`` leaves the checkout clean: on a host where torch finds real ImageNet weights, the export it runs
writes which weights it used where git does not look (the network's graph and ``identity.json`` in the ignored
version folder), never into the committed ``config.pbtxt`` files.

The checkout here commits the test model's layout, as this repository commits the default model's (the same
builders write both: tests/unit/test_export.py holds the committed files to them), and runs the export `make serve
MODEL=resnet18` runs: ResNet-18 proves what ResNet-50 would, in a quarter of the time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from torchvision.models import get_model

from export.weights import imagenet_weights
from servables import default
from servables import repository as repo
from servables.specs import Batching, PreprocessSpec
from tests.support.stack import ROOT, TEST_MODEL
from tests.unit import test_weights

offline_torch_home = test_weights.offline_torch_home  # an empty TORCH_HOME, and no way out to the internet


def _git(checkout: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args]
    return subprocess.run(command, cwd=checkout, capture_output=True, text=True, check=True).stdout


def test_serves_export_with_real_weights_leaves_the_checkout_clean(offline_torch_home: Path, tmp_path: Path) -> None:
    # A checkout with the committed layout (the configs the export's defaults write, and .gitignore), in a git
    # repository of its own.
    checkout = tmp_path / "checkout"
    repository = checkout / "model_repository"
    repo.write_configs(repository, default.model_configs(TEST_MODEL, PreprocessSpec(), Batching()))
    shutil.copyfile(ROOT / ".gitignore", checkout / ".gitignore")
    _git(checkout, "init", "-q")
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-q", "-m", "checkout")

    # Weights where torch looks: a state dict of the network, under the file name torchvision's weights carry.
    weights = imagenet_weights(TEST_MODEL)
    weights.cache_path.parent.mkdir(parents=True)
    torch.manual_seed(5)
    torch.save(get_model(TEST_MODEL).state_dict(), weights.cache_path)

    # What `make serve` runs first (the Makefile's `models`): the export with its default weights, auto.
    export = [sys.executable, "-m", "export", "--model", TEST_MODEL, "--repository", str(repository)]
    subprocess.run(export, cwd=ROOT, check=True, capture_output=True)

    identity = json.loads((repository / TEST_MODEL / "1" / "identity.json").read_text())
    assert identity == {"version": "1", "weights": weights.description}  # imagenet:IMAGENET1K_V1, really used
    assert _git(checkout, "status", "--porcelain", "--untracked-files=all") == ""
