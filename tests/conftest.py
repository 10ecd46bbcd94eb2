"""Session fixtures that start real servers on free loopback ports and wait on their readiness; the torch cache the
whole session sees; the reliability figures printed at the end, and written as a report with
``--reliability-report DIR`` (``make reliability``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from launcher.process import on_free_ports
from launcher.triton import TritonServer
from tests.support.gate import GatedTriton, running_gated_triton
from tests.support.items_support import closed_port
from tests.support.photos import load_photos
from tests.support.reliability_report import Recorder
from tests.support.stack import STOPS, TEST_MODEL, TEST_REPOSITORY, TEST_WEIGHTS, Gateway, Gateways, running_triton


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        type=Path,
        metavar="DIR",
        help="write the figures, goals and verdicts to DIR/report.md and DIR/report.json",
    )


@pytest.fixture(scope="session", autouse=True)
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The suite runs as on a host whose torch cache holds the ImageNet weights of the test model, whatever this
    host's cache holds: TORCH_HOME, for this process and every one it starts, is a folder with a weights file where
    torch.hub looks (a seeded random network under the published file's name). Tests of an empty or offline cache
    point TORCH_HOME at their own folder."""
    import torch
    from torchvision.models import get_model

    from export.weights import imagenet_weights

    home = tmp_path_factory.mktemp("torch-home")
    os.environ["TORCH_HOME"] = str(home)
    cached = imagenet_weights(TEST_MODEL).cache_path
    cached.parent.mkdir(parents=True)
    torch.manual_seed(7)
    torch.save(get_model(TEST_MODEL, weights=None).state_dict(), cached)
    yield home
    del os.environ["TORCH_HOME"]


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
def second_version(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 2 of the test model, other weights (seed:1), as ``python -m export --version 2`` writes it: exported
    once, the folder that tests copy beside a repository's version 1 (a version swap, the response cache's keys)."""
    repository = tmp_path_factory.mktemp("second-version")
    (repository / TEST_MODEL).mkdir()
    shutil.copyfile(test_repository / TEST_MODEL / "config.pbtxt", repository / TEST_MODEL / "config.pbtxt")
    export = [sys.executable, "-m", "export", "--model", TEST_MODEL, "--weights", "seed:1", "--version", "2"]
    subprocess.run([*export, "--repository", str(repository)], check=True, capture_output=True)
    return repository / TEST_MODEL / "2"


@pytest.fixture(scope="session")
def triton(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(test_repository, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def gated(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedTriton]:
    """A Triton whose ResNet and Canny wait while a test holds their gate closed (tests/support/gate.py)."""
    with running_gated_triton(test_repository, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photographs that ship with scikit-image, as BGR uint8 (what cv2.imdecode returns)."""
    return load_photos()


GATEWAYS = Gateways()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """While a test's body runs, the gateways it starts are its own: stopped when it ends."""
    GATEWAYS.in_test_body = True
    try:
        return (yield)
    finally:
        GATEWAYS.test_body_ended()


@pytest.fixture(scope="session")
def gateway_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Gateway]]:
    """Start gateways with settings of the test's choosing (``GATEWAY_*`` variables): one started by a test's body
    is stopped when the test ends, one started for a fixture when the session ends (``Gateways``)."""

    def start(**env: str) -> Gateway:
        folder = tmp_path_factory.mktemp("gateway")
        env.setdefault("GATEWAY_SQLITE_PATH", str(folder / "items.sqlite3"))
        return GATEWAYS.add(on_free_ports(1, lambda ports: Gateway(env, folder / "gateway.log", ports[0]).start()))

    yield start
    GATEWAYS.close()


@pytest.fixture(scope="session")
def bare_gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    """A gateway at its default settings whose Triton is a port nobody listens on, for what the gateway decides alone
    (who may call what, bodies, items, its answers when Triton is down): shared by the tests that need no other."""
    return gateway_factory(GATEWAY_TRITON_URL=f"127.0.0.1:{closed_port()}")


@pytest.fixture(scope="session")
def gateway(gateway_factory: Callable[..., Gateway], triton: TritonServer) -> Gateway:
    """The gateway in front of the session's Triton, serving the test model."""
    return gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Every server stopped in the background (``STOPS``: gateways, Tritons) has stopped before the session ends."""
    STOPS.wait()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Recorder(config), "reliability-figures")
