"""``python -m launcher``: Triton and the gateway on this machine, ready for a first request; Ctrl-C stops both.

This is what ``make serve`` runs. It exports the model first when the repository has no ONNX files, checks
every port before it starts anything, writes each run's logs under ``build/logs/<time>/``, and supervises: a
Triton that exits, or loses a python-backend stub process, is restarted (with backoff) while the gateway stays
up answering 503; a gateway that exits is restarted too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from launcher.process import Service, ServiceError, http_ok, taken_ports
from launcher.supervise import say, supervise
from launcher.triton import Ports, TritonServer
from servables import names
from servables.repository import CONFIG_FILE, read_config, weights_of

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m launcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", help="the ResNet to export when missing (default: %(default)s)")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--host", default="127.0.0.1", help="gateway address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="gateway port (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes (default: %(default)s)")
    parser.add_argument("--triton-http-port", type=int, default=8000, help="(default: %(default)s)")
    parser.add_argument("--triton-grpc-port", type=int, default=8001, help="(default: %(default)s)")
    parser.add_argument("--triton-metrics-port", type=int, default=8002, help="(default: %(default)s)")
    parser.add_argument(
        "--logs", type=Path, default=ROOT / "build" / "logs", help="each run's logs go in a folder here"
    )
    parser.add_argument("--gateway-shutdown-s", type=float, default=20.0, help="graceful shutdown bound (seconds)")
    parser.add_argument(
        "--response-cache-mb", type=int, default=0,
        help="Triton's response cache for the networks, in MiB (default: 0, off; README: Response cache)",
    )  # fmt: skip
    return parser.parse_args(argv)


def ensure_models(repository: Path, model: str) -> None:
    if not (repository / model / "1" / "model.onnx").is_file():
        say(f"no exported {model} in {repository}: exporting it now (a minute or two, once)")
        command = [sys.executable, "-m", "export", "--model", model, "--repository", str(repository)]
        subprocess.run(command, check=True)


def sample_image() -> Path:
    """A real photograph to paste into the first curl (scikit-image's cat), written once."""
    path = ROOT / "build" / "sample.jpg"
    if not path.exists():
        import cv2
        import skimage.data

        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR))
    return path


def weights_line(repository: Path) -> str:
    """What the served ResNet learnt, loudly when it learnt nothing."""
    weights = weights_of(read_config(repository / names.CLASSIFY / CONFIG_FILE))
    if weights.startswith("seed:"):
        return (
            f"  Weights   {weights}\n"
            "            RANDOM weights: every label is a guess. For real ones: python -m export --weights imagenet"
        )
    return f"  Weights   {weights}"


def gateway_service(args: argparse.Namespace, triton: TritonServer, log: Path) -> Service:
    url = f"http://{args.host}:{args.port}"
    env = {
        **os.environ,
        "GATEWAY_HOST": args.host,
        "GATEWAY_PORT": str(args.port),
        "GATEWAY_WORKERS": str(args.workers),
        "GATEWAY_TRITON_URL": triton.grpc_url,
        "GATEWAY_SHUTDOWN_TIMEOUT_S": str(args.gateway_shutdown_s),
    }
    return Service("gateway", [sys.executable, "-m", "gateway"], log, lambda: http_ok(f"{url}/healthz"), env, ROOT)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ports = Ports(args.triton_http_port, args.triton_grpc_port, args.triton_metrics_port)
    wanted = {
        "gateway": args.port,
        "Triton HTTP": ports.http,
        "Triton gRPC": ports.grpc,
        "Triton metrics": ports.metrics,
    }
    if taken := taken_ports(wanted):
        say(f"{', '.join(taken)} already in use. Stop what holds it, or choose other ports (--help lists them)")
        return 1
    ensure_models(args.repository, args.model)
    logs = args.logs / time.strftime("%Y%m%d-%H%M%S")
    triton = TritonServer(
        args.repository, ports, log_path=logs / "tritonserver.log", response_cache_bytes=args.response_cache_mb << 20
    )
    gateway = gateway_service(args, triton, logs / "gateway.log")
    say(f"starting Triton (HTTP {ports.http}, gRPC {ports.grpc}, metrics {ports.metrics}); logs: {logs}")
    started = time.monotonic()
    try:
        triton.start()
    except ServiceError as exc:
        say(f"Triton did not start: {exc}")
        return 1
    say(f"Triton ready in {time.monotonic() - started:.1f} s; starting the gateway")
    # Ctrl-C reaches only us (the children have their own sessions): we stop them in order, gateway first.
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    url = f"http://{args.host}:{args.port}"
    code = 0
    try:
        gateway.start(timeout_s=60)
        print(
            f"\n  Gateway   {url}   (try it: {url}/, docs: {url}/docs, metrics: {url}/metrics)"
            f"\n  Triton    gRPC {triton.grpc_url}   HTTP {triton.http_url}   metrics {triton.metrics_url}"
            f"\n{weights_line(args.repository)}"
            f"\n  Logs      {logs}"
            f"\n\n  Try it:\n    curl -s -H 'Content-Type: image/jpeg' --data-binary @{sample_image()} "
            f"'{url}/v1/classify?top_k=3'\n\n  Ctrl-C stops both.\n",
            file=sys.stderr,
            flush=True,
        )
        supervise(triton, gateway, lambda: stopping)
    except ServiceError as exc:
        say(str(exc))
        code = 1
    say("stopping the gateway (in-flight requests finish first)")
    gateway.stop(args.gateway_shutdown_s + 5)
    say("stopping Triton")
    triton.stop()
    say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
