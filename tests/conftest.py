"""Session fixtures that start real servers on free loopback ports and wait on their readiness."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
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
