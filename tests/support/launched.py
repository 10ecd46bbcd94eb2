"""``python -m launcher`` (what ``make serve`` runs) as a real process tree, on a small repository of its own.

The launcher needs little of the real repository (a ``classify`` config, and the identity of the network
``--model`` names), and what these tests check (processes, ports, restarts, versions) does not depend on the
ResNet: a repository of tiny python-backend models starts in seconds. ``classify`` waits in ``initialize`` while
its ``WEDGE_FILE`` exists, so a test can make a Triton that never becomes ready; ``versioned`` has two versions.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from launcher.process import free_ports, http_ok, port_is_free
from servables.classification import Identity
from tests.support.stack import ROOT

# What the launcher says once both servers are up and it supervises them (JSON logs, then the text for people).
ANNOUNCED = ('"message": "serving"', "Ctrl-C stops both.")

TINY_MODEL = """
import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        wedge = config["parameters"]["WEDGE_FILE"]["string_value"]
        while wedge and os.path.exists(wedge):  # a model load that never ends, while the file is there
            time.sleep(0.1)
        self.version = float(args["model_version"])

    def execute(self, requests):
        out = np.full([1], self.version, np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]) for _ in requests]
"""


def _config(name: str, wedge: Path | None) -> str:
    parameters = [("WEDGE_FILE", str(wedge or ""))]
    return (
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\nversion_policy {{ all {{ }} }}\n'
        'input { name: "IN" data_type: TYPE_FP32 dims: 1 }\noutput { name: "OUT" data_type: TYPE_FP32 dims: 1 }\n'
        "instance_group { count: 1 kind: KIND_CPU }\n"
        + "".join(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in parameters)
    )


def write_version(repository: Path, model: str, version: int) -> Path:
    """A version folder as ``python -m export`` writes one: the folder, then its model file renamed into place."""
    folder = repository / model / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / ".model.py.partial"
    partial.write_text(TINY_MODEL)
    partial.replace(folder / "model.py")
    return folder


def tiny_repository(folder: Path, wedge: Path) -> Path:
    """``classify`` (wedged while ``wedge`` exists; it also holds the ``identity.json`` the launcher looks for) and
    ``versioned`` (versions 1 and 2, version policy all)."""
    repository = folder / "repository"
    for name, versions in (("classify", 1), ("versioned", 2)):
        (repository / name).mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(_config(name, wedge if name == "classify" else None))
        for version in range(1, versions + 1):
            write_version(repository, name, version)
    Identity("1", "seed:0").write(repository / "classify" / "1")  # what --model classify checks for
    return repository


@dataclass
class Launched:
    """A launcher started by a shell line (a pipeline, say) in a process group of its own, on the tiny repository."""

    shell: subprocess.Popen[bytes]
    ports: list[int]  # gateway, Triton HTTP, gRPC, metrics
    logs: Path
    repository: Path
    wedge: Path  # while this file exists, Triton's start waits for ever on classify's load

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def triton_http(self) -> str:
        return f"http://127.0.0.1:{self.ports[1]}"

    def said(self) -> str:
        """What the launcher said (its launcher.log, which outlives a closed terminal)."""
        return "".join(path.read_text(errors="replace") for path in sorted(self.logs.glob("*/launcher.log")))

    def launcher_pid(self) -> int:
        return next(pid for pid, _, _ in processes(self.tree()) if self._is_launcher(pid))

    @staticmethod
    def _is_launcher(pid: int) -> bool:
        try:
            return b"-m\0launcher\0" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def triton_pid(self) -> int:
        return next(pid for pid, name, _ in processes(self.tree()) if name == "tritonserver")

    def tree(self) -> set[int]:
        """The shell and every process below it (sessions do not matter: parents do)."""
        return descendants(self.shell.pid)

    def wait_for(self, text: str, timeout_s: float, after: int = 0) -> float:
        """Seconds until the launcher has said ``text`` (past the first ``after`` characters of what it said)."""
        started = time.monotonic()
        while text not in self.said()[after:]:
            assert time.monotonic() - started < timeout_s, f"no {text!r} in {timeout_s} s:\n{self.said()}"
            time.sleep(0.1)
        return time.monotonic() - started

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until both servers answer and the launcher has said it serves (it is supervising: a stop is now the
        stack's stop, not a start cut short)."""
        deadline = time.monotonic() + timeout_s
        while not (
            http_ok(f"{self.url}/healthz")
            and http_ok(f"{self.triton_http}/v2/health/ready")
            and any(line in self.said() for line in ANNOUNCED)
        ):
            assert self.shell.poll() is None, self.said()
            assert time.monotonic() < deadline, self.said()
            time.sleep(0.2)

    def wait_gone(self, pids: set[int], timeout_s: float) -> float:
        """Seconds until every process in ``pids`` is gone and every port is free; fails past ``timeout_s``."""
        started = time.monotonic()
        while alive(pids) or not all(map(port_is_free, self.ports)):
            assert time.monotonic() - started < timeout_s, (
                f"after {timeout_s} s: alive {describe(alive(pids))}, "
                f"taken {[p for p in self.ports if not port_is_free(p)]}\n{self.said()}"
            )
            time.sleep(0.05)
        return time.monotonic() - started

    def kill(self) -> None:
        """What a test's teardown does whatever happened: nothing of this tree survives it."""
        for pid in self.tree():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.shell.wait(timeout=10)


def launch(folder: Path, shell_line: str, *options: str) -> Launched:
    """``shell_line`` with ``{launcher}`` replaced by the launcher's command, run by bash in a new process group
    (as a terminal runs a pipeline), on free ports, serving a tiny repository made in ``folder``."""
    wedge = folder / "wedge"
    repository = tiny_repository(folder, wedge)
    ports = free_ports(4)
    logs = folder / "logs"
    launcher = " ".join([sys.executable, "-m", "launcher", "--repository", str(repository), "--model", "classify",
                         "--port", str(ports[0]), "--triton-http-port", str(ports[1]),
                         "--triton-grpc-port", str(ports[2]), "--triton-metrics-port", str(ports[3]),
                         "--logs", str(logs), *options])  # fmt: skip
    shell = subprocess.Popen(["bash", "-c", shell_line.format(launcher=launcher)], cwd=ROOT, start_new_session=True)
    return Launched(shell, ports, logs, repository, wedge)


def processes(pids: set[int]) -> Iterator[tuple[int, str, int]]:
    """``(pid, name, parent)`` of those of ``pids`` still alive (zombies count as gone)."""
    for pid in pids:
        try:
            head, rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        state, parent = rest.split()[:2]
        if state != "Z":
            yield pid, head.split("(", 1)[1], int(parent)


def alive(pids: set[int]) -> set[int]:
    return {pid for pid, _, _ in processes(pids)}


def describe(pids: set[int]) -> list[str]:
    return [f"{pid} {name}" for pid, name, _ in processes(pids)]


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            rest = stat.read_text().rsplit(")", 1)[1]
        except OSError:
            continue
        children.setdefault(int(rest.split()[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found
