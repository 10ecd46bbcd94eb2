"""Build a classifier's models, check each against its reference, and write them into the Triton repository:
the default stack (``python -m export``: the ResNet and the edge detector) and one's own classifier (``python -m
export classifier``, ``export.classifier``) go through the same steps and the same writer.

torch, torchvision and onnx load inside the functions, not at import: ``python -m export --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.progress import Steps
from servables import default, edges, names, repository
from servables.classification import Classifier, Identity
from servables.specs import Batching, PreprocessSpec

if TYPE_CHECKING:
    import onnx

# onnx writes its newest IR version; the onnxruntime inside the pinned NGC Triton image reads up to IR 10.
IR_VERSION = 8


@dataclass(frozen=True)
class Network:
    """A classification network as ONNX (``INPUT`` -> ``LOGITS``, ``PROBABILITIES``), checked against its
    reference; its identity is added when it is written, with the version it is written as."""

    proto: onnx.ModelProto
    labels: list[str]
    weights: str  # what it learnt, as its answers will say
    parity: str  # how far it is from its reference, for the summary


def torchvision_network(
    steps: Steps, arch: str, weights: str, labels: list[str] | None, crop: int, opset: int, fp16: bool
) -> Network:
    """A torchvision architecture with its weights; ``labels`` None: ImageNet's, from torchvision's metadata."""
    from export import weights as weight_specs
    from export.network import Classifier, check_parity, class_names, export_onnx, load_backbone

    precision = "fp16" if fp16 else "fp32"
    with steps.step(f"loading {arch} weights ({weights})"):
        resolved = weight_specs.resolve(arch, weights)
        labels = labels or class_names(arch)
        classifier = Classifier(load_backbone(arch, resolved, len(labels)), fp16=fp16)
    with steps.step(f"exporting {arch} to ONNX ({precision}, opset {opset}, dynamic batch)"):
        proto = export_onnx(classifier, crop, opset)
    with steps.step("checking ONNX Runtime against eager PyTorch"):
        diff = check_parity(classifier, proto, crop, fp16=fp16)
    return Network(proto, labels, weight_specs.describe(arch, resolved), f"max |ONNX - eager {arch}| = {diff:.2e}")


def preprocess_graph(steps: Steps, spec: PreprocessSpec, opset: int) -> tuple[onnx.ModelProto, str]:
    from export.preprocess import MAX_LEVEL_DIFF, PARITY_SIZES, build_preprocess_model, check_preprocess_parity

    with steps.step(f"building the preprocessing graph (resize {spec.resize} {spec.interpolation}, crop {spec.crop})"):
        proto = build_preprocess_model(spec, opset)
    with steps.step(f"checking the preprocessing against cv2.resize on {len(PARITY_SIZES)} image sizes"):
        worst = max(check_preprocess_parity(proto, spec).values())
    return proto, f"preprocess worst {worst:.2f} uint8 level (limit {MAX_LEVEL_DIFF})"


def save_onnx(proto: onnx.ModelProto, folder: Path) -> Path:
    """Written under a temporary name and renamed: Triton never sees half a file in a version folder."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    proto.ir_version = min(proto.ir_version, IR_VERSION)
    partial = folder / f".{repository.ONNX_FILE}.partial"
    onnx.save(proto, str(partial))
    return partial.replace(folder / repository.ONNX_FILE)


def write_network(repository_path: Path, classifier: Classifier, network: Network, version: int) -> Identity:
    """The network's graph, answering its identity, as version ``version`` (and the identity beside it)."""
    from export.network import add_identity

    identity = Identity(str(version), network.weights)
    folder = repository_path / classifier.network / str(version)
    save_onnx(add_identity(network.proto, identity), folder)
    identity.write(folder)
    return identity


def write_models(
    target: Path,
    configs: dict[str, dict[str, Any]],
    graphs: dict[str, onnx.ModelProto],
    labels: dict[str, list[str]],  # by model: those whose outputs name a label_filename
) -> None:
    """Each model's ONNX graph or python code as version 1 and its labels, then its config: a model appears
    complete to whatever watches the repository (the launcher mirrors new models while Triton serves)."""
    for name in configs:
        (target / name / repository.VERSION).mkdir(parents=True, exist_ok=True)
    for name, graph in graphs.items():
        save_onnx(graph, target / name / repository.VERSION)
    repository.write_python_models(target, configs)
    for model, classes in labels.items():
        repository.write_labels(target, [model], classes)
    repository.write_configs(target, configs)


def write_classifier(
    target: Path, classifier: Classifier, batching: Batching, network: Network, preprocess: onnx.ModelProto
) -> dict[str, dict[str, Any]]:
    """Every model of ``classifier``, its network as version 1, with its labels."""
    configs = classifier.configs(batching)
    write_network(target, classifier, network, int(repository.VERSION))
    write_models(
        target, configs, {classifier.preprocess: preprocess}, {model: network.labels for model in classifier.labelled}
    )
    return configs


def summary(
    target: Path, steps: Steps, configs: dict[str, dict[str, Any]], network: Network, checks: list[str]
) -> None:
    print(f"\nExported in {steps.elapsed:.1f} s to {target}:", file=sys.stderr)
    print(f"  weights: {network.weights}", file=sys.stderr)
    for name, config in configs.items():
        model_file = target / name / repository.VERSION / repository.ONNX_FILE
        size = f"{model_file.stat().st_size / 1e6:7.1f} MB" if model_file.exists() else f"  {_kind(config)}"
        print(f"  {name:<24} {size}", file=sys.stderr)
    for check in [network.parity, *checks]:
        print(f"  parity: {check}", file=sys.stderr)


def export_all(args: argparse.Namespace, spec: PreprocessSpec, batching: Batching) -> int:
    """The default stack: the ImageNet ResNet as ``classify``, and the edge detector."""
    from export.edges import build_edges_model

    steps = Steps(total=7)
    network = torchvision_network(steps, args.model, args.weights, None, spec.crop, args.opset, args.fp16)
    preprocess, preprocess_check = preprocess_graph(steps, spec, args.opset)
    with steps.step("building the edge detector"):
        canny = build_edges_model(opset=args.opset)
    with steps.step(f"writing the Triton repository to {args.repository}"):
        configs = write_classifier(args.repository, default.classifier(args.model, spec), batching, network, preprocess)
        detector = edges.configs()
        write_models(args.repository, detector, {names.CANNY_GRAPH: canny}, {})
    summary(args.repository, steps, configs | detector, network, [preprocess_check])
    return 0


def export_version(args: argparse.Namespace, spec: PreprocessSpec) -> int:
    """A new version of the default ResNet only: the other models, configs and labels stay as they are served."""
    classifier = default.classifier(args.model, spec)
    if not (args.repository / classifier.network / repository.CONFIG_FILE).is_file():
        print(f"error: no {classifier.network} in {args.repository}: export the repository first", file=sys.stderr)
        return 1
    steps = Steps(total=3)
    network = torchvision_network(steps, args.model, args.weights, None, spec.crop, args.opset, args.fp16)
    report_version(args.repository, classifier, network, args.version)
    return 0


def report_version(target: Path, classifier: Classifier, network: Network, version: int) -> None:
    identity = write_network(target, classifier, network, version)
    where = target / classifier.network / str(version) / repository.ONNX_FILE
    print(f"\nwrote {where} ({identity.weights}, {network.parity}); load it: POST "
          f"/v1/admin/models/{classifier.network}/load", file=sys.stderr)  # fmt: skip


def _kind(config: dict[str, Any]) -> str:
    return "ensemble" if config.get("platform") == "ensemble" else str(config.get("backend"))
