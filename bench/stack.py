"""The system under test on free loopback ports: Triton, the gateway and the naive baseline, always stopped.

Triton is ``launcher.triton.TritonServer``; the gateway runs as ``python -m gateway`` (what ``make serve`` and
ECS run) and the baseline as ``python -m bench.naive``, each in its own session with its log in a file, so a
Ctrl-C reaches only the benchmark, which then stops them in order: gateway, Triton, baseline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from launcher.triton import Ports, TritonServer

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


_STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress for a person watching, with the time since the start, on stderr (stdout carries the summary)."""
    print(f"[bench {time.monotonic() - _STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out, held open together so they are distinct."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class ServiceError(RuntimeError):
    """A server process exited or never became ready; the message carries its log's tail."""


class Service:
    """A server subprocess with its log in a file, ready when a URL answers 200, stopped with SIGTERM."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path, url: str) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.url = url
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def start(self) -> Service:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, path: str, timeout_s: float) -> None:
        """Poll ``path`` until it answers 200; fail at once if the process dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServiceError(f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url + path, timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.1)  # the polling interval, not a guess at readiness
        raise ServiceError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return "\n".join(text[-lines:]) + f"\n(full log: {self.log_path})"

    def stop(self, timeout_s: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def port_of(url: str) -> int:
    """The port of ``http://host:port`` or ``host:port``."""
    return int(url.rstrip("/").rpartition(":")[2])


@dataclass(frozen=True)
class Stack:
    triton: TritonServer
    gateway: Service
    naive: Service
    repository: Path  # what Triton serves; the peers load the same model.onnx from it

    def pids(self) -> dict[str, int]:
        """The process trees whose CPU time the benchmark accounts for, by role."""
        assert self.triton.process is not None
        return {"gateway": self.gateway.pid, "triton": self.triton.process.pid, "naive": self.naive.pid}


@contextlib.contextmanager
def running_peer(kind: str, stack: Stack, model: str, workdir: Path, timeout_s: float = 300.0) -> Iterator[Service]:
    """A peer (``bench.peers``) on a free port for the scenarios that measure it, stopped after them: LitServe's
    worker polls its queue even when idle, which would take CPU from every other scenario on a small machine."""
    (port,) = free_ports(1)
    peer = Service(
        kind,
        [sys.executable, "-m", "bench.peers", kind, "--repository", str(stack.repository), "--model", model,
         "--host", HOST, "--port", str(port)],
        dict(os.environ),
        workdir / f"{kind}.log",
        f"http://{HOST}:{port}",
    )  # fmt: skip
    with contextlib.ExitStack() as resources:
        say(f"starting the {kind} peer ({model})")
        resources.callback(peer.stop)
        peer.start()
        peer.wait_ready("/health", timeout_s)
        yield peer


@dataclass(frozen=True)
class StackOptions:
    model: str
    weights: str  # the naive baseline's, the same the export used
    device: str  # the naive baseline's: cpu or cuda
    gateway_workers: int
    startup_timeout_s: float = 300.0


@contextlib.contextmanager
def running_stack(repository: Path, workdir: Path, options: StackOptions) -> Iterator[Stack]:
    """Start all three (the baseline loads its model while Triton starts), yield when all are ready."""
    http, grpc, metrics, gateway_port, naive_port = free_ports(5)
    naive = Service(
        "naive baseline",
        [sys.executable, "-m", "bench.naive", "--model", options.model, "--weights", options.weights,
         "--device", options.device, "--host", HOST, "--port", str(naive_port)],
        dict(os.environ),
        workdir / "naive.log",
        f"http://{HOST}:{naive_port}",
    )  # fmt: skip
    triton = TritonServer(
        repository,
        Ports(http, grpc, metrics),
        exit_timeout_s=10,
        startup_timeout_s=options.startup_timeout_s,
        log_path=workdir / "tritonserver.log",
    )
    gateway_env = {
        **os.environ,
        "GATEWAY_HOST": HOST,
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_WORKERS": str(options.gateway_workers),
        "GATEWAY_TRITON_URL": triton.grpc_url,
        "GATEWAY_SQLITE_PATH": str(workdir / "items.sqlite3"),
    }
    gateway = Service(
        "gateway",
        [sys.executable, "-m", "gateway"],
        gateway_env,
        workdir / "gateway.log",
        f"http://{HOST}:{gateway_port}",
    )
    with contextlib.ExitStack() as stack:  # unwinds in reverse: gateway, then Triton, then the baseline
        say(f"starting the naive baseline ({options.model} eager PyTorch on {options.device})")
        stack.callback(naive.stop)
        naive.start()
        say(f"starting Triton (gRPC {grpc}); log: {triton.log_path}")
        started = time.monotonic()
        stack.enter_context(triton)
        say(f"Triton ready in {time.monotonic() - started:.1f} s; starting {options.gateway_workers} gateway worker(s)")
        stack.callback(gateway.stop)
        gateway.start()
        gateway.wait_ready("/readyz", options.startup_timeout_s)
        naive.wait_ready("/openapi.json", options.startup_timeout_s)
        say("all up")
        yield Stack(triton, gateway, naive, repository)
