"""A torchvision classification network -> ONNX with a dynamic batch axis, the parity check against eager PyTorch,
and the identity every exported network answers with (``MODEL_ID``)."""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torchvision.models import get_model, get_model_weights

from export.weights import ARCHITECTURES, IMAGENET, check_architecture, fetch_imagenet
from servables import names
from servables.classification import IMAGENET_CLASSES, Identity

__all__ = [
    "ARCHITECTURES",
    "Classifier",
    "add_identity",
    "check_parity",
    "class_names",
    "export_onnx",
    "load_backbone",
]

NUM_CLASSES = IMAGENET_CLASSES


class Classifier(nn.Module):
    """A network with both heads Triton serves: raw ``LOGITS`` and their softmax, ``PROBABILITIES``.

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


def load_backbone(arch: str, weights: str, num_classes: int = NUM_CLASSES) -> nn.Module:
    """Any torchvision classifier with ``num_classes`` classes: ``seed:N`` (deterministic random init), ``imagenet``
    (torchvision's, through torch.hub's cache), a local ``.pth`` state dict, or ``s3://bucket/key``. ``auto`` is
    resolved before this (``export.weights.resolve``)."""
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
        return get_model(arch, weights=None, num_classes=num_classes).eval()
    model = get_model(arch, weights=None, num_classes=num_classes)
    state = torch.load(_weights_file(weights), map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit {arch} with {num_classes} classes: {_mismatch(exc)}") from None
    return model.eval()


def _mismatch(exc: RuntimeError) -> str:
    """PyTorch's complaint without its preamble: which tensors are missing or of another shape."""
    return " ".join(line.strip() for line in str(exc).splitlines()[1:4] if line.strip())


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
    outputs = [names.LOGITS, names.PROBABILITIES]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[names.INPUT],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in [names.INPUT, *outputs]},
            opset_version=opset,
        )
        proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto


def add_identity(proto: onnx.ModelProto, identity: Identity) -> onnx.ModelProto:
    """The network answers ``MODEL_ID`` (``STRING [N, 1]``, one copy of ``identity`` per image) beside its classes:
    a string constant gathered at indices ``ConstantOfShape([N, 1], 0)``, ``N`` read from the input (ops of
    every opset a network may use)."""
    graph, n = proto.graph, helper.make_node
    prefix = f"{names.MODEL_ID.lower()}/"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([identity.encode()], dtype=object), f"{prefix}value"),
            numpy_helper.from_array(np.array([0], np.int64), f"{prefix}first"),
            numpy_helper.from_array(np.array([1], np.int64), f"{prefix}one"),
        ]
    )
    graph.node.extend(
        [
            n("Shape", [names.INPUT], [f"{prefix}input_shape"]),
            n("Gather", [f"{prefix}input_shape", f"{prefix}first"], [f"{prefix}batch"], axis=0),
            n("Concat", [f"{prefix}batch", f"{prefix}one"], [f"{prefix}shape"], axis=0),
            n("ConstantOfShape", [f"{prefix}shape"], [f"{prefix}indices"],
              value=helper.make_tensor("zero", TensorProto.INT64, [1], [0])),
            n("Gather", [f"{prefix}value", f"{prefix}indices"], [names.MODEL_ID], axis=0),
        ]
    )  # fmt: skip
    graph.output.append(helper.make_tensor_value_info(names.MODEL_ID, TensorProto.STRING, ["batch", 1]))
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
    onnx_out = session.run([names.LOGITS, names.PROBABILITIES], {names.INPUT: batch.numpy()})
    worst = max(float(np.abs(a - b).max()) for a, b in zip(eager, onnx_out, strict=True))
    tolerance = FP16_RELATIVE_TOLERANCE * max(1.0, float(np.abs(eager[0]).max())) if fp16 else FP32_TOLERANCE
    if not worst <= tolerance:
        raise AssertionError(f"ONNX vs eager PyTorch differ by {worst:.3g} (> {tolerance:.3g})")
    return worst
