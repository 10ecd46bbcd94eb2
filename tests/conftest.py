"""Session fixtures that start real servers on free loopback ports and wait on their readiness."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from launcher.process import Service, http_ok, on_free_ports
from launcher.triton import Ports, TritonServer

ROOT = Path(__file__).resolve().parent.parent
TEST_REPOSITORY = ROOT / "build" / "test-repository"
TEST_MODEL = "resnet18"
TEST_WEIGHTS = "seed:0"


@pytest.fixture(scope="session")
def test_repository() -> Path:
    """The ResNet-18 repository the suite runs on (`make test` builds it; built here when missing)."""
    if not (TEST_REPOSITORY / TEST_MODEL / "1" / "model.onnx").is_file():
        subprocess.run(
            [sys.executable, "-m", "export", "--model", TEST_MODEL, "--repository", str(TEST_REPOSITORY)],
            check=True,
        )
    return TEST_REPOSITORY


@contextmanager
def running_triton(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A tritonserver serving ``repository`` on free ports, its log in a fresh temporary folder; stopped after."""
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = on_free_ports(3, lambda ports: TritonServer(repository, Ports(*ports), log_path=log).start())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def triton(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(test_repository, tmp_path_factory) as server:
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


@pytest.fixture(scope="session")
def gateway_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Gateway]]:
    """Start gateways with settings of the test's choosing (``GATEWAY_*`` variables); all stopped at the end."""
    started: list[Gateway] = []

    def start(**env: str) -> Gateway:
        folder = tmp_path_factory.mktemp("gateway")
        env.setdefault("GATEWAY_SQLITE_PATH", str(folder / "items.sqlite3"))
        gateway = on_free_ports(1, lambda ports: Gateway(env, folder / "gateway.log", ports[0]).start())
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
