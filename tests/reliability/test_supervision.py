"""``python -m launcher`` (what ``make serve`` runs) as a real process: ports checked first, faults healed.

Triton killed, or one of its python-backend stubs killed: the gateway answers 503 (never a 5xx that says
"broken"), and the launcher restarts Triton so classification answers again with no manual step. The times are
held to the goals Triton killed behind a bare gateway is held to (tests/support/goals.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from launcher.process import free_ports, http_ok
from tests.support.figures import hold, record
from tests.support.goals import KILL_TO_503, SERVING_AGAIN
from tests.support.stack import ROOT, TEST_MODEL

pytestmark = pytest.mark.reliability


class Stack:
    def __init__(self, process: subprocess.Popen[bytes], url: str, output: Path) -> None:
        self.process = process
        self.url = url
        self.output = output

    def said(self) -> str:
        return self.output.read_text(errors="replace")

    def triton_pid(self) -> int:
        """The tritonserver child of the launcher."""
        return next(pid for pid, name, parent in _processes() if name == "tritonserver" and parent == self.process.pid)

    def stub_pids(self) -> list[int]:
        triton = self.triton_pid()
        return [pid for pid, name, parent in _processes() if name.startswith("triton_python_b") and parent == triton]

    def shared_memory(self) -> set[Path]:
        """The python backend's regions of the launcher's Triton (named by the prefix its command line sets)."""
        arguments = Path(f"/proc/{self.triton_pid()}/cmdline").read_text().split("\0")
        prefix = next(a.rsplit("=", 1)[1] for a in arguments if "shm-region-prefix-name=" in a)
        return set(Path("/dev/shm").glob(f"{prefix}*"))

    def stub_of(self, model: str) -> int:
        """The stub running ``model`` (its model file's path is the stub's first argument)."""
        return next(pid for pid in self.stub_pids() if f"/{model}/" in Path(f"/proc/{pid}/cmdline").read_text())


def _processes() -> Iterator[tuple[int, str, int]]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        yield int(stat.parent.name), head.split("(", 1)[1], int(rest.split()[1])


@pytest.fixture(scope="module")
def stack(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("launcher")
    gateway, http, grpc, metrics = free_ports(4)
    command = [sys.executable, "-m", "launcher", "--repository", str(test_repository), "--model", TEST_MODEL,
               "--port", str(gateway), "--triton-http-port", str(http), "--triton-grpc-port", str(grpc),
               "--triton-metrics-port", str(metrics), "--logs", str(folder / "logs")]  # fmt: skip
    output = folder / "launcher.out"
    with open(output, "wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{gateway}"
    deadline = time.monotonic() + 240
    while not http_ok(f"{url}/readyz") and time.monotonic() < deadline:
        assert process.poll() is None, output.read_text()
        time.sleep(0.2)
    yield Stack(process, url, output)
    process.send_signal(signal.SIGINT)  # what Ctrl-C does
    assert process.wait(timeout=60) == 0, output.read_text()


@pytest.fixture(scope="module")
def jpeg(photos: dict[str, np.ndarray]) -> bytes:
    return cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()


def _outage(stack: Stack, jpeg: bytes, kill: list[int], figure: str) -> None:
    """Kill ``kill``, then classify every 100 ms: seconds to the first 503, seconds until the launcher has
    restarted Triton and answers are 200 again (five in a row), and every status seen: the ``figure``. Only 503
    may come meanwhile, and the killed Triton's shared memory must be gone by then."""
    restarts = stack.said().count("Triton is back")
    regions = stack.shared_memory()
    statuses: dict[int, int] = {}
    first_503 = None
    recovered_at = None
    streak = 0
    killed = time.monotonic()
    for pid in kill:
        os.kill(pid, signal.SIGKILL)
    with httpx.Client(base_url=stack.url, timeout=15) as client:
        while time.monotonic() - killed < 60:
            status = client.post("/v1/classify", content=jpeg, headers={"content-type": "image/jpeg"}).status_code
            statuses[status] = statuses.get(status, 0) + 1
            if status == 503 and first_503 is None:
                first_503 = time.monotonic() - killed
            streak = streak + 1 if status == 200 else 0
            if streak >= 5 and stack.said().count("Triton is back") > restarts:
                recovered_at = time.monotonic() - killed
                break
            time.sleep(0.1)
    assert recovered_at is not None, (statuses, stack.said())
    assert regions and not regions & stack.shared_memory()  # the killed Triton's shared memory was given back
    record(f"launcher: {figure}, statuses", statuses)
    assert set(statuses) <= {200, 503}, statuses
    assert first_503 is not None, statuses
    hold(f"launcher: {figure} -> first 503", first_503, KILL_TO_503)
    hold(f"launcher: {figure} -> serving again", recovered_at, SERVING_AGAIN, detail="the launcher restarted Triton")


def test_a_killed_triton_is_restarted(stack: Stack, jpeg: bytes) -> None:
    _outage(stack, jpeg, [stack.triton_pid()], "Triton killed")
    assert "Triton exited" in stack.said()


def test_a_killed_stub_process_is_healed(stack: Stack, jpeg: bytes) -> None:
    assert len(stack.stub_pids()) >= 4  # decode, preprocess, the ResNet, canny: python-backend stubs here
    _outage(stack, jpeg, [stack.stub_of(TEST_MODEL)], "the ResNet's stub killed")  # on classify's path
    assert "lost 1 python-backend stub" in stack.said()
    assert http_ok(f"{stack.url}/readyz")


def test_ports_are_checked_before_anything_starts(test_repository: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        http, grpc, metrics = free_ports(3)
        command = [sys.executable, "-m", "launcher", "--repository", str(test_repository), "--model", TEST_MODEL,
                   "--port", str(taken), "--triton-http-port", str(http), "--triton-grpc-port", str(grpc),
                   "--triton-metrics-port", str(metrics)]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"gateway {taken}" in done.stderr and "already in use" in done.stderr
    assert "starting Triton" not in done.stderr
    assert time.monotonic() - started < 30
