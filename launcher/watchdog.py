"""Stops the servers a process started when that process dies, however it dies (a crash, SIGKILL, a closed pipe).

``launcher.process`` runs one of these per process that starts servers, as ``python watchdog.py`` (standard
library only: it must start anywhere the launcher runs). Each server, in its own session, writes ``+PGID`` to the
watchdog's stdin before it becomes the server's program; its parent writes ``-PGID`` once it has stopped it. When
stdin ends (the parent is gone: its pipe closed with it), every group still listed gets SIGTERM, then SIGKILL after
``GRACE_S``: a Triton and its python-backend stubs, a gateway and its workers, never orphaned on their ports.
"""

from __future__ import annotations

import contextlib
import os
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


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # in a session of its own anyway; only its stdin's end counts
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        sign, number = line[:1], line[1:].strip()
        if number.isdigit():
            (groups.add if sign == b"+" else groups.discard)(int(number))
    groups = {group for group in groups if _alive(group)}
    _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = {group for group in groups if _alive(group)}
    _signal(groups, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
