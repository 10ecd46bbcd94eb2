"""How the launcher keeps the stack up: what it watches (a Triton that exited or lost a python-backend stub, a
gateway that exited), how long it waits to retry, and the loop that restarts what died.

A stub process that dies (kill -9, the OOM killer) leaves its model instance answering "stub process is not
healthy" while Triton still reports ready, so the stubs themselves are watched: one gone without Triton having
logged an unload (an admin unloading a model version is not a fault) means Triton must be restarted.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable

from launcher.process import Service, ServiceError
from launcher.triton import TritonServer

REFRESH_S = 2.0  # how often the runtime copy follows the repository (versions exported while serving)
# A broken Triton is killed at once: with a dead stub its graceful stop never ends, and its in-flight requests
# then fail now (503) rather than when the python backend next checks its stub (about 1 s).
RESTART_STOP_S = 0.0


def say(message: str) -> None:
    print(f"[serve] {message}", file=sys.stderr, flush=True)


_UNLOADED = "successfully unloaded"


class TritonWatch:
    """Compares Triton's stub processes with those it had; reads its log to tell an unload from a death."""

    def __init__(self, triton: TritonServer) -> None:
        self.triton = triton
        self.stubs = triton.stub_pids()
        self.log_offset = self._log_size()

    def problem(self) -> str | None:
        """Why Triton needs a restart, or None."""
        process = self.triton.process
        if process is None or process.poll() is not None:
            return f"exited (code {None if process is None else process.returncode})"
        now = self.triton.stub_pids()
        gone = self.stubs - now
        unloaded = self._new_log_mentions(_UNLOADED)
        self.stubs = now
        if gone and not unloaded:
            if process.poll() is not None:  # killed between the two looks: its stubs followed it
                return f"exited (code {process.returncode})"
            return f"lost {len(gone)} python-backend stub process(es) (pid {', '.join(map(str, sorted(gone)))})"
        return None

    def _log_size(self) -> int:
        path = self.triton.log_path
        return path.stat().st_size if path and path.exists() else 0

    def _new_log_mentions(self, text: str) -> bool:
        path = self.triton.log_path
        if not path or not path.exists():
            return False
        with open(path, "rb") as log:
            log.seek(self.log_offset)
            fresh = log.read()
        self.log_offset += len(fresh)
        return text.encode() in fresh


class Backoff:
    """1, 2, 4 ... 30 s between restart attempts, back to 1 s after a success."""

    def __init__(self, first_s: float = 1.0, most_s: float = 30.0) -> None:
        self.first_s = first_s
        self.most_s = most_s
        self.delay_s = 0.0

    def wait(self, stopping: Callable[[], bool]) -> None:
        """Sleep the current delay (cut short by a stop request), then double it for next time."""
        deadline = time.monotonic() + self.delay_s
        while time.monotonic() < deadline and not stopping():
            time.sleep(0.1)
        self.delay_s = min(max(self.delay_s * 2, self.first_s), self.most_s)

    def reset(self) -> None:
        self.delay_s = 0.0


def supervise(triton: TritonServer, gateway: Service, stopping: Callable[[], bool]) -> None:
    """Restart what dies until asked to stop; the gateway keeps answering (503) while Triton comes back."""
    watch = TritonWatch(triton)
    triton_backoff, gateway_backoff = Backoff(), Backoff()
    next_refresh = 0.0
    while not stopping():
        if time.monotonic() >= next_refresh:  # a version exported meanwhile reaches the runtime copy
            next_refresh = time.monotonic() + REFRESH_S
            with contextlib.suppress(ServiceError):  # a version still being written, or Triton restarting
                if changed := triton.refresh_repository():
                    models = sorted({path.parent.name for path in changed})
                    say(f"the repository changed ({', '.join(models)}): POST /v1/admin/models/<name>/load serves it")
        if problem := watch.problem():
            say(f"Triton {problem}; its log: {triton.log_path}. Restarting it (the gateway answers 503 meanwhile)")
            triton.stop(timeout_s=RESTART_STOP_S)
            try:
                triton_backoff.wait(stopping)
                triton.start()
                watch = TritonWatch(triton)
                say("Triton is back")
                triton_backoff.reset()
            except ServiceError as exc:
                say(f"Triton did not come back: {exc}")
        if not gateway.alive():
            say(f"the gateway exited (code {gateway.stop()}); its log: {gateway.log_path}. Restarting it")
            try:
                gateway_backoff.wait(stopping)
                gateway.start(timeout_s=60)
                gateway_backoff.reset()
            except ServiceError as exc:
                say(f"the gateway did not come back: {exc}")
        time.sleep(0.25)
