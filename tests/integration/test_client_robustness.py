"""``tritonserve`` where things are not as they should be: Ctrl-C, two inputs with one edge map's name, moved ports
given as environment variables or without a scheme, a closed port, a server without the gateway's health route.
Each ends promptly with a message that says what happened, never a traceback. (Servers that answer as the gateway
never would, an endless answer, a drip, not JSON: tests/reliability/test_cli_answers.py.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from launcher.process import free_ports
from launcher.triton import TritonServer
from tests.support import not_the_gateway
from tests.support.not_the_gateway import Hostile, tritonserve
from tests.support.stack import ROOT, Gateway

hostile, photos_here = not_the_gateway.hostile, not_the_gateway.photos_here


@pytest.mark.parametrize("hostile", ["first only"], indirect=True)
def test_ctrl_c_says_how_far_it_got(hostile: Hostile, photos_here: Path) -> None:
    files = len(list(photos_here.glob("*.jpg")))
    client = subprocess.Popen(
        [sys.executable, "-m", "client", "classify", str(photos_here), "--url", hostile.url, "--concurrency", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not hostile.answered:
        assert time.monotonic() < deadline and client.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)  # the first answer read, the second request waiting
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 130
    assert f"interrupted, 1 of {files} done" in stderr and "Traceback" not in stderr


def test_addresses_with_or_without_a_scheme_and_from_the_environment(
    gateway: Gateway, triton: TritonServer, photos_here: Path
) -> None:
    photo = str(next(photos_here.glob("*.jpg")))
    host_port = gateway.url.removeprefix("http://")
    from_env = tritonserve("classify", photo, "--format", "json", env={"TRITONSERVE_URL": host_port})
    assert from_env.returncode == 0, from_env.stderr
    over_grpc = tritonserve("classify", photo, "--grpc", "--format", "json",
                            env={"TRITONSERVE_TRITON_URL": f"grpc://{triton.grpc_url}"})  # fmt: skip
    assert over_grpc.returncode == 0, over_grpc.stderr
    assert (
        json.loads(from_env.stdout)[0]["predictions"][0]["index"]
        == (json.loads(over_grpc.stdout)[0]["predictions"][0]["index"])
    )
    wrong = tritonserve("classify", photo, "--triton-url", "ftp://host:1", "--grpc")
    assert wrong.returncode == 2 and "is not Triton's gRPC address" in wrong.stderr


def test_a_closed_port_fails_at_once_with_what_to_do(photos_here: Path) -> None:
    (closed,) = free_ports(1)
    photo = str(next(photos_here.glob("*.jpg")))
    grpc = tritonserve("classify", photo, "--grpc", "--triton-url", f"127.0.0.1:{closed}")
    assert grpc.returncode == 2 and "Traceback" not in grpc.stderr
    assert f"cannot reach Triton's gRPC at 127.0.0.1:{closed}" in grpc.stderr and "--triton-url" in grpc.stderr
    rest = tritonserve("edges", photo, "--url", f"127.0.0.1:{closed}")
    assert rest.returncode == 2 and f"cannot reach the gateway at http://127.0.0.1:{closed}" in rest.stderr
    assert "TRITONSERVE_URL" in rest.stderr


@pytest.mark.parametrize("hostile", ["not json"], indirect=True)
def test_a_server_without_the_gateways_health_route_is_named(hostile: Hostile, photos_here: Path) -> None:
    run = tritonserve("classify", str(photos_here), "--url", f"{hostile.url}/elsewhere")
    assert run.returncode == 2 and "is not a tritonserve gateway (GET /healthz answered HTTP 404)" in run.stderr


def test_edges_never_writes_two_inputs_to_one_file(
    gateway: Gateway, tmp_path: Path, photos: dict[str, np.ndarray]
) -> None:
    image = next(iter(photos.values()))
    for suffix in (".jpg", ".png"):
        assert cv2.imwrite(str(tmp_path / f"photo{suffix}"), image)
    run = tritonserve("edges", str(tmp_path), "--url", gateway.url, "-q")
    assert run.returncode == 0, run.stderr
    written = sorted(Path(line).name for line in run.stdout.splitlines())
    assert written == ["photo.jpg.edges.png", "photo.png.edges.png"]
    assert "would write the same edge map" in run.stderr
