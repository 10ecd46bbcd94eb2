"""Stops the servers a process started when that process dies, however it dies (a crash, SIGKILL, a closed pipe).

``launcher.process`` runs one of these per process that starts servers, as ``python watchdog.py`` (standard
library only: it must start anywhere the launcher runs). Each server, in its own session, writes ``+PGID`` to the
watchdog's stdin before it becomes the server's program; its parent writes ``-PGID`` once it has stopped it. When
stdin ends (the parent is gone: its pipe closed with it), every group still listed gets SIGTERM, then SIGKILL after
``GRACE_S``: a Triton and its python-backend stubs, a gateway and its workers, never orphaned on their ports.

The parent also lists what it would delete on stopping a server, as ``+/absolute/glob*`` (``-`` once it has): a
Triton's runtime copy of the repository and its stubs' shared-memory regions in /dev/shm, which nothing else ever
frees. Once the groups are gone, the watchdog deletes whatever is still listed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import sys
import time

GRACE_S = 5.0


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(groups: set[int], signum: int) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)


def delete(pattern: str) -> None:
    """Every file or directory that matches ``pattern``, as far as it can be deleted."""
    for path in glob.glob(pattern):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # in a session of its own anyway; only its stdin's end counts
    groups: set[int] = set()
    leftovers: set[str] = set()
    for line in sys.stdin.buffer:
        sign, entry = line[:1], line[1:].rstrip(b"\n")
        if entry.isdigit():
            (groups.add if sign == b"+" else groups.discard)(int(entry))
        elif entry.startswith(b"/"):
            (leftovers.add if sign == b"+" else leftovers.discard)(os.fsdecode(entry))
    groups = {group for group in groups if _alive(group)}
    _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = {group for group in groups if _alive(group)}
    _signal(groups, signal.SIGKILL)
    for pattern in leftovers:
        delete(pattern)
    return 0


if __name__ == "__main__":
    sys.exit(main())
