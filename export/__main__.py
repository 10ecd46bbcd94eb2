"""``python -m export``: build every model, check it against its reference, write the Triton repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.preprocess import IMAGENET_MEAN, IMAGENET_STD
from export.progress import Steps
from export.weights import ARCHITECTURES, SPECS_HELP, WeightsUnavailable
from triton_repository import configs, names
from triton_repository.configs import Batching, PreprocessSpec

# onnx writes its newest IR version; the onnxruntime inside the pinned NGC Triton image reads up to IR 10.
IR_VERSION = 8
DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"


def _triple(text: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Batching()
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export ResNet, the OpenCV-style preprocessing and the edge detector to ONNX, check each "
        "against its reference, and write the Triton model repository.",
    )
    parser.add_argument("--model", default="resnet50", choices=ARCHITECTURES, help="default: %(default)s")
    parser.add_argument(
        "--weights",
        default="seed:0",
        help=f"{SPECS_HELP}. imagenet: torchvision's published weights through torch.hub's cache "
        "($TORCH_HOME/hub/checkpoints; offline, the error names the file to place there); auto: imagenet when "
        "cached or downloadable, else seed:0 with a warning. default: %(default)s",
    )
    parser.add_argument("--fp16", action="store_true", help="run the network in half precision (I/O stays fp32)")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="default: %(default)s")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument("--resize", type=int, default=256, help="shorter side after resize")
    parser.add_argument("--crop", type=int, default=224, help="centre crop size")
    parser.add_argument("--mean", type=_triple, default=IMAGENET_MEAN, help="RGB mean, e.g. 0.485,0.456,0.406")
    parser.add_argument("--std", type=_triple, default=IMAGENET_STD, help="RGB std, e.g. 0.229,0.224,0.225")
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--max-queue-delay-us", type=int, default=defaults.max_queue_delay_us)
    parser.add_argument("--max-queue-size", type=int, default=defaults.max_queue_size)
    parser.add_argument("--queue-timeout-us", type=int, default=defaults.queue_timeout_us)
    parser.add_argument(
        "--version",
        type=int,
        help="write only the ResNet, as version N beside the served ones (the repository must exist): load it with "
        "POST /v1/admin/models/<model>/load, no restart",
    )
    parser.add_argument(
        "--configs-only", action="store_true", help="only regenerate config.pbtxt files (no ONNX export)"
    )
    args = parser.parse_args(argv)
    if args.opset < 17:
        parser.error("--opset must be 17 or newer")
    if args.version is not None and args.version < 1:
        parser.error("--version must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = PreprocessSpec(args.resize, args.crop, args.mean, args.std)
    batching = Batching(
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        queue_timeout_us=args.queue_timeout_us,
    )
    if args.configs_only:
        from export.weights import describe

        model_configs = configs.model_configs(args.model, spec, batching, describe(args.model, args.weights))
        for path in configs.write_configs(args.repository, model_configs):
            print(f"wrote {path}")
        return 0
    try:
        if args.version is not None:
            return export_version(args, spec)
        return export_all(args, spec, batching)
    except WeightsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


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
        models = {names.PREPROCESS: preprocess, args.model: resnet, names.CANNY: edges}
        for name, proto in models.items():
            folder = args.repository / name / configs.VERSION
            folder.mkdir(parents=True, exist_ok=True)
            proto.ir_version = min(proto.ir_version, IR_VERSION)
            onnx.save(proto, str(folder / "model.onnx"))
        model_configs = configs.model_configs(args.model, spec, batching, weights_description)
        configs.write_configs(args.repository, model_configs)
        configs.write_python_models(args.repository, model_configs)
        configs.write_labels(args.repository, configs.labelled_models(args.model), class_names(args.model))

    print(f"\nExported in {steps.elapsed:.1f} s to {args.repository}:", file=sys.stderr)
    print(f"  weights: {weights_description}", file=sys.stderr)
    for name, config in model_configs.items():
        model_file = args.repository / name / configs.VERSION / configs.ONNX_FILE
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

    if not (args.repository / args.model / configs.CONFIG_FILE).is_file():
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
    partial = folder / f".{configs.ONNX_FILE}.partial"
    onnx.save(resnet, str(partial))
    partial.replace(folder / configs.ONNX_FILE)
    print(f"\nwrote {folder / configs.ONNX_FILE} ({weights.describe(args.model, resolved)}, "
          f"max |ONNX - eager| = {resnet_diff:.2e})", file=sys.stderr)  # fmt: skip
    return 0


def _kind(config: dict) -> str:
    return "ensemble" if config.get("platform") == "ensemble" else str(config.get("backend"))


if __name__ == "__main__":
    sys.exit(main())
