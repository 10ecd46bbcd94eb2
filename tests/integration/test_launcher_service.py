"""The launcher's ``Service`` with a real subprocess: ready only once it listens on every port it was given."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

import pytest

from launcher.process import PortTaken, Service, free_ports

# Like Triton: it answers on its first port, then finds its last one taken and exits.
LATE_BIND = """
import socket, sys, time
first = socket.create_server(("127.0.0.1", int(sys.argv[1])))
time.sleep(0.5)
try:
    socket.create_server(("127.0.0.1", int(sys.argv[2])))
except OSError as exc:
    sys.exit(f"failed to start the last service: {exc}: Socket already in use")
time.sleep(60)
"""


def test_a_server_is_ready_only_once_it_listens_on_every_port_it_was_given(tmp_path: Path) -> None:
    """Triton answers ready on HTTP before it binds its metrics port, and exits if another process took that port
    meanwhile: counted ready on its first port, it was handed out and died under its first request (CI saw it)."""
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        first, last = free_ports(1)[0], taken.getsockname()[1]

        def answers() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", first), timeout=1):
                return True
            return False

        command = [sys.executable, "-c", LATE_BIND, str(first), str(last)]
        service = Service("late binder", command, tmp_path / "late.log", answers, ports=(first, last))
        with pytest.raises(PortTaken, match="already in use"):
            service.start(timeout_s=20)
        assert not service.alive()
