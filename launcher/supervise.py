"""How the launcher keeps the stack up: what it watches (a Triton that exited or lost a python-backend stub, a
gateway that exited), how it restarts what died, and what it keeps across a restart (the versions served).

A stub process that dies (kill -9, the OOM killer) leaves its model instance answering "stub process is not
healthy" while Triton still reports ready, so the stubs themselves are watched: one gone without Triton having
logged an unload (an admin unloading a model version is not a fault) means Triton must be restarted.

A restart cannot wedge: a restarted Triton that is not ready within ``restart_timeout_s`` (one whose model load
hangs, say) is killed and started again, each attempt after a longer wait (0, 1, 2, 4 ... 30 s, said each time),
back to none once it has stayed up ``STABLE_S``. Nothing here blocks a stop: the launcher's signal handler
unwinds any wait (``launcher.stopping``).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from launcher.output import OUTPUT, say
from launcher.process import Service, ServiceError
from launcher.stopping import Interrupted, StopSignals
from launcher.triton import TritonServer
from launcher.versions import Served, describe

TICK_S = 0.25  # how often everything is looked at; the repository's mirror lags the repository by at most this
OBSERVE_S = 1.0  # how often the versions Triton serves are read
# A broken Triton is killed at once: with a dead stub its graceful stop never ends, and its in-flight requests
# then fail now (503) rather than when the python backend next checks its stub (about 1 s).
RESTART_STOP_S = 0.0
STABLE_S = 60.0  # up this long after a restart: the next failure is a new one, restarted without waiting
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
    """No wait before the first restart, then 1, 2, 4 ... 30 s; none again once the restarted server has stayed
    up ``stable_s`` (a crash loop must not restart every second for ever, nor a rare crash wait 30 s)."""

    def __init__(self, first_s: float = 1.0, most_s: float = 30.0, stable_s: float = STABLE_S) -> None:
        self.first_s, self.most_s, self.stable_s = first_s, most_s, stable_s
        self.delay_s = 0.0
        self.attempts = 0
        self.up_since: float | None = None

    def wait(self, what: str) -> None:
        """Sleep the current delay, saying so, then double it for next time. A stop request interrupts it."""
        self.attempts += 1
        if self.delay_s:
            say(f"restarting {what} in {self.delay_s:.0f} s (attempt {self.attempts}; each wait doubles, up to "
                f"{self.most_s:.0f} s)")  # fmt: skip
            time.sleep(self.delay_s)
        self.delay_s = min(max(self.delay_s * 2, self.first_s), self.most_s)
        self.up_since = None

    def up(self) -> None:
        self.up_since = time.monotonic()

    def settle(self) -> None:
        """Forget the past failures once the server has been up long enough."""
        if self.up_since is not None and time.monotonic() - self.up_since >= self.stable_s:
            self.delay_s, self.attempts, self.up_since = 0.0, 0, None


class Mirror:
    """Keeps the runtime copy in step with the repository (a version exported while serving), looking at the
    version folders' listings each tick and copying only when they changed."""

    def __init__(self, triton: TritonServer) -> None:
        self.triton = triton
        self.seen: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def follow(self) -> None:
        listing = _listing(self.triton.repository)
        if listing == self.seen:
            return
        try:
            changed = self.triton.refresh_repository()
        except ServiceError as exc:  # a version folder whose model file is not there yet
            say(f"a version is still being written ({exc}): it is mirrored once complete, then a load serves it")
            self.seen = listing  # said once; the next change of the folder tries again
            return
        self.seen = listing
        if changed:
            models = sorted({path.parent.name for path in changed})
            say(f"the repository changed ({', '.join(models)}): POST /v1/admin/models/<name>/load serves it")


def _listing(repository: Path) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """Every version folder with the names in it: what a new or removed version changes, in a few listdirs."""
    found = []
    with contextlib.suppress(OSError):
        for model in os.scandir(repository):
            if model.is_dir():
                for version in os.scandir(model.path):
                    if version.name.isdigit() and version.is_dir():
                        found.append((model.name, version.name, tuple(sorted(os.listdir(version.path)))))
    return tuple(sorted(found))


def restart_triton(triton: TritonServer, backoff: Backoff, served: Served, timeout_s: float) -> None:
    """Start Triton again, serving the versions it served, until one is ready within ``timeout_s``."""
    triton.stop(timeout_s=RESTART_STOP_S)
    triton.startup_timeout_s = timeout_s
    while True:
        backoff.wait("Triton")
        triton.versions = served.differences(triton.repository)
        started = time.monotonic()
        try:
            triton.start()
        except ServiceError as exc:  # its log says why; the first line here, each attempt
            say(f"Triton did not come back: {str(exc).splitlines()[0].rstrip(':')}; its log: {triton.log_path}")
            triton.stop(timeout_s=RESTART_STOP_S)  # a failed start leaves its runtime copy and shared memory
            continue
        kept = "; ".join(f"{name}: {describe(versions)}" for name, versions in sorted(triton.versions.items()))
        say(f"Triton is back ({time.monotonic() - started:.1f} s)" + (f", serving as before: {kept}" if kept else ""))
        backoff.up()
        return


def supervise(triton: TritonServer, gateway: Service, restart_timeout_s: float, signals: StopSignals) -> None:
    """Restart what dies, for ever; the gateway keeps answering (503) while Triton comes back. Ends by
    ``Interrupted``: a signal (raised by its handler, or here should the handler's have been lost), or here when
    the output's reader has gone."""
    watch, served, mirror = TritonWatch(triton), Served(), Mirror(triton)
    triton_backoff, gateway_backoff = Backoff(), Backoff()
    mirror.seen = _listing(triton.repository)  # the start mirrored it
    next_observe = 0.0
    while True:
        signals.check()
        if OUTPUT.reader_gone():
            raise Interrupted("the output's reader closed")
        mirror.follow()
        if time.monotonic() >= next_observe:
            next_observe = time.monotonic() + OBSERVE_S
            for change in served.observe(triton.http_url):
                say(f"{change} (kept if Triton restarts)")
        if problem := watch.problem():
            say(f"Triton {problem}; its log: {triton.log_path}. Restarting it (the gateway answers 503 meanwhile)")
            restart_triton(triton, triton_backoff, served, restart_timeout_s)
            watch = TritonWatch(triton)
            mirror.seen = ()  # the new runtime copy was made from the repository as it was: check it again
        if not gateway.alive():
            say(f"the gateway exited (code {gateway.stop()}); its log: {gateway.log_path}. Restarting it")
            while True:
                gateway_backoff.wait("the gateway")
                try:
                    gateway.start(timeout_s=60)
                    break
                except ServiceError as exc:
                    say(f"the gateway did not come back: {exc}")
            gateway_backoff.up()
        triton_backoff.settle()
        gateway_backoff.settle()
        time.sleep(TICK_S)
