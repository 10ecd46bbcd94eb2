"""CPU time each process spent during a measuring window: where a saturated machine's cores went.

On a machine where the load generator, the gateway and Triton share a few cores, any CPU one of them burns
is taken from the others; dividing each process's CPU seconds by the requests of the window gives CPU
milliseconds per request, by role, which is what explains a throughput ratio, and which other processes
competing for the cores move far less than throughput or latency.

Read from the kernel's scheduler statistics, ``/proc/<pid>/task/<tid>/schedstat``: each thread's time on a CPU in
nanoseconds (``/proc/<pid>/stat`` counts clock ticks of 10 ms). Each thread's own difference over the window is
added up, so a thread started in the window counts from zero, and one that ended in it loses only its share of the
window (the servers' threads live as long as they do). Process trees are listed with psutil at both ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import psutil

CLIENT = "client"
# Triton's python-backend stubs, one process per model instance, each counted under the model it runs.
STUB = "stub "

Threads = dict[tuple[int, int], int]  # (pid, tid) -> nanoseconds on a CPU


def thread_ns(pids: Iterable[int]) -> Threads:
    """Nanoseconds on a CPU of every live thread of ``pids``; a process that is gone counts nothing."""
    found: Threads = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):  # a thread may end while read
                    found[pid, int(task.name)] = int((task / "schedstat").read_text().split()[0])
    return found


def descendants(pid: int) -> list[int]:
    with contextlib.suppress(psutil.Error):
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    return []


def cpu_s(pid: int, tree: bool = True, root: bool = True) -> float:
    """CPU seconds of a process (``root``) and/or its live descendants (``tree``), their live threads'; 0 when gone."""
    pids = ([pid] if root else []) + (descendants(pid) if tree else [])
    return sum(thread_ns(pids).values()) / 1e9


def triton_stub_role(pid: int) -> str:
    """``stub <model>`` for a python-backend stub (its first argument is ``<models>/<model>/<version>/model.py``)."""
    with contextlib.suppress(OSError, IndexError):
        script = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1].decode(errors="replace")
        if script.endswith(".py"):
            return STUB + Path(script).parent.parent.name
    return STUB + "other"


class CpuWindow:
    """A ``bench.loadgen.WindowObserver``: CPU seconds per role over each level's window.

    The load generator (this process, role ``client``) is counted without its children: they are the
    services, counted under their own roles. A role in ``children_apart`` is its root process alone, its
    descendants counted under the role the mapping names: a fixed role, or one per process (Triton apart from its
    python-backend stubs, each under its model: ``triton_stub_role``).
    """

    def __init__(
        self, services: Mapping[str, int], children_apart: Mapping[str, str | Callable[[int], str]] | None = None
    ) -> None:
        self.services = dict(services)
        self.children_apart = dict(children_apart or {})
        self.seconds: dict[int, dict[str, float]] = {}  # concurrency -> role -> CPU seconds
        self._before: dict[str, Threads] = {}

    def _roles(self) -> dict[str, list[int]]:
        roles: dict[str, list[int]] = {CLIENT: [os.getpid()]}
        for role, pid in self.services.items():
            apart = self.children_apart.get(role)
            if apart is None:
                roles.setdefault(role, []).extend([pid, *descendants(pid)])
                continue
            roles.setdefault(role, []).append(pid)
            for child in descendants(pid):
                roles.setdefault(apart if isinstance(apart, str) else apart(child), []).append(child)
        return roles

    def _snapshot(self) -> dict[str, Threads]:
        return {role: thread_ns(pids) for role, pids in self._roles().items()}

    async def window_opened(self, concurrency: int) -> None:
        self._before = self._snapshot()

    async def window_closed(self, concurrency: int) -> None:
        after = self._snapshot()
        seconds = {}
        for role, threads in after.items():
            before = self._before.get(role, {})
            seconds[role] = sum(ns - before.get(thread, 0) for thread, ns in threads.items()) / 1e9
        self.seconds[concurrency] = seconds
