"""A term of the peak RSS the gateway's settings imply, measured on a real process: what an open connection holds
(Settings.peak_rss_bytes counts ``CONNECTION_BYTES`` + ``max_head_bytes`` for each, beside its page or item)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.settings import CONNECTION_BYTES, Settings
from tests.support.figures import Goal, PeakRss, hold, rss_mib
from tests.support.stack import Gateway
from tests.support.waiting import wait_until

pytestmark = pytest.mark.reliability


def _bytes_read(pid: int) -> int:
    """What the process has read through system calls, sockets included (Linux's /proc/<pid>/io)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"])


def test_connections_holding_large_heads_stay_within_their_term(gateway_factory: Callable[..., Gateway]) -> None:
    """The cap's worth of connections, each holding a request head just under the size limit that never ends: the
    gateway's RSS grows by less per connection than the settings count for one."""
    count, settings = 200, Settings()
    capped = gateway_factory(GATEWAY_MAX_CONNECTIONS=str(count), GATEWAY_HEAD_TIMEOUT_S="120")
    assert capped.process is not None
    pid = capped.process.pid
    pad = "x" * 1000
    head = (
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
        + "".join(f"X-Pad-{n}: {pad}\r\n" for n in range((settings.max_head_bytes - 1024) // 1012)).encode()
    )  # no blank line: the head never ends
    before, read = rss_mib(pid), _bytes_read(pid)
    held: list[socket.socket] = []
    try:
        with PeakRss(pid) as peak:
            for _ in range(count):
                held.append(socket.create_connection(("127.0.0.1", capped.port)))
                held[-1].sendall(head)
            wait_until(lambda: _bytes_read(pid) - read >= count * len(head), "the gateway reading every head")
    finally:
        for sock in held:
            sock.close()
    term = (CONNECTION_BYTES + settings.max_head_bytes) / 1024
    hold(
        f"gateway RSS per open connection holding a {len(head) // 1024} KiB head", (peak.mib - before) * 1024 / count,
        Goal("KiB", at_most=term, bound=term), detail=f"{count} connections; the settings count {term:.0f} KiB each",
    )  # fmt: skip
