"""HTTP as an attacker speaks it: raw sockets from a chosen loopback address (the whole of 127.0.0.0/8 reaches
a server on 127.0.0.1, so one test can be several clients), bodies pushed until the server answers, and ``Hog``, a
client that holds as many sockets as it can and opens another for each one closed."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


def readable(sock: socket.socket, timeout_s: float = 0) -> bool:
    """Whether the server sent something (or closed) within ``timeout_s``; poll, as a test may hold over 1,024 fds."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


def connect(port: int, source: str = "127.0.0.1", timeout_s: float = 10) -> socket.socket:
    """A connection to the server on 127.0.0.1:``port`` from ``source`` (any 127.x.y.z)."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout_s, source_address=(source, 0))


def read_answer(sock: socket.socket, timeout_s: float = 10) -> bytes:
    """What the server sends until it closes, or ``timeout_s`` passes (then what came so far)."""
    sock.settimeout(timeout_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        pass
    except ConnectionResetError:
        pass  # after its answer: the server closed with our unread bytes queued
    return b"".join(chunks)


def read_response(sock: socket.socket, timeout_s: float = 10) -> bytes:
    """One answer (head and its Content-Length body) off a connection that may stay open, nothing past it; what
    came if the server closed or ``timeout_s`` passed first."""
    sock.settimeout(timeout_s)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        fields = dict(line.split(b":", 1) for line in head.lower().split(b"\r\n")[1:])
        while len(body) < int(fields.get(b"content-length", b"0")) and (chunk := sock.recv(65536)):
            body += chunk
    except (TimeoutError, ConnectionResetError):
        return data
    return head + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int | None:
    """The status code of the first answer in ``answer``, or None when nothing came."""
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None


def error_code(answer: bytes) -> str | None:
    """The error code of a single answer in the project's error shape."""
    try:
        return str(json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Pushed:
    """What a body pushed at the server came to: the answer, and how many body bytes went before it came."""

    answer: bytes
    body_bytes_sent: int
    seconds: float


def json_list(size: int, key: bytes = b"versions", piece: int = 64 * 1024) -> Iterator[bytes]:
    """A JSON object of ``size`` bytes whose ``key`` is a list of ones, in pieces: parsed whole, each byte pair
    becomes an 8-byte list slot (and the bytes, the text and the parser's copies are held meanwhile)."""
    opening, closing = b'{"' + key + b'": [', b"1]}"
    left = size - len(opening) - len(closing)
    yield opening + b" " * (left % 2)
    for start in range(0, left - left % 2, piece):
        yield b"1," * (min(piece, left - left % 2 - start) // 2)
    yield closing


def push_body(
    port: int, head: bytes, pieces: Iterable[bytes], *, chunked: bool = False, timeout_s: float = 60
) -> Pushed:
    """Sends ``head`` and then the body's ``pieces`` (each as a chunk when ``chunked``) as fast as the server takes
    them, looking for an answer between pieces; stops at the answer (read until close) or when the server stops
    reading."""
    started = time.monotonic()
    sent = 0
    with connect(port, timeout_s=timeout_s) as sock:
        sock.sendall(head)
        try:
            for data in pieces:
                if readable(sock):
                    break
                sock.sendall(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
                sent += len(data)
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed while we were sending
        answer = read_response(sock, timeout_s)
    return Pushed(answer, sent, time.monotonic() - started)


def trickle(sock: socket.socket, data: bytes, every_s: float, timeout_s: float) -> tuple[bytes, float]:
    """Sends ``data`` a byte every ``every_s`` until the server answers or closes, or ``timeout_s`` passes; what it
    answered (b"" if nothing) and when."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > timeout_s:
            break
        if readable(sock, every_s):
            return read_answer(sock), time.monotonic() - started
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return b"", time.monotonic() - started
    left = max(0.0, timeout_s - (time.monotonic() - started))
    if readable(sock, left):
        return read_answer(sock), time.monotonic() - started
    return b"", time.monotonic() - started


# What a hog's sockets send on opening: nothing, the start of an item body, or the start of a 10 MB image body.
IDLE = b""
ITEM_UPLOAD = b"PUT /v1/items/hog HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"
IMAGE_UPLOAD = b"POST /v1/classify HTTP/1.1\r\nContent-Type: image/jpeg\r\nContent-Length: 10000000\r\n\r\n"


class Hog:
    """One client address holding ``sockets`` connections to the server for as long as the block runs: each opens,
    sends ``opening`` (nothing, or a head and the start of a body) and then ``tick_bytes`` of body every ``tick_s``
    when it has a body going; any the server ends (answers or closes) is opened again at once. ``opened`` counts
    every connection it made, ``ended`` those the server ended."""

    def __init__(
        self, port: int, source: str, sockets: int, opening: bytes = IDLE, tick_bytes: int = 1, tick_s: float = 0.5
    ) -> None:
        self.port, self.source, self.sockets = port, source, sockets
        self.opening, self.tick_bytes, self.tick_s = opening, tick_bytes, tick_s
        self.opened = self.ended = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)
        self._held: list[socket.socket] = []
        self.ready = threading.Event()

    def __enter__(self) -> Hog:
        self._thread.start()
        assert self.ready.wait(60), "the hog could not open its sockets"
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(30)

    def _open(self) -> socket.socket | None:
        try:
            sock = connect(self.port, self.source, timeout_s=5)
            sock.sendall(self.opening)
            sock.setblocking(False)
            self.opened += 1
            return sock
        except OSError:
            return None

    @staticmethod
    def _ended(sock: socket.socket) -> bool:
        """The server never writes to a connection that has not finished a request, except to refuse and close it."""
        try:
            return readable(sock)
        except OSError:
            return True

    def _hold(self) -> None:
        try:
            while not self._done.is_set():
                self._held = list(self._reap())
                while len(self._held) < self.sockets and not self._done.is_set():
                    sock = self._open()
                    if sock is None:
                        break
                    self._held.append(sock)
                self.ready.set()
                if self.opening:
                    for sock in self._held:
                        with contextlib.suppress(OSError):
                            sock.send(b" " * self.tick_bytes)  # whitespace (JSON) or zeros: the body goes on
                self._done.wait(self.tick_s)
        finally:
            for sock in self._held:
                sock.close()

    def _reap(self) -> Iterator[socket.socket]:
        for sock in self._held:
            if self._ended(sock):
                self.ended += 1
                sock.close()
            else:
                yield sock
