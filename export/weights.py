"""Where a network's weights come from, and a description of what was used.

``imagenet`` is torchvision's published ImageNet weights for the architecture (its DEFAULT enum), fetched
through torch.hub's own download and cache (``$TORCH_HOME/hub/checkpoints``), so a file placed there by hand is
used offline. ``auto`` is ``imagenet`` when that works and else the deterministic random init ``seed:0``, said
loudly. torch and torchvision are imported inside functions: ``python -m export --help`` must not pay for them.
"""

from __future__ import annotations

import difflib
import http.client
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # the default classifier's
IMAGENET = "imagenet"
AUTO = "auto"
RANDOM_FALLBACK = "seed:0"
RANDOM_NOTE = "random init: predictions are meaningless"
# A stalled connection must not hang `make serve`: each socket operation of the download gets this long.
DOWNLOAD_TIMEOUT_S = 30.0
SPECS_HELP = "seed:N (random init), imagenet, auto, a .pth state dict or s3://bucket/key"


class WeightsUnavailable(RuntimeError):
    """The ImageNet weights are neither cached nor downloadable; the message says where to put the file."""


@dataclass(frozen=True)
class ImagenetWeights:
    """torchvision's DEFAULT ImageNet weights of one architecture and where torch.hub caches them."""

    arch: str
    name: str  # the enum member, e.g. IMAGENET1K_V2
    url: str

    @property
    def filename(self) -> str:
        return Path(urlparse(self.url).path).name

    @property
    def cache_path(self) -> Path:
        """torch.hub's checkpoint path, read when asked so that ``TORCH_HOME`` set at run time counts."""
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    @property
    def description(self) -> str:
        return f"{IMAGENET}:{self.name}"


def imagenet_weights(arch: str) -> ImagenetWeights:
    from torchvision.models import get_model_weights

    check_architecture(arch)
    default = get_model_weights(arch).DEFAULT
    return ImagenetWeights(arch, default.name, default.url)


def torchvision_classifiers() -> list[str]:
    import torchvision.models
    from torchvision.models import list_models

    return list(list_models(module=torchvision.models))


def check_architecture(arch: str) -> None:
    """Any of torchvision's classification architectures (the default stack's ``--model`` takes the ResNets)."""
    known = torchvision_classifiers()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(
            f"unknown architecture {arch!r}: not one of torchvision's classifiers; {hint}"
            "torchvision.models.list_models(module=torchvision.models) lists them"
        )


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def fetch_imagenet(arch: str) -> ImagenetWeights:
    """Make sure the ImageNet weights are in torch.hub's cache, downloading them (hash-checked) when missing."""
    import torch.hub

    weights = imagenet_weights(arch)
    path = weights.cache_path
    if path.is_file():
        return weights
    path.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(weights.filename)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(weights.url, str(path), match.group(1) if match else None, progress=False)
    except (OSError, http.client.HTTPException) as exc:
        raise WeightsUnavailable(
            f"the ImageNet weights of {arch} ({weights.description}) are not cached and could not be downloaded "
            f"({exc}). Download {weights.url} elsewhere and place the file {weights.filename} at {path} "
            "(torch.hub's cache; set TORCH_HOME to move it), or pass --weights seed:0 for a random init."
        ) from None
    return weights


def resolve(arch: str, weights: str) -> str:
    """``auto`` becomes ``imagenet`` when its file is cached or downloads now, else ``seed:0`` with a loud warning."""
    if weights != AUTO:
        return weights
    try:
        fetch_imagenet(arch)
    except WeightsUnavailable as exc:
        banner = "!" * 100
        print(
            f"{banner}\nWARNING: {exc}\nFalling back to {RANDOM_FALLBACK} ({RANDOM_NOTE}).\n{banner}",
            file=sys.stderr,
            flush=True,
        )
        return RANDOM_FALLBACK
    return IMAGENET


def describe(arch: str, weights: str) -> str:
    """What a resolved weight spec means, for people reading the model's metadata or the launcher's banner."""
    if weights == AUTO:
        raise ValueError("resolve() the weights before describing them")
    if weights == IMAGENET:
        return imagenet_weights(arch).description
    if weights.startswith("seed:"):
        return f"{weights} ({RANDOM_NOTE})"
    if weights.startswith("s3://"):
        return weights
    return f"file:{Path(weights).name}"
