"""The HTTP protocol the gateway serves with: uvicorn's httptools protocol plus the connection limits it lacks.

Connections are shared fairly. A process holds at most ``max_connections``, and one client address at most
``max_connections_per_client`` of them; a connection past either cap closes an idle one to make room (one that is
between requests or has not finished its head): the arriving client's own longest idle one at its cap, at the
process's cap the longest idle one of the address holding the most. A client, whatever number of sockets it
opens, so only ever closes its own, never a second client's. When nothing is idle (every connection is in a
request), the arrival may still ask for ``/healthz`` or ``/readyz``, in a room of ``PROBE_CONNECTIONS`` past the cap
shared the same way, and is answered 429 for anything else; probes reach a process whatever its clients do.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import weakref
from dataclasses import dataclass

import httptools
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.errors import Error
from gateway.settings import PROBE_CONNECTIONS, Settings

PROBES = frozenset({b"/healthz", b"/readyz"})


@dataclass(frozen=True)
class ConnectionLimits:
    """This process's connection limits (``GATEWAY_MAX_CONNECTIONS``, ``..._PER_CLIENT``, ``..._HEAD_TIMEOUT_S``,
    ``..._MAX_HEAD_BYTES``, ``..._MAX_HEADERS``): an idle keep-alive connection closes (uvicorn's keep-alive
    timeout), a request's head must arrive within the timeout of the connection opening or of its first byte and
    fit the size and header count: 256 uploads trickling a byte every 5 s, or connections that never send a byte,
    otherwise hold sockets and memory for ever, and 16 MB headers were read whole."""

    max_connections: int
    max_per_client: int
    head_timeout_s: float
    max_head_bytes: int
    max_headers: int
    retry_after_s: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.max_connections,
            settings.max_connections_per_client,
            settings.head_timeout_s,
            settings.max_head_bytes,
            settings.max_headers,
            settings.retry_after_s,
        )


@functools.cache
def process_limits() -> ConnectionLimits:
    """Read once per process: uvicorn builds the protocol itself, in every worker process."""
    return ConnectionLimits.of(Settings())


def client_of(peer: tuple[str, int] | None) -> str:
    """The client a connection counts against: its IPv4 address, or its IPv6 /64 (one host's share of a network,
    where a client has 2^64 addresses to open sockets from)."""
    if peer is None:
        return ""
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return peer[0]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


class Pool:
    """Connections by client, with those that are idle in the order they went idle."""

    def __init__(self) -> None:
        self.size = 0
        self._by_client: dict[str, set[BoundedHttpToolsProtocol]] = {}
        self._idle: dict[str, dict[BoundedHttpToolsProtocol, None]] = {}

    def __contains__(self, connection: BoundedHttpToolsProtocol) -> bool:
        return connection in self._by_client.get(connection.client_key, ())

    def held_by(self, client: str) -> int:
        return len(self._by_client.get(client, ()))

    def add(self, connection: BoundedHttpToolsProtocol) -> None:
        self._by_client.setdefault(connection.client_key, set()).add(connection)
        self.size += 1
        self.idle(connection)

    def remove(self, connection: BoundedHttpToolsProtocol) -> None:
        if connection in self:
            self.busy(connection)
            self._by_client[connection.client_key].discard(connection)
            if not self._by_client[connection.client_key]:
                del self._by_client[connection.client_key]
            self.size -= 1

    def idle(self, connection: BoundedHttpToolsProtocol) -> None:
        self._idle.setdefault(connection.client_key, {})[connection] = None

    def busy(self, connection: BoundedHttpToolsProtocol) -> None:
        idle = self._idle.get(connection.client_key, {})
        idle.pop(connection, None)
        if not idle:
            self._idle.pop(connection.client_key, None)

    def longest_idle(self, client: str | None = None) -> BoundedHttpToolsProtocol | None:
        """``client``'s connection idle the longest; with no client, that of the client holding the most."""
        if client is None:
            if not self._idle:
                return None
            client = max(self._idle, key=self.held_by)
        idle = self._idle.get(client)
        return next(iter(idle)) if idle else None


@dataclass
class Connections:
    """One server's (one process's) connections: those served, and those past the cap that may ask for a probe."""

    served: Pool
    probes: Pool


_CONNECTIONS: weakref.WeakKeyDictionary[ServerState, Connections] = weakref.WeakKeyDictionary()


def _error_answer(error: Error, message: str, headers: dict[str, str]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The project's error body, and the headers an answer that closes the connection sends with it."""
    body = json.dumps({"error": {"code": error.code, "message": message}}).encode()
    fields = {"content-type": "application/json", "content-length": str(len(body)), **headers, "connection": "close"}
    return body, [(name.encode(), value.encode()) for name, value in fields.items()]


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the limits uvicorn lacks: caps on open connections per process and per
    client (closing idle ones for room, probes still answered), a deadline for a request's head (which also closes
    connections that never send one) and a cap on its size and header count."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or process_limits()
        self.table = _CONNECTIONS.setdefault(server_state, Connections(Pool(), Pool()))
        self.client_key = ""
        self.past_cap: str | None = None  # which cap this connection came past, when it may only ask for probes
        self._head_bytes = 0
        self._in_head = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.client_key = client_of(self.client)
        if self._admitted():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.table.served.remove(self)
        self.table.probes.remove(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after parsing, so a chunk that completes its head (body bytes included) is never refused.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(Error.HEADERS_TOO_LARGE, f"the request head is over {self.limits.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_headers:
            raise ValueError("too many headers")  # httptools turns it into a parser error: uvicorn answers 400
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        self._pool().busy(self)
        if self.past_cap and not self._asks_for_a_probe():
            self.app = self._refusal(  # this connection is closed after its answer: it asks nothing else
                Error.OVERLOADED,
                f"this gateway process has {self.past_cap}, none idle: it answers only /healthz and /readyz now; "
                "retry shortly",
            )
        super().on_headers_complete()
        if self.past_cap and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:  # not a pipelined request started
            self._pool().idle(self)

    def _pool(self) -> Pool:
        return self.table.probes if self.past_cap else self.table.served

    def _admitted(self) -> bool:
        """Counts this connection where there is room for it, closing an idle one to make room if need be, else
        in the probe room; with none there either, answers 429 and closes it."""
        served = self.table.served
        at_client_cap = served.held_by(self.client_key) >= self.limits.max_per_client
        if at_client_cap or served.size >= self.limits.max_connections:
            room = served.longest_idle(self.client_key if at_client_cap else None)
            if room is None:
                cap = f"{self.limits.max_per_client} connections open from your address" if at_client_cap else (
                    f"{self.limits.max_connections} connections open")  # fmt: skip
                return self._admitted_for_probes(cap)
            self._close(room)
        served.add(self)
        return True

    def _admitted_for_probes(self, cap: str) -> bool:
        probes = self.table.probes
        if probes.size >= PROBE_CONNECTIONS:
            room = probes.longest_idle()
            if room is None:
                self._refuse(Error.OVERLOADED, f"this gateway process has {cap}, none idle; retry shortly",
                             {"retry-after": str(self.limits.retry_after_s)})  # fmt: skip
                return False
            self._close(room)
        self.past_cap = cap
        probes.add(self)
        return True

    def _close(self, connection: BoundedHttpToolsProtocol) -> None:
        """Closes an idle connection for another's room (its client sees an idle keep-alive connection close)."""
        self.table.served.remove(connection)
        self.table.probes.remove(connection)
        connection.transport.close()

    def _asks_for_a_probe(self) -> bool:
        try:
            path = httptools.parse_url(self.url).path
        except httptools.HttpParserInvalidURLError:
            return False
        return self.parser.get_method() in (b"GET", b"HEAD") and path in PROBES

    def _refusal(self, error: Error, message: str) -> _Refusal:
        headers = {"retry-after": str(self.limits.retry_after_s)}
        return _Refusal(*_error_answer(error, message, headers), status=error.status)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(
                Error.REQUEST_TIMEOUT, f"the request head did not arrive within {self.limits.head_timeout_s:g} s"
            )

    def _refuse(self, error: Error, message: str, headers: dict[str, str] | None = None) -> None:
        """Answers in the project's error shape and closes: the head was never read, so no app call is made."""
        body, fields = _error_answer(error, message, headers or {})
        head = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
        self.transport.write(STATUS_LINE[error.status] + head + b"\r\n" + body)
        self.transport.close()
        self.table.served.remove(self)
        self.table.probes.remove(self)


@dataclass(frozen=True)
class _Refusal:
    """The ASGI app a probe-only connection runs for anything but a probe: an error answer, and the connection
    closes after it."""

    body: bytes
    headers: list[tuple[bytes, bytes]]
    status: int

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})
