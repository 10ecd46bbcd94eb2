"""``python -m launcher``: Triton and the gateway on this machine, ready for a first request; Ctrl-C stops both.

This is what ``make serve`` runs. It exports the model first when the repository has no ONNX files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from launcher.triton import Ports, TritonError, TritonServer

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m launcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", help="the ResNet to export when missing (default: %(default)s)")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--host", default="127.0.0.1", help="gateway address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="gateway port (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    parser.add_argument("--triton-http-port", type=int, default=8000)
    parser.add_argument("--triton-grpc-port", type=int, default=8001)
    parser.add_argument("--triton-metrics-port", type=int, default=8002)
    parser.add_argument("--gateway-shutdown-s", type=float, default=20.0, help="graceful shutdown bound")
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"[serve] {message}", file=sys.stderr, flush=True)


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


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with code {process.returncode} (its log is above)")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the gateway was not ready after {timeout_s:.0f} s; see {url}/readyz")


def stop_gateway(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_models(args.repository, args.model)
    ports = Ports(args.triton_http_port, args.triton_grpc_port, args.triton_metrics_port)
    triton = TritonServer(args.repository, ports, log_path=ROOT / "build" / "tritonserver.log")
    say(f"starting Triton (HTTP {ports.http}, gRPC {ports.grpc}, metrics {ports.metrics}); log: {triton.log_path}")
    started = time.monotonic()
    try:
        triton.start()
    except TritonError as exc:
        say(f"Triton did not start: {exc}")
        return 1
    say(f"Triton ready in {time.monotonic() - started:.1f} s; starting the gateway")
    env = {
        **os.environ,
        "GATEWAY_HOST": args.host,
        "GATEWAY_PORT": str(args.port),
        "GATEWAY_WORKERS": str(args.workers),
        "GATEWAY_TRITON_URL": triton.grpc_url,
        "GATEWAY_SHUTDOWN_TIMEOUT_S": str(args.gateway_shutdown_s),
    }
    gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, cwd=ROOT, start_new_session=True)
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
        wait_ready(url, gateway)
        print(
            f"\n  Gateway   {url}   (docs: {url}/docs, metrics: {url}/metrics)"
            f"\n  Triton    gRPC {triton.grpc_url}   HTTP {triton.http_url}   metrics {triton.metrics_url}"
            f"\n\n  Try it:\n    curl -s -H 'Content-Type: image/jpeg' --data-binary @{sample_image()} "
            f"'{url}/v1/classify?top_k=3'\n\n  Ctrl-C stops both.\n",
            file=sys.stderr,
            flush=True,
        )
        while not stopping:
            if gateway.poll() is not None or triton.process is None or triton.process.poll() is not None:
                say("a process exited unexpectedly; stopping")
                code = 1
                break
            time.sleep(0.2)
    except RuntimeError as exc:
        say(str(exc))
        code = 1
    say("stopping the gateway (in-flight requests finish first)")
    stop_gateway(gateway, args.gateway_shutdown_s + 5)
    say("stopping Triton")
    triton.stop()
    say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
