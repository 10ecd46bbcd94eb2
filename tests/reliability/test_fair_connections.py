"""Fair connections, against a real gateway process (no Triton behind it): one client address holding as many
sockets as it can open (idle, or uploading a byte at a time, each one it loses opened again) cannot keep a second
client out; at the process's cap idle connections are closed to let a newcomer in, and the probes are answered
even when every connection is busy. The whole of 127.0.0.0/8 reaches the gateway, so each client has an address
of its own."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests.support.figures import hold
from tests.support.goals import closed_at_its_timeout, every
from tests.support.items_support import closed_port
from tests.support.raw_http import (
    IDLE,
    IMAGE_UPLOAD,
    ITEM_UPLOAD,
    Hog,
    connect,
    read_answer,
    read_response,
    readable,
    status_of,
)
from tests.support.stack import Gateway

pytestmark = pytest.mark.reliability

CAP, PER_CLIENT = 48, 12  # this test's own: small enough to fill from one thread, the same ratio as the defaults
SECOND_CLIENT = "127.0.0.2"


@pytest.fixture(scope="module")
def capped(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory(
        GATEWAY_TRITON_URL=f"127.0.0.1:{closed_port()}",
        GATEWAY_MAX_CONNECTIONS=str(CAP),
        GATEWAY_MAX_CONNECTIONS_PER_CLIENT=str(PER_CLIENT),
        GATEWAY_KEEP_ALIVE_S="60",  # kept-alive connections stay until the cap needs their room
    )


def second_client(source: str = SECOND_CLIENT) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10)


def test_one_address_with_any_number_of_sockets_cannot_keep_a_second_client_out(capped: Gateway) -> None:
    """Four times the whole cap from one address, half idle, half uploading a byte every half second."""
    statuses: Counter[int | str] = Counter()
    worst_s = 0.0
    with (
        Hog(capped.port, "127.0.0.1", 2 * CAP, IDLE) as idle,
        Hog(capped.port, "127.0.0.1", 2 * CAP, ITEM_UPLOAD) as uploading,
        second_client() as client,
    ):
        for n in range(30):
            started = time.monotonic()
            try:
                statuses[client.get(f"{capped.url}{'/healthz' if n % 3 == 0 else '/v1/items/nobody'}").status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            worst_s = max(worst_s, time.monotonic() - started)
            time.sleep(0.1)  # a user's pace, not synchronisation
        opened = idle.opened + uploading.opened
    hold(
        "N1 one address holding 4 x the cap: a second client's requests served",
        statuses[200] + statuses[404],
        every(30, "served"),
        detail=f"slowest {worst_s:.2f} s, {dict(statuses)}; the hog opened {opened} connections",
    )


def test_at_the_cap_an_idle_connection_is_closed_to_let_a_newcomer_in(capped: Gateway) -> None:
    """Four addresses fill the cap with kept-alive connections, each idle after one request; a fifth gets in."""
    held: list[socket.socket] = []
    try:
        for n in range(CAP):
            sock = connect(capped.port, f"127.0.0.{10 + n % 4}")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            held.append(sock)
        with second_client() as client:
            statuses = Counter(client.get(f"{capped.url}/v1/items/nobody").status_code for _ in range(5))
        closed = sum(readable(sock) for sock in held)  # the close is sent before the newcomer is answered
    finally:
        for sock in held:
            sock.close()
    hold(
        "N1 a cap full of idle kept-alive connections: a newcomer's requests served",
        statuses[404],
        every(5, "served"),
        detail=f"{dict(statuses)}; {closed} of {CAP} idle connections closed",
    )
    assert closed == 1, closed


def test_the_probes_are_answered_when_every_connection_is_busy(capped: Gateway) -> None:
    """Four addresses fill the cap with uploads going at 16 KB/s (not idle, and above the body pace); the probes
    still answer, anything else is 429."""
    uploaders = [Hog(capped.port, f"127.0.0.{20 + n}", PER_CLIENT, IMAGE_UPLOAD, tick_bytes=8192) for n in range(4)]
    answers: dict[str, int | None] = {}
    try:
        for hog in uploaders:
            hog.__enter__()
        for path in ("/healthz", "/readyz", "/v1/items/nobody"):
            with connect(capped.port, SECOND_CLIENT) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
                answers[path] = status_of(read_answer(sock, timeout_s=10))
    finally:
        for hog in uploaders:
            hog.__exit__()
    expected = {"/healthz": 200, "/readyz": 503, "/v1/items/nobody": 429}  # 503: no Triton here
    hold(
        "N1 every connection busy uploading: probes answered (anything else 429)",
        sum(answers[path] == status for path, status in expected.items()),
        every(len(expected), "answered as expected"),
        detail=str(answers),
    )


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(
    gateway_factory: Callable[..., Gateway],
) -> None:
    """The real-socket twin of the virtual-time test (tests/unit/test_protocol_limits.py)."""
    front = gateway_factory(GATEWAY_TRITON_URL=f"127.0.0.1:{closed_port()}", GATEWAY_KEEP_ALIVE_S="1")
    with connect(front.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        closed = readable(sock, 30) and sock.recv(65536) == b""
        after_s = time.monotonic() - answered
    assert closed and after_s > 0.5, after_s
    hold("keep-alive: an idle connection closed after (setting 1 s)", after_s, closed_at_its_timeout(1))
