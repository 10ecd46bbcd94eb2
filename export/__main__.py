"""``python -m export``: build every model, check it against its reference, write the Triton repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

from export import repository
from export.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec
from export.progress import Steps

# onnx writes its newest IR version; the onnxruntime inside the pinned NGC Triton image reads up to IR 10.
IR_VERSION = 8
DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"


def _triple(text: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}")
    return values  # type: ignore[return-value]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from export.resnet import ARCHITECTURES

    defaults = repository.Batching()
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Export ResNet, the OpenCV-style preprocessing and the edge detector to ONNX, check each "
        "against its reference, and write the Triton model repository.",
    )
    parser.add_argument("--model", default="resnet50", choices=ARCHITECTURES, help="default: %(default)s")
    parser.add_argument(
        "--weights",
        default="seed:0",
        help="seed:N (random init, no network), a .pth state dict, or s3://bucket/key",
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
        "--configs-only", action="store_true", help="only regenerate config.pbtxt files (no ONNX export)"
    )
    args = parser.parse_args(argv)
    if args.opset < 17:
        parser.error("--opset must be 17 or newer")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = PreprocessSpec(args.resize, args.crop, args.mean, args.std)
    batching = repository.Batching(
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        queue_timeout_us=args.queue_timeout_us,
    )
    configs = repository.model_configs(args.model, spec, batching)
    if args.configs_only:
        for path in repository.write_configs(args.repository, configs):
            print(f"wrote {path}")
        return 0
    return export_all(args, spec, configs)


def export_all(args: argparse.Namespace, spec: PreprocessSpec, configs: dict) -> int:
    from export.edges import build_edges_model
    from export.preprocess import build_preprocess_model, check_preprocess_parity
    from export.resnet import Classifier, check_parity, class_names, export_onnx, load_backbone

    steps = Steps(total=7)
    precision = "fp16" if args.fp16 else "fp32"
    with steps.step(f"loading {args.model} weights ({args.weights})"):
        classifier = Classifier(load_backbone(args.model, args.weights), fp16=args.fp16)
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
        models = {repository.PREPROCESS: preprocess, args.model: resnet, repository.EDGES: edges}
        for name, proto in models.items():
            folder = args.repository / name / repository.VERSION
            folder.mkdir(parents=True, exist_ok=True)
            proto.ir_version = min(proto.ir_version, IR_VERSION)
            onnx.save(proto, str(folder / "model.onnx"))
        repository.write_configs(args.repository, configs)
        repository.write_labels(args.repository, [repository.CLASSIFY, args.model], class_names(args.model))

    print(f"\nExported in {steps.elapsed:.1f} s to {args.repository}:", file=sys.stderr)
    for name in configs:
        model_file = args.repository / name / repository.VERSION / "model.onnx"
        size = f"{model_file.stat().st_size / 1e6:7.1f} MB" if model_file.exists() else "  ensemble"
        print(f"  {name:<12} {size}", file=sys.stderr)
    print(f"  parity: {args.model} max |ONNX - eager| = {resnet_diff:.2e}", file=sys.stderr)
    print(
        f"  parity: preprocess worst {max(preprocess_diff.values()):.2f} uint8 level (limit 1.01)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
