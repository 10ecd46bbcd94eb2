"""The repository ``make serve`` exports: torchvision's ImageNet ResNet as the default classifier (``classify``,
``classify_pixels``), and the edge detector (``edges``, ``canny``)."""

from __future__ import annotations

from typing import Any

from servables import edges
from servables.classification import Classifier
from servables.specs import Batching, PreprocessSpec


def classifier(arch: str, spec: PreprocessSpec | None = None) -> Classifier:
    return Classifier.default(arch, spec or PreprocessSpec())


def model_configs(arch: str, spec: PreprocessSpec, batching: Batching) -> dict[str, dict[str, Any]]:
    """Every model of the default repository, by name."""
    return classifier(arch, spec).configs(batching) | edges.configs()
