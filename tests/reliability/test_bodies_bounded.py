"""Every body bounded before it is believed, against a real gateway process (no Triton behind it): a client with no
right to a route is refused from its head before a byte of its body is read, and every route's body, the admin
routes' and the items' too, has a size limit and a pace."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.figures import PeakRss, hold
from tests.support.goals import BODY_NOT_READ, TRICKLE_CUT_OFF
from tests.support.items_support import closed_port
from tests.support.raw_http import connect, error_code, json_list, push_body, status_of, trickle
from tests.support.stack import Gateway

pytestmark = pytest.mark.reliability

BODY = 48 * 1024 * 1024  # far over any limit the gateway has, far under what the test machine holds
LOAD = b"POST /v1/admin/models/classify/load HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"


def _pushed(gateway: Gateway, head: bytes, figure: str) -> int | None:
    """``head`` and a 48 MB JSON body (a list of versions) as fast as the gateway takes it: the status, with the
    gateway's RSS growth held as ``figure`` and the body bytes it took before answering, a small fraction of it."""
    assert gateway.process is not None
    with PeakRss(gateway.process.pid) as peak:
        before = peak.mib
        pushed = push_body(gateway.port, head + f"Content-Length: {BODY}\r\n\r\n".encode(), json_list(BODY))
    grown = peak.mib - before
    status = status_of(pushed.answer)
    sent = f"{pushed.body_bytes_sent / 2**20:.1f} MiB of {BODY / 2**20:.0f} sent"
    hold(
        f"{figure}: gateway RSS growth",
        round(grown, 1),
        BODY_NOT_READ,
        detail=f"answered {status} after {sent}, {pushed.seconds:.2f} s",
    )
    # Sockets buffer a few MB between us and the app; a body read whole costs its size and more.
    assert pushed.body_bytes_sent < BODY / 4, sent
    return status


def test_model_control_without_a_key_is_refused_from_the_head(gateway_factory: Callable[..., Gateway]) -> None:
    keyed = gateway_factory(GATEWAY_API_KEYS="right-key", GATEWAY_TRITON_URL=f"127.0.0.1:{closed_port()}")
    status = _pushed(keyed, LOAD, "N2 48 MB body to model control, keys set, no key (401)")
    assert status == 401
    status = _pushed(keyed, LOAD + b"Authorization: Bearer wrong-key\r\n", "N2 48 MB body, wrong key (401)")
    assert status == 401


def test_model_control_from_another_host_is_refused_from_the_head(bare_gateway: Gateway) -> None:
    """With no keys, only the gateway's own host may control models; a same-host proxy that says whom it forwards
    for (X-Forwarded-For) makes the request another host's, which is how this test is one on any machine."""
    forwarded = LOAD + b"X-Forwarded-For: 203.0.113.7\r\n"
    status = _pushed(bare_gateway, forwarded, "N2 48 MB body to model control from another host (403)")
    assert status == 403


@pytest.fixture(scope="module")
def graceless(gateway_factory: Callable[..., Gateway]) -> Gateway:
    """A gateway whose bodies have 1 s of grace before their pace counts (2 s by default)."""
    return gateway_factory(GATEWAY_TRITON_URL=f"127.0.0.1:{closed_port()}", GATEWAY_BODY_GRACE_S="1")


@pytest.mark.parametrize(
    ("route", "head", "declared"),
    [
        ("items", b"PUT /v1/items/slow HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n", 50_000),
        ("model control", LOAD, 10_000),  # under each route's limit: refused for its pace, not its size
    ],
)
def test_a_trickled_body_is_cut_off_on_every_route(graceless: Gateway, route: str, head: bytes, declared: int) -> None:
    """1 byte of the declared body, then one every 0.5 s: 408 once the pace is missed, not an open socket."""
    with connect(graceless.port, timeout_s=60) as sock:
        sock.sendall(head + f"Content-Length: {declared}\r\n\r\n{{".encode())
        answer, after_s = trickle(sock, b" " * declared, every_s=0.5, timeout_s=30)
    status = status_of(answer)
    hold(
        f"N3 {route} body trickled at 2 bytes/s: answered after (1 s grace here)",
        after_s,
        TRICKLE_CUT_OFF,
        detail=str(status or "still open, unanswered"),
    )
    assert status == 408 and error_code(answer) == "request_timeout", answer[:300]


def test_an_oversized_body_is_refused_on_every_route(bare_gateway: Gateway) -> None:
    """Model control takes a list of versions: its body limit is small, declared or streamed."""
    front = bare_gateway
    status = _pushed(front, LOAD, "N3 48 MB body to model control from this host (413)")
    assert status == 413
    chunked = push_body(front.port, LOAD + b"Transfer-Encoding: chunked\r\n\r\n", json_list(BODY), chunked=True)
    assert status_of(chunked.answer) == 413, chunked.answer[:300]
