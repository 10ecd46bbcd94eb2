"""torchvision ResNet -> ONNX with a dynamic batch axis, and the parity check against eager PyTorch."""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torchvision.models import get_model, get_model_weights

from export.weights import ARCHITECTURES, IMAGENET, check_architecture, fetch_imagenet

__all__ = ["ARCHITECTURES", "Classifier", "check_parity", "class_names", "export_onnx", "load_backbone"]

NUM_CLASSES = 1000


class Classifier(nn.Module):
    """ResNet with both heads Triton serves: raw ``LOGITS`` and their softmax, ``PROBABILITIES``.

    The softmax lives in the graph so a client asking Triton for top-k gets probabilities over all classes.
    With ``fp16`` the network runs in half precision while inputs and outputs stay float32, so the model's
    interface (and its Triton config) does not change.
    """

    def __init__(self, backbone: nn.Module, fp16: bool = False) -> None:
        super().__init__()
        self.backbone = backbone.half() if fp16 else backbone
        self.dtype = torch.float16 if fp16 else torch.float32
        self.eval()  # inference only; the exporter restores this mode after tracing

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.backbone(images.to(self.dtype)).float()
        return logits, torch.softmax(logits, dim=1)


def load_backbone(arch: str, weights: str) -> nn.Module:
    """``seed:N`` (deterministic random init), ``imagenet`` (torchvision's, through torch.hub's cache), a local
    ``.pth`` state dict, or ``s3://bucket/key``. ``auto`` is resolved before this (``export.weights.resolve``)."""
    check_architecture(arch)
    if weights == IMAGENET:
        # Cached (or downloaded) first, so torchvision's own loader finds the file and never touches the network.
        return get_model(arch, weights=fetch_imagenet(arch).name).eval()
    if weights.startswith("seed:"):
        try:
            seed = int(weights.removeprefix("seed:"))
        except ValueError:
            raise ValueError(f"weights {weights!r}: expected seed:<integer>") from None
        torch.manual_seed(seed)
        return get_model(arch, weights=None, num_classes=NUM_CLASSES).eval()
    model = get_model(arch, weights=None, num_classes=NUM_CLASSES)
    model.load_state_dict(torch.load(_weights_file(weights), map_location="cpu", weights_only=True))
    return model.eval()


def _weights_file(weights: str) -> io.BytesIO | Path:
    if weights.startswith("s3://"):
        import boto3

        bucket, _, key = weights.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise ValueError(f"weights {weights!r}: expected s3://bucket/key")
        buffer = io.BytesIO()
        boto3.client("s3").download_fileobj(bucket, key, buffer)
        buffer.seek(0)
        return buffer
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights {weights!r}: not seed:N, s3://bucket/key, or an existing .pth file")
    return path


def class_names(arch: str) -> list[str]:
    """ImageNet class names, from the metadata torchvision ships with its weight enums (no download)."""
    return list(get_model_weights(arch).DEFAULT.meta["categories"])


def export_onnx(model: Classifier, crop: int, opset: int = 17) -> onnx.ModelProto:
    """Trace to ONNX with a dynamic batch axis: Triton's dynamic batcher stacks requests along it."""
    example = torch.zeros(2, 3, crop, crop)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=["INPUT"],
            output_names=["LOGITS", "PROBABILITIES"],
            dynamic_axes={"INPUT": {0: "batch"}, "LOGITS": {0: "batch"}, "PROBABILITIES": {0: "batch"}},
            opset_version=opset,
        )
        proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto


FP32_TOLERANCE = 1e-4
FP16_RELATIVE_TOLERANCE = 1e-2


def check_parity(model: Classifier, proto: onnx.ModelProto, crop: int, fp16: bool = False) -> float:
    """Max abs difference of ONNX Runtime vs eager PyTorch on a random batch; raises past the tolerance.

    fp32 must agree within 1e-4 absolute; fp16 within 1% of the largest logit, half precision's own error.
    """
    batch = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 3, crop, crop), dtype=np.float32))
    with torch.no_grad():
        eager = [t.numpy() for t in model(batch)]
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_out = session.run(["LOGITS", "PROBABILITIES"], {"INPUT": batch.numpy()})
    worst = max(float(np.abs(a - b).max()) for a, b in zip(eager, onnx_out, strict=True))
    tolerance = FP16_RELATIVE_TOLERANCE * max(1.0, float(np.abs(eager[0]).max())) if fp16 else FP32_TOLERANCE
    if not worst <= tolerance:
        raise AssertionError(f"ONNX vs eager PyTorch differ by {worst:.3g} (> {tolerance:.3g})")
    return worst
