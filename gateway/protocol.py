"""The HTTP protocol the gateway serves with: uvicorn's httptools protocol plus the connection limits it lacks."""

from __future__ import annotations

import asyncio
import functools
import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.errors import Error
from gateway.settings import Settings


@functools.cache
def limits() -> Settings:
    """This process's connection limits (``GATEWAY_MAX_CONNECTIONS``, ``..._KEEP_ALIVE_S``, ``..._HEAD_TIMEOUT_S``,
    ``..._MAX_HEAD_BYTES``, ``..._MAX_HEADERS``), read once: uvicorn builds the protocol below itself, in every
    worker process. Connections past the cap are answered 429 and closed; an idle keep-alive connection closes; a
    request's head must arrive within the timeout of the connection opening or of its first byte and fit the size
    and header count: 256 uploads trickling a byte every 5 s, or connections that never send a byte, otherwise
    hold sockets and memory for ever, and 16 MB headers were read whole."""
    return Settings()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the limits uvicorn lacks: a cap on open connections, a deadline for a
    request's head (which also closes connections that never send one) and a cap on its size and header count."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = False
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > limits().max_connections:  # this one counted: past the cap, answer and close
            retry = {"retry-after": str(limits().retry_after_s)}
            self._refuse(Error.OVERLOADED, f"this gateway process has {limits().max_connections} connections open; "
                         "retry shortly", retry)  # fmt: skip
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after parsing, so a chunk that completes its head (body bytes included) is never refused.
            self._head_bytes += len(data)
            if self._head_bytes > limits().max_head_bytes:
                self._refuse(Error.HEADERS_TOO_LARGE, f"the request head is over {limits().max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= limits().max_headers:
            raise ValueError("too many headers")  # httptools turns it into a parser error: uvicorn answers 400
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(limits().head_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(Error.REQUEST_TIMEOUT, f"the request head did not arrive within {limits().head_timeout_s:g} s")

    def _refuse(self, error: Error, message: str, headers: dict[str, str] | None = None) -> None:
        """Answers in the project's error shape and closes: the head was never read, so no app call is made."""
        body = json.dumps({"error": {"code": error.code, "message": message}}).encode()
        fields = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}
        head = "".join(f"{name}: {value}\r\n" for name, value in (fields | {"connection": "close"}).items())
        self.transport.write(STATUS_LINE[error.status] + head.encode() + b"\r\n" + body)
        self.transport.close()
