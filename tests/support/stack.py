"""The real servers the suite runs on: the test model's repository, Triton on free ports, the gateway as a process,
moto's AWS server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from launcher.process import Service, http_ok, on_free_ports
from launcher.triton import Ports, TritonServer

ROOT = Path(__file__).resolve().parent.parent.parent
TEST_REPOSITORY = ROOT / "build" / "test-repository"
TEST_MODEL = "resnet18"
TEST_WEIGHTS = "seed:0"


@contextmanager
def running_triton(
    repository: Path, tmp_path_factory: pytest.TempPathFactory, extra_args: tuple[str, ...] = ()
) -> Iterator[TritonServer]:
    """A tritonserver serving ``repository`` on free ports, its log in a fresh temporary folder; stopped after."""
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = on_free_ports(
        3, lambda ports: TritonServer(repository, Ports(*ports), log_path=log, extra_args=extra_args).start()
    )
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_moto() -> Iterator[str]:
    """moto's AWS-protocol server (S3, DynamoDB, ECS...) on a free loopback port: its endpoint URL; stopped after."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class Gateway:
    """``python -m gateway`` as a real process (uvicorn) on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "GATEWAY_PORT": str(port), "GATEWAY_LOG_LEVEL": "info", **env}
        self.service = Service("gateway", [sys.executable, "-m", "gateway"], log_path, self.healthy, env, ROOT)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.service.process

    def healthy(self) -> bool:
        return http_ok(f"{self.url}/healthz", timeout_s=1)

    def start(self, timeout_s: float = 60) -> Gateway:
        self.service.start(timeout_s)
        return self

    def stop(self, timeout_s: float = 30) -> int | None:
        return self.service.stop(timeout_s)

    def log(self) -> str:
        return self.service.log_path.read_text(errors="replace")


class Gateways:
    """The gateways a session starts, stopped as soon as nothing can use them: one that a test's body started when
    the test ends (an idle gateway still wakes twenty times a second and holds 130 MB; a session starts dozens), one
    started for a fixture (a module's, the session's) at the session's end. Stops run in the background, each on a
    thread of its own (each drains on its own), so no test waits for them; ``close`` waits for all."""

    def __init__(self) -> None:
        self.in_test_body = False  # a test's body is running (tests/conftest.py's pytest_runtest_call says so)
        self._body: list[Gateway] = []
        self._fixtures: list[Gateway] = []
        self._stopping = ThreadPoolExecutor(16, thread_name_prefix="stop-gateway")
        self._stops: list[Future[int | None]] = []

    def add(self, gateway: Gateway) -> Gateway:
        (self._body if self.in_test_body else self._fixtures).append(gateway)
        return gateway

    def test_body_ended(self) -> None:
        self.in_test_body = False
        self._stop(self._body)

    def close(self) -> None:
        self._stop(self._fixtures)
        for stop in self._stops:
            stop.result()
        self._stopping.shutdown()

    def _stop(self, gateways: list[Gateway]) -> None:
        self._stops += [self._stopping.submit(gateway.stop) for gateway in gateways]
        gateways.clear()
