"""Build every model, check it against its reference, and write the Triton repository (``python -m export``)."""

from __future__ import annotations

import argparse
import sys

from export.progress import Steps
from servables import configs, names, repository
from servables.specs import Batching, PreprocessSpec

# onnx writes its newest IR version; the onnxruntime inside the pinned NGC Triton image reads up to IR 10.
IR_VERSION = 8


def export_all(args: argparse.Namespace, spec: PreprocessSpec, batching: Batching) -> int:
    # torch, torchvision and onnx load here, not at import: `python -m export --help` stays instant.
    import onnx

    from export import weights
    from export.edges import build_edges_model
    from export.preprocess import build_preprocess_model, check_preprocess_parity
    from export.resnet import Classifier, check_parity, class_names, export_onnx, load_backbone

    steps = Steps(total=7)
    precision = "fp16" if args.fp16 else "fp32"
    with steps.step(f"loading {args.model} weights ({args.weights})"):
        resolved = weights.resolve(args.model, args.weights)
        weights_description = weights.describe(args.model, resolved)
        classifier = Classifier(load_backbone(args.model, resolved), fp16=args.fp16)
    with steps.step(f"exporting {args.model} to ONNX ({precision}, opset {args.opset}, dynamic batch)"):
        resnet = export_onnx(classifier, spec.crop, args.opset)
    with steps.step("checking ONNX Runtime against eager PyTorch"):
        resnet_diff = check_parity(classifier, resnet, spec.crop, fp16=args.fp16)
    with steps.step(f"building the preprocessing graph (resize {spec.resize}, crop {spec.crop})"):
        preprocess = build_preprocess_model(spec, args.opset)
    with steps.step("checking the preprocessing against cv2.resize on 11 image sizes"):
        preprocess_diff = check_preprocess_parity(preprocess, spec)
    with steps.step("building the edge detector"):
        edges = build_edges_model(opset=args.opset)
    with steps.step(f"writing the Triton repository to {args.repository}"):
        models = {names.PREPROCESS: preprocess, args.model: resnet, names.CANNY_GRAPH: edges}
        for name, proto in models.items():
            folder = args.repository / name / repository.VERSION
            folder.mkdir(parents=True, exist_ok=True)
            proto.ir_version = min(proto.ir_version, IR_VERSION)
            onnx.save(proto, str(folder / "model.onnx"))
        model_configs = configs.model_configs(args.model, spec, batching, weights_description)
        repository.write_configs(args.repository, model_configs)
        repository.write_python_models(args.repository, model_configs)
        repository.write_labels(args.repository, configs.labelled_models(args.model), class_names(args.model))

    print(f"\nExported in {steps.elapsed:.1f} s to {args.repository}:", file=sys.stderr)
    print(f"  weights: {weights_description}", file=sys.stderr)
    for name, config in model_configs.items():
        model_file = args.repository / name / repository.VERSION / repository.ONNX_FILE
        size = f"{model_file.stat().st_size / 1e6:7.1f} MB" if model_file.exists() else f"  {_kind(config)}"
        print(f"  {name:<16} {size}", file=sys.stderr)
    print(f"  parity: {args.model} max |ONNX - eager| = {resnet_diff:.2e}", file=sys.stderr)
    print(
        f"  parity: preprocess worst {max(preprocess_diff.values()):.2f} uint8 level (limit 1.01)",
        file=sys.stderr,
    )
    return 0


def export_version(args: argparse.Namespace, spec: PreprocessSpec) -> int:
    """A new version of the ResNet only: the other models, configs and labels stay as they are served."""
    import onnx

    from export import weights
    from export.resnet import Classifier, check_parity, export_onnx, load_backbone

    if not (args.repository / args.model / repository.CONFIG_FILE).is_file():
        print(f"error: no {args.model} in {args.repository}: export the repository first", file=sys.stderr)
        return 1
    folder = args.repository / args.model / str(args.version)
    steps = Steps(total=3)
    with steps.step(f"loading {args.model} weights ({args.weights})"):
        resolved = weights.resolve(args.model, args.weights)
        classifier = Classifier(load_backbone(args.model, resolved), fp16=args.fp16)
    with steps.step(f"exporting {args.model} to ONNX as version {args.version}"):
        resnet = export_onnx(classifier, spec.crop, args.opset)
        resnet.ir_version = min(resnet.ir_version, IR_VERSION)
    with steps.step("checking ONNX Runtime against eager PyTorch"):
        resnet_diff = check_parity(classifier, resnet, spec.crop, fp16=args.fp16)
    # Written under a temporary name and renamed: Triton never sees half a file in a version folder.
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{repository.ONNX_FILE}.partial"
    onnx.save(resnet, str(partial))
    partial.replace(folder / repository.ONNX_FILE)
    print(f"\nwrote {folder / repository.ONNX_FILE} ({weights.describe(args.model, resolved)}, "
          f"max |ONNX - eager| = {resnet_diff:.2e})", file=sys.stderr)  # fmt: skip
    return 0


def _kind(config: dict) -> str:
    return "ensemble" if config.get("platform") == "ensemble" else str(config.get("backend"))
