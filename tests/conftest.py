"""Session fixtures that start real servers on free loopback ports and wait on their readiness."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from launcher.triton import Ports, TritonServer

ROOT = Path(__file__).resolve().parent.parent
TEST_REPOSITORY = ROOT / "build" / "test-repository"
TEST_MODEL = "resnet18"
TEST_WEIGHTS = "seed:0"


def free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out; held open together so they are distinct."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def test_repository() -> Path:
    """The ResNet-18 repository the suite runs on (`make test` builds it; built here when missing)."""
    if not (TEST_REPOSITORY / TEST_MODEL / "1" / "model.onnx").is_file():
        subprocess.run(
            [sys.executable, "-m", "export", "--model", TEST_MODEL, "--repository", str(TEST_REPOSITORY)],
            check=True,
        )
    return TEST_REPOSITORY


@pytest.fixture(scope="session")
def triton(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = TritonServer(test_repository, Ports(*free_ports(3)), log_path=log, exit_timeout_s=10)
    with server:
        yield server


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photographs that ship with scikit-image, as BGR uint8 (what cv2.imdecode returns)."""
    import skimage.data as data

    astronaut = _bgr(data.astronaut())
    return {
        "astronaut": astronaut,  # square
        "coffee": _bgr(data.coffee()),  # landscape
        "chelsea": _bgr(data.chelsea()),  # landscape
        "rocket_portrait": np.ascontiguousarray(np.rot90(_bgr(data.rocket()))),  # portrait
        "hubble": _bgr(data.hubble_deep_field()),
        "camera_gray": cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR),  # grayscale content
    }


class Gateway:
    """``python -m gateway`` as a real process (uvicorn) on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "GATEWAY_PORT": str(self.port), "GATEWAY_LOG_LEVEL": "info", **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> Gateway:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"gateway not up after {timeout_s} s:\n{self.log_path.read_text()}")

    def stop(self, timeout_s: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def gateway_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Gateway]]:
    """Start gateways with settings of the test's choosing (``GATEWAY_*`` variables); all stopped at the end."""
    started: list[Gateway] = []

    def start(**env: str) -> Gateway:
        folder = tmp_path_factory.mktemp("gateway")
        env.setdefault("GATEWAY_SQLITE_PATH", str(folder / "items.sqlite3"))
        gateway = Gateway(env, folder / "gateway.log").start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture(scope="session")
def gateway(gateway_factory: Callable[..., Gateway], triton: TritonServer) -> Gateway:
    """The gateway in front of the session's Triton, serving the test model."""
    return gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.figures import FIGURES

    if FIGURES:
        terminalreporter.section("reliability figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
