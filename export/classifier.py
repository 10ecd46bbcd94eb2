"""``python -m export classifier NAME``: one's own image classifier, served as its own ensemble.

From a torchvision architecture (``--torchvision ARCH``, with its published ImageNet weights or one's own ``.pth``)
or from an ONNX file (``--onnx FILE``), with its labels and preprocessing: the preprocessing comes from
torchvision's metadata for the architecture (``weights.transforms()``) where there is some, and from the flags,
which win. The network is checked against its reference (eager PyTorch, or the ONNX file as given) and its
preprocessing graph against OpenCV, then written as ``NAME`` (the file's bytes), ``NAME_pixels`` (decoded
pixels), ``NAME_preprocess`` and ``NAME_network`` (``servables.classification``). An ONNX file that cannot be
served (no batch dimension, an output that is not one score per label, another input than an image batch) is
refused with a message that says what to change.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from export import build
from export.progress import Steps
from export.weights import IMAGENET, SPECS_HELP, WeightsUnavailable
from servables import default, names, repository
from servables.classification import IMAGENET_CLASSES, Classifier
from servables.specs import Batching, PreprocessSpec

if TYPE_CHECKING:
    import onnx

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# torchvision's interpolation names -> the preprocessing graph's
TORCHVISION_INTERPOLATIONS = {"bilinear": "linear", "bicubic": "cubic"}


class Refused(ValueError):
    """What was asked cannot be served as it is; the message says what to change."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the classifier's name: its route is POST /v1/models/NAME/classify")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--torchvision", metavar="ARCH", help="a torchvision architecture, e.g. efficientnet_b0")
    source.add_argument("--onnx", type=Path, metavar="FILE", help="an ONNX file: float32 [N, 3, H, W] -> [N, classes]")
    parser.add_argument(
        "--weights",
        default=IMAGENET,
        help=f"with --torchvision: {SPECS_HELP}; a .pth needs --labels (default: %(default)s, ImageNet's 1000 classes)",
    )
    parser.add_argument("--labels", type=Path, metavar="FILE", help="one class name per line, in the output's order")


def labels_of(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise Refused(f"{path} has no labels: write one class name per line, in the order of the network's outputs")
    if empty := [i + 1 for i, line in enumerate(lines) if not line.strip()]:
        raise Refused(f"{path}: line {empty[0]} is empty: every class needs a name")
    return [line.strip() for line in lines]


def torchvision_spec(arch: str) -> PreprocessSpec:
    """The preprocessing torchvision publishes with the architecture's weights (resize, crop, interpolation, mean,
    std); PreprocessSpec's defaults for an architecture without any."""
    from torchvision.models import get_model_weights

    try:
        transforms = get_model_weights(arch).DEFAULT.transforms()
    except (ValueError, AttributeError, KeyError):
        return PreprocessSpec()
    interpolation = str(transforms.interpolation.value)
    if interpolation not in TORCHVISION_INTERPOLATIONS:
        raise Refused(f"{arch} expects {interpolation} resizing; pass --interpolation linear or cubic")
    return PreprocessSpec(
        resize=int(transforms.resize_size[0]),
        crop=int(transforms.crop_size[0]),
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        interpolation=TORCHVISION_INTERPOLATIONS[interpolation],
    )


def spec_of(args: argparse.Namespace, base: PreprocessSpec) -> PreprocessSpec:
    """``base`` with every preprocessing flag given on the command line."""
    given = {key: getattr(args, key) for key in ("resize", "crop", "mean", "std", "interpolation")}
    return PreprocessSpec(**{**vars(base), **{key: value for key, value in given.items() if value is not None}})


def main(args: argparse.Namespace, batching: Batching) -> int:
    try:
        return _export(args, batching)
    except (Refused, ValueError, OSError, WeightsUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _export(args: argparse.Namespace, batching: Batching) -> int:
    if not NAME.match(args.name):
        raise Refused(f"{args.name!r}: a classifier's name is letters, digits, '_' and '-' (at most 64)")
    if args.name in default.model_configs("resnet", PreprocessSpec(), batching) or args.name.startswith(
        ("resnet", names.DECODE)
    ):
        raise Refused(f"{args.name!r} is a model of the default repository: choose another name")
    labels = labels_of(args.labels) if args.labels else None
    if args.torchvision:
        spec = spec_of(args, torchvision_spec(args.torchvision))
        if labels is None and args.weights != IMAGENET:
            raise Refused(f"--weights {args.weights} needs --labels FILE: one class name per line, in the order of "
                          "the network's outputs (the class count comes from it)")  # fmt: skip
        if labels is not None and args.weights == IMAGENET and len(labels) != IMAGENET_CLASSES:
            raise Refused(f"--weights imagenet has ImageNet's {IMAGENET_CLASSES} classes but {args.labels} has "
                          f"{len(labels)} lines: drop --labels, or pass a .pth fine-tuned for them")  # fmt: skip
    else:
        spec = spec_of(args, PreprocessSpec())
        if labels is None:
            raise Refused("--onnx needs --labels FILE: one class name per line, in the order of the output's scores")
    classifier = Classifier.named(args.name, spec, len(labels) if labels else IMAGENET_CLASSES)
    if args.version is not None:
        return _export_version(args, classifier, labels)
    steps = Steps(total=6)  # the network (3), its preprocessing (2), writing
    network = _network(steps, args, spec, labels)
    preprocess, preprocess_check = build.preprocess_graph(steps, spec, args.opset)
    with steps.step(f"writing {args.name} to {args.repository}"):
        configs = build.write_classifier(args.repository, classifier, batching, network, preprocess)
    build.summary(args.repository, steps, configs, network, [preprocess_check])
    print(f"\nCall it: POST /v1/models/{args.name}/classify (GET /v1/models lists every classifier). While the stack "
          f"serves, load it first: POST /v1/admin/models/{args.name}/load (and .../{classifier.pixels}/load for its "
          "pixel entry point); a new make serve loads it by itself.", file=sys.stderr)  # fmt: skip
    return 0


def _export_version(args: argparse.Namespace, classifier: Classifier, labels: list[str] | None) -> int:
    """Version N of the network only: the same classes and labels as the served versions (Triton keeps one
    labels file per model)."""
    served = args.repository / classifier.network / repository.CONFIG_FILE
    if not served.is_file():
        raise Refused(f"no {classifier.name} in {args.repository}: export it without --version first")
    served_labels = (args.repository / classifier.network / "labels.txt").read_text().splitlines()
    if labels is not None and labels != served_labels:
        raise Refused(f"{args.labels} differs from the labels {classifier.name} serves: a version must answer the "
                      "same classes; export another classifier for other labels")  # fmt: skip
    steps = Steps(total=3)
    network = _network(steps, args, classifier.spec, labels or served_labels)
    build.report_version(args.repository, classifier, network, args.version)
    return 0


def _network(steps: Steps, args: argparse.Namespace, spec: PreprocessSpec, labels: list[str] | None) -> build.Network:
    if args.torchvision:
        return build.torchvision_network(
            steps, args.torchvision, args.weights, labels, spec.crop, args.opset, args.fp16
        )
    assert labels is not None
    return onnx_network(steps, args.onnx, labels, spec)


def onnx_network(steps: Steps, path: Path, labels: list[str], spec: PreprocessSpec) -> build.Network:
    """A user's ONNX file, checked, under the tensor names the repository uses."""
    import onnx

    with steps.step(f"checking {path.name}: one image batch in, one score per label out"):
        if not path.is_file():
            raise Refused(f"{path}: no such file")
        given = onnx.load(str(path))
        graph_input, graph_output, probabilities = _check(given, labels, spec)
    with steps.step("renaming its tensors (INPUT -> LOGITS, PROBABILITIES)"):
        proto = _wrapped(given, graph_input, graph_output, probabilities)
    with steps.step("checking the wrapped graph against the file as given"):
        diff = _parity(given, proto, graph_input, spec.crop)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    output = "probabilities" if probabilities else "logits, softmax added"
    return build.Network(proto, labels, f"file:{path.name} (sha256 {digest})", f"max |wrapped - {path.name}| = "
                         f"{diff:.2e} (its output: {output})")  # fmt: skip


def _check(proto: onnx.ModelProto, labels: list[str], spec: PreprocessSpec) -> tuple[str, str, bool]:
    """The graph's input and output names, and whether its output already is probabilities; Refused otherwise."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto

    weights = {init.name for init in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in weights]
    if len(inputs) != 1:
        raise Refused(f"the model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); it must take "
                      "one: the image batch, float32 [N, 3, H, W]")  # fmt: skip
    [graph_input] = inputs
    tensor = graph_input.type.tensor_type
    if tensor.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(tensor.elem_type).lower()
        raise Refused(f"input {graph_input.name!r} is {kind}; the preprocessing hands float32 [N, 3, H, W]: export "
                      "the network with a float32 input")  # fmt: skip
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    export_hint = (f"re-export it with a dynamic batch axis, e.g. torch.onnx.export(..., dynamic_axes="
                   f"{{{graph_input.name!r}: {{0: 'batch'}}, <output>: {{0: 'batch'}}}})")  # fmt: skip
    if len(dims) != 4:
        shape = [d if d is not None else "?" for d in dims]
        raise Refused(f"input {graph_input.name!r} has shape {shape}; it must be [N, 3, H, W] with a batch dimension "
                      f"N first: {export_hint}")  # fmt: skip
    if dims[0] is not None:
        raise Refused(f"input {graph_input.name!r} has a fixed batch size of {dims[0]}: Triton batches requests "
                      f"along that dimension, so it must be dynamic; {export_hint}")  # fmt: skip
    if dims[1] not in (3, None):
        raise Refused(f"input {graph_input.name!r} has {dims[1]} channels in dimension 1; it must be [N, 3, H, W] "
                      "(RGB planes first: channels-last networks need a transpose in the graph)")  # fmt: skip
    if any(side not in (spec.crop, None) for side in dims[2:]):
        raise Refused(f"the network takes {dims[2]}x{dims[3]} images but the crop is {spec.crop}: pass --crop "
                      f"{dims[2]} (and a --resize of at least that)")  # fmt: skip
    outputs = list(proto.graph.output)
    if len(outputs) != 1:
        raise Refused(f"the model has {len(outputs)} outputs ({', '.join(o.name for o in outputs)}); it must have "
                      "one: the class scores, [N, classes]")  # fmt: skip
    batch = np.random.default_rng(0).standard_normal((2, 3, spec.crop, spec.crop), dtype=np.float32)
    try:
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        [scores] = session.run(None, {graph_input.name: batch})
    except Exception as exc:  # ONNX Runtime's own errors carry no common type
        raise Refused(f"ONNX Runtime cannot run it on a batch of 2 images of {spec.crop}x{spec.crop}: {exc}") from None
    if scores.ndim != 2 or scores.shape[0] != 2:
        raise Refused(f"for 2 images the output is {list(scores.shape)}; it must be [2, classes], one row of class "
                      f"scores per image: {export_hint}")  # fmt: skip
    if scores.shape[1] != len(labels):
        raise Refused(f"the output has {scores.shape[1]} scores per image but the labels file has {len(labels)} "
                      "lines: give one label per class, in the output's order")  # fmt: skip
    probabilities = bool((scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3))
    return graph_input.name, outputs[0].name, probabilities


def _wrapped(given: onnx.ModelProto, graph_input: str, graph_output: str, probabilities: bool) -> onnx.ModelProto:
    """The graph under the names the repository uses: ``INPUT`` in; ``LOGITS`` (its output as given) and
    ``PROBABILITIES`` (that output, or its softmax) out. Its own names are prefixed, so none can clash."""
    import onnx
    from onnx import compose, helper

    from servables import names

    prefix = "given/"
    proto = compose.add_prefix(given, prefix)
    graph = proto.graph
    [old_input] = [value for value in graph.input if value.name == prefix + graph_input]
    old_output = graph.output[0]
    graph.input.insert(list(graph.input).index(old_input), onnx.ValueInfoProto(name=names.INPUT, type=old_input.type))
    graph.input.remove(old_input)
    graph.node.insert(0, helper.make_node("Identity", [names.INPUT], [prefix + graph_input]))
    graph.node.extend(
        [
            helper.make_node("Identity", [prefix + graph_output], [names.LOGITS]),
            helper.make_node("Identity", [prefix + graph_output], [names.PROBABILITIES])
            if probabilities
            else helper.make_node("Softmax", [prefix + graph_output], [names.PROBABILITIES], axis=1),
        ]
    )
    graph.output.extend(
        onnx.ValueInfoProto(name=name, type=old_output.type) for name in (names.LOGITS, names.PROBABILITIES)
    )
    graph.output.remove(old_output)
    return proto


def _parity(given: onnx.ModelProto, wrapped: onnx.ModelProto, graph_input: str, crop: int) -> float:
    """The wrapped graph's ``LOGITS`` are the file's output exactly, and its probabilities sum to 1."""
    import numpy as np
    import onnxruntime as ort

    from servables import names

    batch = np.random.default_rng(1).standard_normal((3, 3, crop, crop), dtype=np.float32)
    [expected] = ort.InferenceSession(given.SerializeToString()).run(None, {graph_input: batch})
    logits, probabilities = ort.InferenceSession(wrapped.SerializeToString()).run(
        [names.LOGITS, names.PROBABILITIES], {names.INPUT: batch}
    )
    diff = float(np.abs(logits - expected).max())
    if diff > 0 or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4):
        raise AssertionError(f"the wrapped graph differs from the file by {diff:.3g}")
    return diff
