"""The real servers the suite runs on: the test model's repository, Triton on free ports, the gateway as a process,
moto's AWS server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from launcher.process import Service, http_ok, on_free_ports
from launcher.triton import Ports, TritonServer

ROOT = Path(__file__).resolve().parent.parent.parent
TEST_REPOSITORY = ROOT / "build" / "test-repository"
TEST_MODEL = "resnet18"
TEST_WEIGHTS = "seed:0"


class Stops:
    """Servers' stops, run in the background, each on a thread of its own, so that no test waits while one drains
    or unloads its models (a Triton takes 3-4 s to unload its python-backend stubs, polling once a second); ``wait``
    waits for all of them (the session's end)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(16, thread_name_prefix="stop")
        self._stops: list[Future[object]] = []

    def submit(self, stop: Callable[[], object]) -> None:
        self._stops.append(self._pool.submit(stop))

    def wait(self) -> None:
        for stop in self._stops:
            stop.result()
        self._stops.clear()


STOPS = Stops()


@contextmanager
def running_triton(
    repository: Path, tmp_path_factory: pytest.TempPathFactory, extra_args: tuple[str, ...] = (), **options: Any
) -> Iterator[TritonServer]:
    """A tritonserver serving ``repository`` on free ports (``options``: the rest of ``TritonServer``'s), its log in
    a fresh temporary folder; stopped after, in the background (``STOPS``)."""
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = on_free_ports(
        3,
        lambda ports: TritonServer(repository, Ports(*ports), log_path=log, extra_args=extra_args, **options).start(),
    )
    try:
        yield server
    finally:
        STOPS.submit(server.stop)


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
        self.service = Service(
            "gateway", [sys.executable, "-m", "gateway"], log_path, self.healthy, env, ROOT, ports=(port,)
        )

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
    started for a fixture (a module's, the session's) at the session's end; in the background (``STOPS``)."""

    def __init__(self) -> None:
        self.in_test_body = False  # a test's body is running (tests/conftest.py's pytest_runtest_call says so)
        self._body: list[Gateway] = []
        self._fixtures: list[Gateway] = []

    def add(self, gateway: Gateway) -> Gateway:
        (self._body if self.in_test_body else self._fixtures).append(gateway)
        return gateway

    def test_body_ended(self) -> None:
        self.in_test_body = False
        self._stop(self._body)

    def close(self) -> None:
        self._stop(self._fixtures)

    @staticmethod
    def _stop(gateways: list[Gateway]) -> None:
        for gateway in gateways:
            STOPS.submit(gateway.stop)
        gateways.clear()
