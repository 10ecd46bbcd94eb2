"""Small real classifiers for the tests: torchvision networks fine-tuned for a few steps on generated images, so
their answers follow what the images show (a colour, the direction of stripes) rather than a random init."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from servables.specs import PreprocessSpec

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}  # RGB
STRIPES = ("horizontal stripes", "vertical stripes")


def colour_image(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [size, size, 3]`` RGB: the colour at a random brightness, noise, and a darker square somewhere."""
    base = np.asarray(COLOURS[label], np.float32) * rng.uniform(0.6, 1.1)
    image = base + rng.normal(0, 25, (size, size, 3))
    top, left = rng.integers(0, size // 2, 2)
    image[top : top + size // 3, left : left + size // 3] *= 0.5
    return np.clip(image, 0, 255).astype(np.uint8)


def stripes_image(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [size, size, 3]`` RGB: grey stripes of a random period and phase, horizontal or vertical."""
    period = rng.integers(6, size // 4)
    wave = (np.arange(size) + rng.integers(0, period)) % period < period // 2
    plane = np.repeat(wave[:, None], size, axis=1) if label == STRIPES[0] else np.repeat(wave[None, :], size, axis=0)
    image = np.where(plane[..., None], rng.uniform(160, 240), rng.uniform(10, 90)) + rng.normal(0, 12, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def normalised(images: np.ndarray, spec: PreprocessSpec) -> torch.Tensor:
    """RGB ``uint8 [N, H, W, 3]`` as the network sees it after the preprocessing: ``float32 [N, 3, H, W]``."""
    scaled = (images.astype(np.float32) / 255 - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(0, 3, 1, 2)))


def fine_tune(
    network: nn.Module,
    labels: list[str],
    draw: Callable[[str, int, np.random.Generator], np.ndarray],
    spec: PreprocessSpec,
    steps: int,
    batch: int = 16,
) -> nn.Module:
    """A few Adam steps on freshly drawn images of each label, at the network's input size. Batch norms follow
    the batches closely (momentum 0.5, not the 0.1 or 0.01 of a long training), so a few steps leave running
    statistics that fit the weights."""
    rng = np.random.default_rng(0)
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.5
    network.train()
    for _ in range(steps):
        targets = rng.integers(0, len(labels), batch)
        images = np.stack([draw(labels[t], spec.crop, rng) for t in targets])
        loss = nn.functional.cross_entropy(network(normalised(images, spec)), torch.from_numpy(targets))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return network.eval()


def accuracy(
    network: nn.Module,
    labels: list[str],
    draw: Callable[[str, int, np.random.Generator], np.ndarray],
    spec: PreprocessSpec,
) -> float:
    rng = np.random.default_rng(1)
    targets = np.arange(len(labels)).repeat(8)
    images = np.stack([draw(labels[t], spec.crop, rng) for t in targets])
    with torch.no_grad():
        guessed = network(normalised(images, spec)).argmax(1).numpy()
    return float((guessed == targets).mean())


def save(network: nn.Module, path: Path) -> Path:
    torch.save(network.state_dict(), path)
    return path
