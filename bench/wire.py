"""Bytes on the wire, measured by the kernel on the receiving side: what each hop of a request really carries.

``ss -ti`` reads every TCP socket's ``bytes_received`` (Linux ``tcp_info``, through netlink): on a server's
listening port, per connection, the bytes its clients sent, framing included (HTTP/1.1 headers; HTTP/2 and gRPC
frames, protobuf fields). Connections are attributed to a client process by their port, read with psutil, so
"what the gateway sent Triton" is told apart from the benchmark's own statistics calls. Keep-alive connections
carry every request of a level; a connection opened during it counts from zero.

A level is counted whole, warm-up and drain included, from before its first request is sent to after its last
has come back: every byte of every request it sent and nothing else, so divided by the level's ``issued``
requests it is exactly what one request carried. (Counted over the measuring window instead, the request in
flight at each edge splits: with a dozen 3 MB uploads that is 8% either way.)
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import psutil

_RECEIVED = re.compile(r"\bbytes_received:(\d+)")
Connection = tuple[str, str]  # (local address:port, peer address:port) as ss prints them


def parse_ss(output: str) -> dict[Connection, int]:
    """``ss -tinH`` output -> bytes received per connection. Each socket is an address line followed by an
    indented info line; a socket that has received nothing has no ``bytes_received`` field (0)."""
    received: dict[Connection, int] = {}
    current: Connection | None = None
    for line in output.splitlines():
        if line[:1].isspace():
            if current is not None:
                match = _RECEIVED.search(line)
                received[current] = int(match.group(1)) if match else 0
            current = None
        elif line.strip():
            fields = line.split()
            current = (fields[-2], fields[-1])  # Recv-Q Send-Q Local Peer, with or without a State column
            received.setdefault(current, 0)
    return received


def received_by_port(port: int) -> dict[Connection, int]:
    """Bytes received on every established connection whose local port is ``port``."""
    command = ["ss", "-tinH", "state", "established", f"( sport = :{port} )"]
    return parse_ss(subprocess.run(command, capture_output=True, text=True, check=True, timeout=10).stdout)


def client_ports(pid: int) -> set[int]:
    """Local TCP ports of a process tree's sockets: how a server-side connection is matched to its client."""
    root = psutil.Process(pid)
    ports: set[int] = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:  # a child may exit between listing and reading
            continue
        ports.update(connection.laddr.port for connection in connections if connection.laddr)
    return ports


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


@dataclass(frozen=True)
class Hop:
    """A server's listening port and, optionally, the client process whose connections to it count."""

    port: int
    client_pid: int | None = None


def hop_bytes(hop: Hop) -> dict[Connection, int]:
    received = received_by_port(hop.port)
    if hop.client_pid is None:
        return received
    ports = client_ports(hop.client_pid)
    return {connection: count for connection, count in received.items() if _port(connection[1]) in ports}


def delta(before: Mapping[Connection, int], after: Mapping[Connection, int]) -> int:
    """Bytes received between two snapshots, over the connections alive at the second."""
    return sum(count - before.get(connection, 0) for connection, count in after.items())


class WireCounter:
    """Bytes received per named hop over each level (see the module's docstring)."""

    def __init__(self, hops: Mapping[str, Hop]) -> None:
        self.hops = dict(hops)
        self.bytes: dict[int, dict[str, int]] = {}  # concurrency -> hop name -> bytes

    def _snapshot(self) -> dict[str, dict[Connection, int]]:
        return {name: hop_bytes(hop) for name, hop in self.hops.items()}

    @contextlib.contextmanager
    def level(self, concurrency: int) -> Iterator[None]:
        """Count what each hop receives while the block runs one level at ``concurrency``."""
        before = self._snapshot()
        yield
        after = self._snapshot()
        self.bytes[concurrency] = {name: delta(before[name], after[name]) for name in self.hops}
