"""The classify pipeline's two ONNX models as PyTorch modules, for hosts whose ONNX Runtime cannot reach the GPU.

The borrowed GPU host has a CPU-only ``onnxruntime``, so its Triton runs ``preprocess`` and the ResNet in torch
on CUDA instead: the same arithmetic (``export.preprocess``'s resize rule, bilinear with half-pixel centres,
centre crop, BGR -> RGB, ImageNet normalisation) and the same network and weights (``export.network``), checked
against the ONNX models on the CPU by tests/test_gpu_kit.py.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from export.network import Classifier, load_backbone
from export.preprocess import resized_size
from servables.specs import PreprocessSpec


class Preprocess(nn.Module):
    """``uint8 [1, H, W, 3]`` BGR -> ``float32 [1, 3, crop, crop]``, as ``preprocess.onnx`` computes it."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, spec: PreprocessSpec | None = None) -> None:
        super().__init__()
        self.spec = spec = spec or PreprocessSpec()
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = int(image.shape[1]), int(image.shape[2])
        new_h, new_w = resized_size(height, width, self.spec.resize)
        planes = image.permute(0, 3, 1, 2).float()
        resized = functional.interpolate(planes, size=(new_h, new_w), mode="bilinear", align_corners=False)
        crop = self.spec.crop
        top, left = (new_h - crop) // 2, (new_w - crop) // 2
        rgb = resized[:, :, top : top + crop, left : left + crop].flip(1)
        return (rgb / 255.0 - self.mean) / self.std


def classifier(arch: str, weights: str, fp16: bool) -> Classifier:
    """The exporter's network with the exporter's weights (``seed:N`` reproduces the ONNX model's init)."""
    return Classifier(load_backbone(arch, weights), fp16=fp16)
