"""What the launcher watches: a Triton that exited or lost a python-backend stub, and how long to wait to retry.

A stub process that dies (kill -9, the OOM killer) leaves its model instance answering "stub process is not
healthy" while Triton still reports ready, so the stubs themselves are watched: one gone without Triton having
logged an unload (an admin unloading a model version is not a fault) means Triton must be restarted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from launcher.triton import TritonServer

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
