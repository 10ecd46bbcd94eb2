"""``python -m export``: build every model, check it against its reference, write the Triton repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export import build
from export.preprocess import IMAGENET_MEAN, IMAGENET_STD
from export.weights import ARCHITECTURES, SPECS_HELP, WeightsUnavailable
from servables import configs, repository
from servables.specs import Batching, PreprocessSpec

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
        for path in repository.write_configs(args.repository, model_configs):
            print(f"wrote {path}")
        return 0
    try:
        if args.version is not None:
            return build.export_version(args, spec)
        return build.export_all(args, spec, batching)
    except WeightsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
