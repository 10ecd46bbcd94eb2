"""``tritonserve`` where things are not as they should be: Ctrl-C, two inputs with one edge map's name, moved ports
given as environment variables or without a scheme, a closed port, and servers that are not the gateway (an
endless answer, one that drips a byte a second, one that is not JSON). Each ends promptly with a message that
says what happened, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from launcher.process import free_ports
from launcher.triton import TritonServer
from tests.support.figures import FIGURES
from tests.support.stack import ROOT, Gateway


def tritonserve(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "client", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})  # fmt: skip


class Hostile(ThreadingHTTPServer):
    """Answers ``GET /healthz`` as the gateway does, and ``POST`` as ``mode`` says."""

    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.answered = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, *_: object) -> None:
        pass  # the client hung up on an endless answer: that is the point


class _Handler(BaseHTTPRequestHandler):
    server: Hostile
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        status, body = (200, b'{"status":"ok"}') if self.path == "/healthz" else (404, b"<html>no</html>")
        self._head(status, len(body))
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        mode = self.server.mode
        if mode == "endless":
            self._head(200, None)
            chunk = b"x" * 65536
            while True:  # until the client goes (a BrokenPipeError ends this thread)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        elif mode == "drip":
            self._head(200, 1000)
            for _ in range(1000):
                self.wfile.write(b"{")
                self.wfile.flush()
                time.sleep(1)
        elif mode == "not json":
            self._head(200, 9)
            self.wfile.write(b"<html/>\n\n")
        elif mode == "first only":  # the first answer at once, the others never
            if self.server.answered:
                time.sleep(600)
            self.server.answered += 1
            body = json.dumps({"model": "classify", "predictions": [{"label": "cat", "index": 1, "probability": 1}]})
            self._head(200, len(body))
            self.wfile.write(body.encode())

    def _head(self, status: int, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[Hostile]:
    server = Hostile(request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def photos_here(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    for name, image in photos.items():
        assert cv2.imwrite(str(tmp_path / f"{name}.jpg"), image)
    return tmp_path


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("hostile", "code", "message"),
    [
        ("endless", "answer_too_large", "the answer is over 1,048,576 bytes"),
        ("drip", "timeout", "no whole answer within 2 s (--timeout)"),
        ("not json", "invalid_answer", "the answer is not JSON"),
    ],
    indirect=["hostile"],
)
def test_a_server_that_is_not_the_gateway_gets_a_clean_error(
    hostile: Hostile, photos_here: Path, code: str, message: str
) -> None:
    photo = str(next(photos_here.glob("*.jpg")))
    started = time.monotonic()
    run = tritonserve("classify", photo, "--url", hostile.url, "--timeout", "2", "--format", "json", timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    [result] = json.loads(run.stdout)
    assert result["error"]["code"] == code and message in result["error"]["message"]
    seconds = time.monotonic() - started
    FIGURES[f"CLI against a server answering {hostile.mode!r} -> a clean error after (s)"] = f"{seconds:.1f}"
    assert seconds < 30  # a hang bound: the drip alone would take 1000 s


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
