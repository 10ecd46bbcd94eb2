"""``make serve`` stops, whatever stops it: run through a pipe as ``make serve 2>&1 | tee serve.log`` is, then ended
by SIGTERM (``kill``, ``timeout``), or by its pipe's reader going away. Each time no process of the stack is left
and every port is free again within 10 s. Killed outright, its watchdog stops the servers it started, and their
children (as a Triton's stubs are), and deletes what Triton leaves (its stubs' shared memory, its runtime copy).
(Ctrl-C to the pipeline's process group, while a restart waits on a wedged Triton, is in
test_launcher_supervision.py.) These stacks log as JSON (``--log-format json``), what log pipelines read: every line
of the launcher's and the gateway's logs is an object, the gateway's with its request id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.figures import hold
from tests.support.goals import STACK_STOPPED, STOPPED_WITHIN_S
from tests.support.launched import Launched, alive, descendants, describe, launch, processes, tiny_repository
from tests.support.stack import ROOT

pytestmark = pytest.mark.reliability


@pytest.fixture
def piped(tmp_path: Path) -> Iterator[Launched]:
    launched = launch(tmp_path, "{launcher} 2>&1 | cat > " + str(tmp_path / "terminal.txt"), "--log-format", "json")
    try:
        launched.wait_ready()
        yield launched
    finally:
        launched.kill()


def _stop(launched: Launched, how: str) -> None:
    if how == "SIGTERM":
        os.kill(launched.launcher_pid(), signal.SIGTERM)
    else:  # the pipe's reader ends
        os.kill(next(pid for pid, name, _ in processes(launched.tree()) if name == "cat"), signal.SIGKILL)


@pytest.mark.parametrize("how", ["SIGTERM", "reader closed"])
def test_the_stack_stops_with_the_launcher(piped: Launched, how: str) -> None:
    answer = httpx.get(f"{piped.url}/v1/models", headers={"x-request-id": "find-me"}, timeout=10)
    assert answer.status_code == 200
    tree = piped.tree()
    names = {name for _, name, _ in processes(tree)}
    assert {"tritonserver", "triton_python_b", "cat"} <= names, names
    _stop(piped, how)
    seconds = piped.wait_gone(tree, STOPPED_WITHIN_S)
    hold(
        f"22.1 the stack through a pipe, stopped by {how}: every process gone, every port free", seconds, STACK_STOPPED
    )
    # Stopped in order, and said so, though nobody reads its terminal any more.
    said = [json.loads(line)["message"] for line in piped.said().splitlines()]
    assert said[-3:] == ["stopping the gateway (in-flight requests finish first)", "stopping Triton", "stopped"]
    [gateway_log] = piped.logs.glob("*/gateway.log")
    lines = [json.loads(line) for line in gateway_log.read_text().splitlines()]
    [access] = [line for line in lines if line["request_id"] == "find-me"]
    assert access["logger"] == "gateway.access" and access["message"].startswith("GET /v1/models 200")


def test_a_taken_port_names_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
         "print(s.getsockname()[1], flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        port = holder.stdout.readline().strip()
        repository = tiny_repository(tmp_path, tmp_path / "wedge")
        command = [sys.executable, "-m", "launcher", "--repository", str(repository), "--model", "classify",
                   "--triton-http-port", port]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert f"Triton HTTP {port} (held by pid {holder.pid}: {sys.executable} -c import socket" in done.stderr


def test_a_killed_parent_leaves_no_server(tmp_path: Path) -> None:
    """The launcher, or any process that starts servers through ``Service`` (the tests, the benchmark), killed:
    a server and the children it started (as Triton starts its stubs) go too."""
    script = (
        "import sys, time; from pathlib import Path; from launcher.process import Service; "
        "service = Service('server', ['sh', '-c', 'sleep 600 & sleep 600'], Path(sys.argv[1]), lambda: True); "
        "print(service.start().pid, flush=True); time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "server.log")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert parent.stdout is not None
    int(parent.stdout.readline())
    time.sleep(0.2)  # the server's own child started
    server = descendants(parent.pid) - {parent.pid}  # sh, its two sleeps, and the parent's watchdog
    assert sorted(name for _, name, _ in processes(server) if name != "python") == ["sh", "sleep", "sleep"]
    parent.kill()
    parent.wait()
    started = time.monotonic()
    while alive(server):
        assert time.monotonic() - started < STOPPED_WITHIN_S, f"outlived their killed parent: {describe(server)}"
        time.sleep(0.05)
    hold(
        "22.1 the launcher killed: the servers it started gone, with their children",
        time.monotonic() - started,
        STACK_STOPPED,
    )


def test_a_killed_launcher_leaves_no_shared_memory(tmp_path: Path) -> None:
    """SIGKILL to every process of the stack but the watchdog (the launcher, the gateway, Triton and its stubs, as
    the out-of-memory killer may take them): nobody is left to delete the stubs' regions in /dev/shm, which nothing
    would ever free, or Triton's runtime copy of the repository; the launcher's watchdog deletes both. (Stopped by
    a signal they can handle, the stubs delete their own regions.)"""
    launched = launch(tmp_path, "{launcher}")
    try:
        launched.wait_ready()
        arguments = Path(f"/proc/{launched.triton_pid()}/cmdline").read_bytes().decode().split("\0")
        prefix = next(a.rpartition("=")[2] for a in arguments if "shm-region-prefix-name=" in a)
        runtime = Path(next(a.partition("=")[2] for a in arguments if a.startswith("--model-repository=")))
        regions = Path("/dev/shm").glob(f"{prefix}*")
        assert list(regions) and runtime.is_dir(), (prefix, runtime)
        tree = launched.tree()
        for pid in tree - {_watchdog(tree)}:  # the shell is the launcher: bash runs a lone command in its place
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        launched.wait_gone(tree, STOPPED_WITHIN_S)
        while list(Path("/dev/shm").glob(f"{prefix}*")) or runtime.exists():
            assert time.monotonic() - started < STOPPED_WITHIN_S, (list(Path("/dev/shm").glob(f"{prefix}*")), runtime)
            time.sleep(0.05)
        hold(
            "22.1 the stack killed but its watchdog: Triton's shared memory and runtime copy deleted",
            time.monotonic() - started,
            STACK_STOPPED,
        )
    finally:
        launched.kill()


def _watchdog(pids: set[int]) -> int:
    return next(pid for pid in pids if b"watchdog.py" in Path(f"/proc/{pid}/cmdline").read_bytes())
