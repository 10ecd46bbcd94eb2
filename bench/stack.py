"""The system under test on free loopback ports: Triton, the gateway and the naive baseline, always stopped.

Triton is ``launcher.triton.TritonServer``; the gateway runs as ``python -m gateway`` (what ``make serve`` and
ECS run) and the baseline as ``python -m bench.naive``, each in its own session with its log in a file, so a
Ctrl-C reaches only the benchmark, which then stops them in order: gateway, Triton, baseline.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.peers import FASTAPI_TRITON
from launcher.process import LOOPBACK as HOST
from launcher.process import Service, free_ports
from launcher.triton import Ports, TritonServer

_STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress for a person watching, with the time since the start, on stderr (stdout carries the summary)."""
    print(f"[bench {time.monotonic() - _STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


def port_of(url: str) -> int:
    """The port of ``http://host:port`` or ``host:port``."""
    return int(url.rstrip("/").rpartition(":")[2])


@dataclass(frozen=True)
class Stack:
    triton: TritonServer
    gateway: Service
    naive: Service | None
    repository: Path  # what Triton serves; the peers load the same model.onnx from it

    def pids(self) -> dict[str, int]:
        """The process trees whose CPU time the benchmark accounts for, by role."""
        assert self.triton.process is not None
        naive = {"naive": self.naive.pid} if self.naive else {}
        return {"gateway": self.gateway.pid, "triton": self.triton.process.pid, **naive}


@contextlib.contextmanager
def running_peer(kind: str, stack: Stack, model: str, workdir: Path, timeout_s: float = 300.0) -> Iterator[Service]:
    """A peer (``bench.peers``) on a free port for the scenarios that measure it, stopped after them: LitServe's
    worker polls its queue even when idle, which would take CPU from every other scenario on a small machine. The
    ONNX Runtime peers load the stack's ``model``; the relay sends to its Triton."""
    (port,) = free_ports(1)
    serves = (
        ["--triton-url", stack.triton.grpc_url]
        if kind == FASTAPI_TRITON
        else ["--repository", str(stack.repository), "--model", model]
    )
    peer = Service.http(
        kind,
        [sys.executable, "-m", "bench.peers", kind, *serves, "--host", HOST, "--port", str(port)],
        workdir / f"{kind}.log",
        f"http://{HOST}:{port}",
        "/health",
    )  # fmt: skip
    with contextlib.ExitStack() as resources:
        say(f"starting the {kind} peer ({model})")
        resources.callback(peer.stop)
        peer.start(timeout_s)
        yield peer


@dataclass(frozen=True)
class StackOptions:
    model: str
    weights: str  # the naive baseline's, the same the export used
    device: str  # the naive baseline's: cpu or cuda
    gateway_workers: int
    startup_timeout_s: float = 300.0
    naive: bool = True  # the eager-PyTorch baseline beside the stack
    response_cache_bytes: int = 0  # Triton's response cache (launcher.triton.TritonServer); 0: off


@contextlib.contextmanager
def running_stack(repository: Path, workdir: Path, options: StackOptions) -> Iterator[Stack]:
    """Start all three (the baseline, if asked for, loads its model while Triton starts), yield when all are
    ready."""
    http, grpc, metrics, gateway_port, naive_port = free_ports(5)
    naive = Service.http(
        "naive baseline",
        [sys.executable, "-m", "bench.naive", "--model", options.model, "--weights", options.weights,
         "--device", options.device, "--host", HOST, "--port", str(naive_port)],
        workdir / "naive.log",
        f"http://{HOST}:{naive_port}",
        "/openapi.json",
    )  # fmt: skip
    triton = TritonServer(
        repository,
        Ports(http, grpc, metrics),
        exit_timeout_s=10,
        startup_timeout_s=options.startup_timeout_s,
        log_path=workdir / "tritonserver.log",
        response_cache_bytes=options.response_cache_bytes,
    )
    gateway_env = {
        **os.environ,
        "GATEWAY_HOST": HOST,
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_WORKERS": str(options.gateway_workers),
        "GATEWAY_TRITON_URL": triton.grpc_url,
        "GATEWAY_SQLITE_PATH": str(workdir / "items.sqlite3"),
    }
    gateway_url = f"http://{HOST}:{gateway_port}"
    command = [sys.executable, "-m", "gateway"]
    gateway = Service.http("gateway", command, workdir / "gateway.log", gateway_url, "/readyz", gateway_env)
    with contextlib.ExitStack() as stack:  # unwinds in reverse: gateway, then Triton, then the baseline
        if options.naive:
            say(f"starting the naive baseline ({options.model} eager PyTorch on {options.device})")
            stack.callback(naive.stop)
            naive.start()
        say(f"starting Triton (gRPC {grpc}); log: {triton.log_path}")
        started = time.monotonic()
        stack.enter_context(triton)
        say(f"Triton ready in {time.monotonic() - started:.1f} s; starting {options.gateway_workers} gateway worker(s)")
        stack.callback(gateway.stop)
        gateway.start(options.startup_timeout_s)
        if options.naive:
            naive.wait_ready(options.startup_timeout_s)
        say("all up")
        yield Stack(triton, gateway, naive if options.naive else None, repository)
