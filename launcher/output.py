"""What the launcher says, and where: its stderr (lines for people, or JSON objects with ``--log-format json``) and
the run's own ``launcher.log``. Output is never a reason to die: a stderr whose reader went away (``make serve |
tee`` interrupted, a closed terminal) is dropped and the log file keeps the record, and the supervisor asks
``reader_gone`` so that a launcher whose pipe's reader closed stops the stack as any piped program would.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

PREFIX = "[serve]"


class Output:
    def __init__(self) -> None:
        self.json = False
        self.log: TextIO | None = None
        self.gone = False  # stderr's reader went away: everything else goes to the log only

    def open_log(self, path: Path) -> None:
        """Everything said from now on goes to ``path`` too (this run's ``launcher.log``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the process's life)

    def say(self, message: str, **fields: Any) -> None:
        """One event: ``[serve] message`` for people, or one JSON object per line (``fields`` as keys)."""
        if self.json:
            record = {"time": _now(), "level": "info", "logger": "launcher", "message": message, **fields}
            line = json.dumps(record, ensure_ascii=False)
        else:
            line = f"{PREFIX} {message}"
        self.write(line + "\n", plain_log=f"{_now()} {message}\n")

    def write(self, text: str, plain_log: str | None = None) -> None:
        """``text`` to stderr (while it has a reader) and to the log (``plain_log`` there, when given)."""
        if self.log is not None:
            with contextlib.suppress(OSError, ValueError):
                self.log.write(text if self.json or plain_log is None else plain_log)
                self.log.flush()
        if self.gone:
            return
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):  # EPIPE: the reader left
            self.drop_terminal()

    def drop_terminal(self) -> None:
        """From now on stdout and stderr go to /dev/null: no later write (ours, Python's at exit, a child's) fails."""
        self.gone = True
        with open(os.devnull, "wb") as null:
            for fd in (1, 2):
                with contextlib.suppress(OSError):
                    os.dup2(null.fileno(), fd)

    def reader_gone(self) -> bool:
        """Whether stdout's or stderr's pipe lost its reader (``make serve 2>&1 | tee log`` and tee was ended):
        the kernel flags a pipe with no reader as an error on its writing end, so no write is needed to notice."""
        if self.gone:
            return True
        for fd in (1, 2):
            with contextlib.suppress(OSError, ValueError):
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    continue
                poller = select.poll()
                poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
                if any(events & select.POLLERR for _, events in poller.poll(0)):
                    self.drop_terminal()
                    return True
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


OUTPUT = Output()
say = OUTPUT.say
