"""``python -m launcher``: Triton and the gateway on this machine, ready for a first request; Ctrl-C stops both.

This is what ``make serve`` runs. It exports the model first when the repository has no ONNX files, checks
every port before it starts anything (naming the process that holds a taken one), writes each run's logs under
``build/logs/<time>/`` (its own lines too, in ``launcher.log``), and supervises: a Triton that exits, loses a
python-backend stub process or is not ready in time after a restart is restarted (with backoff) while the
gateway stays up answering 503, serving the versions it served; a gateway that exits is restarted too. Ctrl-C,
SIGTERM, a closed terminal or a closed pipe stop everything, and a watchdog stops the servers should the
launcher itself be killed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from launcher.output import OUTPUT, say
from launcher.process import Service, ServiceError, http_ok, taken_ports
from launcher.stopping import Interrupted, StopSignals
from launcher.supervise import supervise
from launcher.triton import Ports, TritonServer
from servables.classification import exported_identity
from servables.repository import IDENTITY_FILE, VERSION

ROOT = Path(__file__).resolve().parent.parent
# At Ctrl-C the gateway has stopped first, so Triton has only direct gRPC clients' requests left to finish.
TRITON_STOP_S = 10.0


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
        "--triton-restart-timeout",
        type=float,
        metavar="S",
        help="a restarted Triton not ready within S seconds is killed and started again "
        "(default: 4 x its first start, at least 60)",
    )
    parser.add_argument(
        "--logs", type=Path, default=ROOT / "build" / "logs", help="each run's logs go in a folder here"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("GATEWAY_LOG_FORMAT", "text"),
        help="the launcher's lines and the gateway's log: text, or one JSON object per line (default: %(default)s)",
    )
    parser.add_argument(
        "--trace-endpoint",
        metavar="URL",
        help="send traces of the gateway and Triton over OTLP/HTTP to URL (e.g. Jaeger's http://127.0.0.1:4318)",
    )
    parser.add_argument("--gateway-shutdown-s", type=float, default=20.0, help="graceful shutdown bound (seconds)")
    parser.add_argument(
        "--response-cache-mb", type=int, default=0,
        help="Triton's response cache for the networks, in MiB (default: 0, off; README: Response cache)",
    )  # fmt: skip
    return parser.parse_args(argv)


def ensure_models(repository: Path, model: str) -> None:
    """Export when the network is missing, or was exported before its answers named themselves (no identity)."""
    if not (repository / model / VERSION / IDENTITY_FILE).is_file():
        say(f"no exported {model} in {repository}: exporting it now (a minute or two, once)")
        command = [sys.executable, "-m", "export", "--model", model, "--repository", str(repository)]
        subprocess.run(command, check=True)


def sample_image() -> Path:
    """A picture to paste into the first curl, written once: scikit-image's cat where scikit-image is installed
    (``make test`` and ``make bench`` install it), else a drawn one (``make serve`` alone does not)."""
    path = ROOT / "build" / "sample.jpg"
    if not path.exists():
        import cv2
        import numpy as np

        try:
            import skimage.data

            image = cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR)
        except ImportError:
            rows, columns = np.mgrid[0:300, 0:451]
            image = np.dstack([columns * 255 // 450, rows * 255 // 299, 255 - columns * 255 // 450]).astype(np.uint8)
            cv2.circle(image, (150, 150), 80, (40, 40, 200), -1)
            cv2.rectangle(image, (260, 70), (400, 230), (30, 160, 30), -1)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
    return path


def weights_line(repository: Path) -> str:
    """What the served ResNet learnt, loudly when it learnt nothing."""
    identity = exported_identity(repository)
    weights = identity.weights if identity else "unknown (export the repository again: python -m export)"
    if weights.startswith("seed:"):
        return (
            f"  Weights   {weights}\n"
            "            RANDOM weights: every label is a guess. For real ones: python -m export --weights imagenet"
        )
    return f"  Weights   {weights}"


def trace_arguments(endpoint: str) -> tuple[str, ...]:
    """Triton's OpenTelemetry tracing, every request, to ``endpoint``'s OTLP/HTTP traces path."""
    return (
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={endpoint.rstrip('/')}/v1/traces",
        "--trace-config=opentelemetry,resource=service.name=tritonserver",
        "--trace-config=rate=1",
        "--trace-config=count=-1",
        "--trace-config=level=TIMESTAMPS",
    )


def gateway_service(args: argparse.Namespace, triton: TritonServer, log: Path) -> Service:
    url = f"http://{args.host}:{args.port}"
    env = {
        **os.environ,
        "GATEWAY_HOST": args.host,
        "GATEWAY_PORT": str(args.port),
        "GATEWAY_WORKERS": str(args.workers),
        "GATEWAY_TRITON_URL": triton.grpc_url,
        "GATEWAY_TRITON_METRICS_URL": triton.metrics_url,  # GET /metrics/triton passes Triton's metrics through
        "GATEWAY_SHUTDOWN_TIMEOUT_S": str(args.gateway_shutdown_s),
        "GATEWAY_LOG_FORMAT": args.log_format,
    }
    if args.trace_endpoint:
        env["GATEWAY_OTLP_ENDPOINT"] = f"{args.trace_endpoint.rstrip('/')}/v1/traces"
    return Service(
        "gateway",
        [sys.executable, "-m", "gateway"],
        log,
        lambda: http_ok(f"{url}/healthz"),
        env,
        ROOT,
        ports=(args.port,),
    )


def announce(args: argparse.Namespace, triton: TritonServer, logs: Path) -> None:
    """Where everything is, and a request to paste."""
    url = f"http://{args.host}:{args.port}"
    curl = f"curl -s -H 'Content-Type: image/jpeg' --data-binary @{sample_image()} '{url}/v1/classify?top_k=3'"
    if OUTPUT.json:
        say("serving", gateway=url, triton_grpc=triton.grpc_url, triton_http=triton.http_url,
            triton_metrics=triton.metrics_url, logs=str(logs), try_it=curl)  # fmt: skip
        return
    OUTPUT.write(
        f"\n  Gateway   {url}   (try it: {url}/, docs: {url}/docs, metrics: {url}/metrics)"
        f"\n  Triton    gRPC {triton.grpc_url}   HTTP {triton.http_url}   metrics {triton.metrics_url}"
        f"\n{weights_line(args.repository)}"
        f"\n  Logs      {logs}"
        + (f"\n  Traces    {args.trace_endpoint}" if args.trace_endpoint else "")
        + f"\n\n  Try it:\n    {curl}\n\n  Ctrl-C stops both.\n\n"
    )


def shut_down(gateway: Service, triton: TritonServer, gateway_grace_s: float, signals: StopSignals) -> None:
    """The gateway first (its in-flight requests finish), then Triton; a stop request meanwhile makes the rest
    immediate. Whatever happened before, this runs to the end: the launcher leaves no server behind."""
    hurry = False
    for _ in range(StopSignals.RAISED_AT_MOST + 1):
        try:
            if gateway.alive():
                say("stopping the gateway" + ("" if hurry else " (in-flight requests finish first)"))
            gateway.stop(0 if hurry else gateway_grace_s + 5)
            if triton.process is not None and triton.process.poll() is None:
                say("stopping Triton")
            triton.stop(0 if hurry else TRITON_STOP_S)
            break
        except Interrupted:
            hurry = True
    signals.ignore_more()
    say("stopped")


def run(args: argparse.Namespace, signals: StopSignals) -> int:
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
    logs = args.logs / time.strftime("%Y%m%d-%H%M%S")
    OUTPUT.open_log(logs / "launcher.log")
    traces = trace_arguments(args.trace_endpoint) if args.trace_endpoint else ()
    triton = TritonServer(
        args.repository, ports, log_path=logs / "tritonserver.log", extra_args=traces,
        response_cache_bytes=args.response_cache_mb << 20,
    )  # fmt: skip
    gateway = gateway_service(args, triton, logs / "gateway.log")
    code = 0
    try:
        ensure_models(args.repository, args.model)
        say(f"starting Triton (HTTP {ports.http}, gRPC {ports.grpc}, metrics {ports.metrics}); logs: {logs}")
        started = time.monotonic()
        try:
            triton.start()
        except ServiceError as exc:
            say(f"Triton did not start: {exc}")
            return 1
        first_start_s = time.monotonic() - started
        say(f"Triton ready in {first_start_s:.1f} s; starting the gateway")
        gateway.start(timeout_s=60)
        announce(args, triton, logs)
        supervise(triton, gateway, args.triton_restart_timeout or max(60.0, 4 * first_start_s), signals)
    except Interrupted as stop:
        say(f"{stop.why}: stopping")
    except (ServiceError, subprocess.CalledProcessError) as exc:
        say(str(exc))
        code = 1
    finally:
        shut_down(gateway, triton, args.gateway_shutdown_s, signals)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    OUTPUT.json = args.log_format == "json"
    signals = StopSignals()
    signals.install()
    try:
        return run(args, signals)
    except Interrupted as stop:  # before anything was started
        say(f"{stop.why}: stopped")
        return 0


if __name__ == "__main__":
    sys.exit(main())
