"""Servers that are not the gateway, for the command-line client to meet (an endless answer, one that drips a byte a
second, one that is not JSON, one that answers the first request only), and the client run as a user runs it."""

from __future__ import annotations

import json
import os
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

from tests.support.stack import ROOT


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
