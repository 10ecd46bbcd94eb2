"""bench.wire: bytes received per connection, read from the kernel with ss, attributed to a client process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from bench.wire import Hop, WireCounter, delta, parse_ss

SS_OUTPUT = """\
0      0      127.0.0.1:8001 127.0.0.1:41234
\t cubic wscale:7,7 rto:204 rtt:0.05/0.02 mss:65483 bytes_sent:1520 bytes_acked:1521 bytes_received:3145728 segs_out:9
0      0      127.0.0.1:8001 127.0.0.1:41240
\t cubic wscale:7,7 rto:204 rtt:0.05/0.02 mss:65483 bytes_sent:0 segs_out:1
"""


def test_parse_reads_bytes_received_per_connection() -> None:
    assert parse_ss(SS_OUTPUT) == {
        ("127.0.0.1:8001", "127.0.0.1:41234"): 3_145_728,
        ("127.0.0.1:8001", "127.0.0.1:41240"): 0,  # nothing received yet: no field
    }


def test_delta_counts_new_connections_from_zero() -> None:
    before = {("a", "x"): 100}
    after = {("a", "x"): 250, ("a", "y"): 40}  # y opened during the level; a closed one is gone from both
    assert delta(before, after) == 190


def test_a_level_counts_what_the_server_side_received_from_this_process() -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    with bystander, socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                counter = WireCounter(
                    {"mine": Hop(port, os.getpid()), "anyone": Hop(port), "other": Hop(port, bystander.pid)}
                )
                with counter.level(1):
                    client.sendall(b"x" * 100_003)
                    received = 0
                    while received < 100_003:
                        received += len(accepted.recv(65536))
        assert bystander.stdin is not None
        bystander.stdin.close()
    assert counter.bytes[1] == {"mine": 100_003, "anyone": 100_003, "other": 0}
