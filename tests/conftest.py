"""Session fixtures that start real servers on free loopback ports and wait on their readiness."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher.process import on_free_ports
from launcher.triton import TritonServer
from tests.support.photos import load_photos
from tests.support.stack import TEST_MODEL, TEST_REPOSITORY, TEST_WEIGHTS, Gateway, running_triton


@pytest.fixture(scope="session")
def test_repository() -> Path:
    """The ResNet-18 repository the suite runs on (`make test` builds it; built here when missing)."""
    if not (TEST_REPOSITORY / TEST_MODEL / "1" / "model.onnx").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "export",
                "--model",
                TEST_MODEL,
                "--weights",
                TEST_WEIGHTS,
                "--repository",
                str(TEST_REPOSITORY),
            ],  # fmt: skip
            check=True,
        )
    return TEST_REPOSITORY


@pytest.fixture(scope="session")
def triton(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(test_repository, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photographs that ship with scikit-image, as BGR uint8 (what cv2.imdecode returns)."""
    return load_photos()


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
    from tests.support.figures import FIGURES

    if FIGURES:
        terminalreporter.section("reliability figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
