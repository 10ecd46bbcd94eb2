"""CPU time each process tree spent during a measuring window: where a saturated machine's cores went.

On a machine where the load generator, the gateway and Triton share a few cores, any CPU one of them burns
is taken from the others; dividing each tree's CPU seconds by the requests of the window gives CPU
milliseconds per request, by role, which is what explains a throughput ratio. Process trees are read with
psutil, children included (uvicorn workers, Triton's python-backend stubs), at both ends of the window.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

import psutil

CLIENT = "client"


def cpu_s(pid: int, tree: bool = True, root: bool = True) -> float:
    """User + system CPU seconds of a process (``root``) and/or its live descendants (``tree``); 0 when gone."""
    try:
        process = psutil.Process(pid)
        processes = [process] if root else []
        processes += process.children(recursive=True) if tree else []
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):  # a child may exit between listing and reading
            times = process.cpu_times()
            total += times.user + times.system
    return total


class CpuWindow:
    """A ``bench.loadgen.WindowObserver``: CPU seconds per role over each level's window.

    The load generator (this process, role ``client``) is counted without its children: they are the
    services, counted under their own roles. A role in ``children_apart`` is its root process alone, its
    descendants counted under the role it maps to (Triton apart from its python-backend stubs).
    """

    def __init__(self, services: Mapping[str, int], children_apart: Mapping[str, str] | None = None) -> None:
        self.services = dict(services)
        self.children_apart = dict(children_apart or {})
        self.seconds: dict[int, dict[str, float]] = {}  # concurrency -> role -> CPU seconds
        self._before: dict[str, float] = {}

    def _snapshot(self) -> dict[str, float]:
        seconds = {CLIENT: cpu_s(os.getpid(), tree=False)}
        for role, pid in self.services.items():
            apart = self.children_apart.get(role)
            seconds[role] = cpu_s(pid, tree=apart is None)
            if apart is not None:
                seconds[apart] = cpu_s(pid, root=False)
        return seconds

    async def window_opened(self, concurrency: int) -> None:
        self._before = self._snapshot()

    async def window_closed(self, concurrency: int) -> None:
        after = self._snapshot()
        self.seconds[concurrency] = {role: after[role] - self._before[role] for role in after}
