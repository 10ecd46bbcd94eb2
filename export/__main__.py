"""``python -m export``: build every model, check it against its reference, write the Triton repository.
``python -m export classifier NAME ...``: add one's own classifier to it (``export.classifier``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export import build, classifier
from export.weights import ARCHITECTURES, AUTO, SPECS_HELP, WeightsUnavailable
from servables import default, repository
from servables.specs import INTERPOLATIONS, Batching, PreprocessSpec

DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "model_repository"
CLASSIFIER = "classifier"


def _triple(text: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}")
    return values


def _common(parser: argparse.ArgumentParser, spec: PreprocessSpec | None) -> None:
    """The flags both commands take; ``spec`` None: preprocessing flags left unset say "not given"."""

    def unless_given(value: object) -> object:
        return value if spec is not None else None

    batching = Batching()
    parser.add_argument("--fp16", action="store_true", help="run the network in half precision (I/O stays fp32)")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="default: %(default)s")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument(
        "--resize", type=int, default=unless_given(PreprocessSpec.resize), help="shorter side after resize"
    )
    parser.add_argument("--crop", type=int, default=unless_given(PreprocessSpec.crop), help="centre crop size")
    parser.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        default=unless_given(PreprocessSpec.interpolation),
        help="of the resize",
    )
    parser.add_argument(
        "--mean", type=_triple, default=unless_given(PreprocessSpec.mean), help="RGB mean, e.g. 0.485,0.456,0.406"
    )
    parser.add_argument(
        "--std", type=_triple, default=unless_given(PreprocessSpec.std), help="RGB std, e.g. 0.229,0.224,0.225"
    )
    parser.add_argument("--max-batch-size", type=int, default=batching.max_batch_size)
    parser.add_argument("--max-queue-delay-us", type=int, default=batching.max_queue_delay_us)
    parser.add_argument("--max-queue-size", type=int, default=batching.max_queue_size)
    parser.add_argument("--queue-timeout-us", type=int, default=batching.queue_timeout_us)
    parser.add_argument(
        "--version",
        type=int,
        help="write only the network, as version N beside the served ones (the repository must hold it): load it "
        "with POST /v1/admin/models/<network>/load, no restart",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CLASSIFIER]:
        parser = argparse.ArgumentParser(
            prog=f"python -m export {CLASSIFIER}", description=(classifier.__doc__ or "").split("\n\n")[0]
        )
        classifier.add_arguments(parser)
        _common(parser, None)
        args = parser.parse_args(argv[1:])
        args.command = CLASSIFIER
    else:
        parser = argparse.ArgumentParser(
            prog="python -m export",
            description="Export ResNet, the OpenCV-style preprocessing and the edge detector to ONNX, check each "
            "against its reference, and write the Triton model repository.",
            epilog=f"Your own classifier beside it: python -m export {CLASSIFIER} --help",
        )
        parser.add_argument("--model", default="resnet50", choices=ARCHITECTURES, help="default: %(default)s")
        parser.add_argument(
            "--weights",
            default=AUTO,
            help=f"{SPECS_HELP}. imagenet: torchvision's published weights through torch.hub's cache "
            "($TORCH_HOME/hub/checkpoints; offline, the error names the file to place there); auto: imagenet when "
            "cached or downloadable, else seed:0 with a warning. default: %(default)s",
        )
        parser.add_argument(
            "--configs-only", action="store_true", help="only regenerate config.pbtxt files (no ONNX export)"
        )
        _common(parser, PreprocessSpec())
        args = parser.parse_args(argv)
        args.command = None
    if args.opset < 17:
        parser.error("--opset must be 17 or newer")
    if args.version is not None and args.version < 1:
        parser.error("--version must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    batching = Batching(
        max_batch_size=args.max_batch_size,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        queue_timeout_us=args.queue_timeout_us,
    )
    if args.command == CLASSIFIER:
        return classifier.main(args, batching)
    spec = PreprocessSpec(args.resize, args.crop, args.mean, args.std, args.interpolation)
    if args.configs_only:
        for path in repository.write_configs(args.repository, default.model_configs(args.model, spec, batching)):
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
