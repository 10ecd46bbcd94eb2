"""The gateway's HTTP protocol limits in virtual time, as uvicorn's own protocol tests do it: the protocol talks to a
fake transport (it records what is written and whether it was closed) and a fake loop whose clock moves only when
the test says, so a 5 s deadline is tested in no time, with no socket and no sleep. What a real socket sees of each
limit is tested once each in tests/reliability (test_items_hostile, test_fair_connections)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from gateway.protocol import BoundedHttpToolsProtocol, ConnectionLimits, client_of
from gateway.settings import PROBE_CONNECTIONS

pytestmark = pytest.mark.anyio

LIMITS = ConnectionLimits(
    max_connections=4, max_per_client=2, head_timeout_s=5, max_head_bytes=4096, max_headers=10, retry_after_s=1
)
KEEP_ALIVE_S = 5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Timer:
    def __init__(self, loop: VirtualLoop, when: float, callback: Callable[..., object], args: tuple[object, ...]):
        self.loop, self.when, self.callback, self.args = loop, when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualLoop:
    """What the protocol asks of a loop: timers on a clock that moves only in ``advance``, and tasks (the ASGI
    app's run for a request), which run on the test's own loop whenever the test awaits."""

    tasks: list[asyncio.Task[None]] = []  # every test's: awaited after it, once its connections are closed

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._soon: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> Timer:
        timer = Timer(self, self.now + delay, callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self._soon.append((callback, args))

    def create_task(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.append(task)
        return task

    def settle(self) -> None:
        while self._soon:
            callback, args = self._soon.pop(0)
            callback(*args)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        self.settle()
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            self.now = when
            if not timer.cancelled:
                timer.callback(*timer.args)
            self.settle()
        self.now = end


class FakeTransport:
    """Records what the protocol writes; closing tells the protocol its connection is lost, soon after, as
    asyncio's transports do."""

    made: list[FakeTransport] = []  # every test's: closed after it

    def __init__(self, loop: VirtualLoop, peer: tuple[str, int]) -> None:
        self.loop, self.peer = loop, peer
        self.written = b""
        self.closed = False
        self.protocol: BoundedHttpToolsProtocol | None = None
        self.made.append(self)

    def get_extra_info(self, key: str) -> object:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8080), "sslcontext": None}.get(key)

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        pass

    @property
    def status(self) -> int | None:
        parts = self.written.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 else None


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """Reads the body, answers 200 with the path."""
    while (await receive()).get("more_body"):
        pass
    body = scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class Server:
    """One process's protocol instances, sharing a server state and the virtual loop."""

    def __init__(self, limits: ConnectionLimits = LIMITS) -> None:
        self.loop = VirtualLoop()
        self.state = ServerState()
        self.config = Config(app=app, timeout_keep_alive=KEEP_ALIVE_S, log_config=None, proxy_headers=False)
        self.config.load()
        self.limits = limits
        self._ports = itertools.count(40000)

    def connect(self, host: str = "10.0.0.1") -> FakeTransport:
        transport = FakeTransport(self.loop, (host, next(self._ports)))
        protocol = BoundedHttpToolsProtocol(
            config=self.config, server_state=self.state, app_state={}, _loop=self.loop,  # type: ignore[arg-type]
            limits=self.limits,
        )  # fmt: skip
        transport.protocol = protocol
        protocol.connection_made(transport)  # type: ignore[arg-type]
        self.loop.settle()
        return transport


def request(path: str = "/", method: str = "GET", body: bytes = b"", declared: int | None = None) -> bytes:
    length = len(body) if declared is None else declared
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n".encode() + body


async def served(server: Server, transport: FakeTransport, data: bytes) -> None:
    """``data`` received, and the app's task let run until the connection has its answer (it never waits on
    the virtual clock: only on the data the test gives it)."""
    protocol = transport.protocol
    assert protocol is not None
    protocol.data_received(data)
    for _ in range(1000):
        if transport.closed or (protocol.cycle is not None and protocol.cycle.response_complete):
            break
        await asyncio.sleep(0)  # a turn of the test's loop for the app's task, not a wait
    server.loop.settle()
    assert transport.closed or protocol.cycle.response_complete, "no answer"


@pytest.fixture(autouse=True)
async def _no_task_left() -> AsyncIterator[None]:
    """Each test's connections closed after it, so the apps still waiting for a body see their client leave."""
    yield
    for transport in FakeTransport.made:
        transport.close()
        transport.loop.settle()
    await asyncio.gather(*VirtualLoop.tasks)
    FakeTransport.made.clear()
    VirtualLoop.tasks.clear()


# The head's deadline, size and header count.


async def test_a_head_must_arrive_within_its_deadline_of_the_connection_opening() -> None:
    server = Server()
    silent = server.connect()
    server.loop.advance(LIMITS.head_timeout_s - 0.01)
    assert not silent.closed
    server.loop.advance(0.01)
    assert silent.status == 408 and silent.closed
    assert b'"code": "request_timeout"' in silent.written


async def test_a_trickled_head_is_cut_off_at_the_deadline_bytes_or_not() -> None:
    server = Server()
    slow = server.connect()
    assert slow.protocol is not None
    for byte in b"GET / HTTP/1.1\r\nHost: t\r\n"[:20]:  # a byte every 1/20 of the deadline
        assert not slow.closed
        slow.protocol.data_received(bytes([byte]))
        server.loop.advance(LIMITS.head_timeout_s / 20)
    assert slow.status == 408 and slow.closed


async def test_a_later_request_on_a_kept_alive_connection_has_its_own_head_deadline() -> None:
    server = Server()
    kept = server.connect()
    await served(server, kept, request("/one"))
    assert kept.status == 200 and not kept.closed
    kept.written = b""
    assert kept.protocol is not None
    kept.protocol.data_received(b"GET /two HTTP/1.1\r\n")  # begins, never ends
    server.loop.advance(LIMITS.head_timeout_s)
    assert kept.status == 408 and kept.closed


async def test_an_idle_kept_alive_connection_closes_after_the_keep_alive_timeout() -> None:
    server = Server()
    kept = server.connect()
    await served(server, kept, request())
    server.loop.advance(KEEP_ALIVE_S - 0.01)
    assert not kept.closed
    server.loop.advance(0.01)
    assert kept.closed and kept.status == 200  # closed quietly: nothing more written


async def test_a_head_over_the_size_limit_is_431_and_one_with_too_many_fields_is_400() -> None:
    server = Server()
    large = server.connect()
    assert large.protocol is not None
    large.protocol.data_received(b"GET / HTTP/1.1\r\nX-Pad: " + b"x" * LIMITS.max_head_bytes)
    assert large.status == 431 and large.closed
    many = server.connect()
    fields = b"".join(b"X-%d: 1\r\n" % n for n in range(LIMITS.max_headers + 1))
    assert many.protocol is not None
    many.protocol.data_received(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    assert many.status == 400 and many.closed


# Connections: per process, per client, idle ones closed for room, probes answered.


async def test_a_client_at_its_cap_closes_its_own_longest_idle_connection_not_anothers() -> None:
    server = Server()
    other = server.connect("10.0.0.9")
    first, second = server.connect(), server.connect()
    await served(server, second, request())  # idle again, but since after the first went idle
    third = server.connect()
    server.loop.settle()
    assert first.closed and not (second.closed or third.closed or other.closed)
    assert first.written == b""  # an idle connection closes quietly, as at its keep-alive timeout


async def test_at_the_process_cap_the_biggest_holders_longest_idle_connection_makes_room() -> None:
    server = Server(ConnectionLimits(**{**LIMITS.__dict__, "max_per_client": 4}))
    lone = server.connect("10.0.0.9")  # the oldest idle one, but its client holds only it
    hog = [server.connect("10.0.0.1") for _ in range(3)]
    newcomer = server.connect("10.0.0.7")
    server.loop.settle()
    assert hog[0].closed and not any(t.closed for t in (lone, *hog[1:], newcomer))
    await served(server, newcomer, request("/v1/items/x"))
    assert newcomer.status == 200


def uploading(server: Server, host: str, declared: int = 1000) -> FakeTransport:
    """A connection in a request: its head came, its body has not (the app waits for it)."""
    transport = server.connect(host)
    assert transport.protocol is not None
    transport.protocol.data_received(request("/v1/items/x", "PUT", b"{", declared=declared))
    return transport


def busy_server() -> tuple[Server, list[FakeTransport]]:
    """A server at its cap with every connection in a request, from four clients."""
    server = Server()
    return server, [uploading(server, f"10.0.0.{n}") for n in range(1, 5)]


async def test_a_connection_in_a_request_is_never_closed_for_room() -> None:
    server, busy = busy_server()
    newcomer = server.connect("10.0.0.7")
    assert not any(t.closed for t in busy) and not newcomer.closed
    assert newcomer.protocol is not None and newcomer.protocol.past_cap


async def test_past_the_cap_with_nothing_idle_only_the_probes_are_answered() -> None:
    server, _ = busy_server()
    probe, other = server.connect("10.0.0.7"), server.connect("10.0.0.8")
    await served(server, probe, request("/healthz"))
    await served(server, other, request("/v1/items/x"))
    assert probe.status == 200 and probe.closed  # answered, then closed: the room is for the next probe
    assert b"connection: close" in probe.written
    assert other.status == 429 and other.closed
    assert b"retry-after: 1" in other.written and b"only /healthz and /readyz" in other.written


async def test_the_probe_room_is_shared_as_the_connections_are() -> None:
    server, _ = busy_server()
    squatters = [server.connect("10.0.0.66") for _ in range(PROBE_CONNECTIONS)]  # the room, idle
    probe = server.connect("10.0.0.7")
    server.loop.settle()
    assert squatters[0].closed and sum(t.closed for t in squatters) == 1 and not probe.closed
    await served(server, probe, request("/readyz"))
    assert probe.status == 200
    # A room full of connections being answered has nothing to close: one more is refused on arrival.
    for transport in [*squatters[1:], server.connect("10.0.0.66")]:
        assert transport.protocol is not None
        transport.protocol.data_received(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    late = server.connect("10.0.0.8")
    assert late.status == 429 and late.closed
    assert b"4 connections open, none idle" in late.written


async def test_a_connection_is_idle_again_once_its_answer_is_sent() -> None:
    server = Server(ConnectionLimits(**{**LIMITS.__dict__, "max_per_client": 1}))
    kept = uploading(server, "10.0.0.1", declared=2)
    busy_newcomer = server.connect("10.0.0.1")  # the first is in a request: this one may only ask for a probe
    assert busy_newcomer.protocol is not None and not kept.closed
    assert busy_newcomer.protocol.past_cap == "1 connections open from your address"
    await served(server, kept, b"}")
    assert kept.status == 200 and not kept.closed
    idle_newcomer = server.connect("10.0.0.1")
    server.loop.settle()
    assert kept.closed and idle_newcomer.protocol is not None and not idle_newcomer.protocol.past_cap


@pytest.mark.parametrize(
    ("peer", "client"),
    [
        (("192.0.2.7", 1), "192.0.2.7"),
        (("2001:db8:1:2:aaaa::1", 1), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 1), "2001:db8:1:2::/64"),  # the same /64: the same client
        (("::ffff:192.0.2.7", 1), "192.0.2.7"),
        (None, ""),
    ],
)
async def test_a_client_is_an_ipv4_address_or_an_ipv6_64(peer: tuple[str, int] | None, client: str) -> None:
    assert client_of(peer) == client
