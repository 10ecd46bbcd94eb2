"""What the item tests share: real servers in subprocesses on free loopback ports (the DynamoDB emulator and
the gateway as uvicorn serves it, with Triton stopped), and ``HttpItems``, the store interface spoken over HTTP, so one
contract suite runs at both levels.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from botocore.client import BaseClient

from gateway.items.dynamodb import make_client
from gateway.items.store import (
    IdempotencyKeyReused,
    IfMatch,
    InvalidCursor,
    Item,
    ItemNotFound,
    ItemPage,
    ItemStoreError,
    ItemTooLarge,
    PreconditionFailed,
    StoreUnavailable,
    WriteConflict,
)

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class Server:
    """``python -m <module_args> --fd N`` serving a socket bound here on a free loopback port. The URL is known
    at once (another server's settings can name it); ``serving`` starts several side by side."""

    def __init__(self, module_args: list[str], env: dict[str, str] | None = None) -> None:
        self._sock = socket.socket()
        # uvicorn --fd takes the socket for a Unix one and so skips TCP_NODELAY; accepted sockets inherit it
        # from here. Without it every sequential request waited ~40 ms on a delayed ACK.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._args = [sys.executable, "-m", *module_args, "--fd", str(self._sock.fileno())]
        # Inherited GATEWAY_* variables are dropped: only ``env`` configures the server.
        self._env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
        self._env.update(env or {}, PYTHONPATH=os.pathsep.join([str(ROOT)]))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(self._args, pass_fds=(self._sock.fileno(),), cwd=ROOT, env=self._env)

    def wait_until_answering(self, timeout_s: float = 30.0) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while self._process.poll() is None and time.monotonic() < deadline:
            try:
                httpx.get(self.url, timeout=1.0)  # any answer will do: it is serving
                return
            except httpx.TransportError:
                time.sleep(0.05)  # polling interval, not an assertion
        raise RuntimeError(f"{self._args} never answered on {self.url} (exit code {self._process.poll()})")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._sock.close()


@contextmanager
def serving(*servers: Server) -> Iterator[list[str]]:
    """Starts the servers together, yields their URLs once all answer, and stops them all."""
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_until_answering()
        yield [server.url for server in servers]
    finally:
        for server in servers:
            server.stop()


def moto_server() -> Server:
    return Server(["tests.support.items_moto"])


def items_server(**settings: str) -> Server:
    """The whole gateway (``create_app``) with these settings (``item_store="sqlite"`` -> GATEWAY_ITEM_STORE)
    and no Triton behind it: CRUD must not need one."""
    env = {f"GATEWAY_{name.upper()}": value for name, value in settings.items()}
    env.setdefault("GATEWAY_TRITON_URL", f"127.0.0.1:{closed_port()}")
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    return Server(["uvicorn", "gateway.app:create_app", "--factory", "--log-level", "warning"], env)


_HELD: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port nothing listens on, nor can while this process lives: a socket bound to it, not listening,
    is held open, so a connection is refused and no server (another test's, another worker's) can take the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return int(sock.getsockname()[1])


def dynamodb_client(endpoint_url: str) -> BaseClient:
    return make_client(REGION, endpoint_url, **CREDENTIALS)


# Each error code the routes send, with its status, and the store error it stands for.
_ERRORS: dict[str, tuple[int, type[ItemStoreError]]] = {
    "not_found": (404, ItemNotFound),
    "precondition_failed": (412, PreconditionFailed),
    "idempotency_key_reused": (422, IdempotencyKeyReused),
    "invalid_cursor": (422, InvalidCursor),
    "payload_too_large": (413, ItemTooLarge),
    "write_conflict": (409, WriteConflict),
    "store_unavailable": (503, StoreUnavailable),
}


def check_error(response: httpx.Response, status: int, code: str) -> str:
    """Asserts the project's error shape, status and code; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]["message"]


class HttpItems:
    """The ``ItemStore`` interface over HTTP: errors come back as the same store exceptions, and every answer
    is checked for what HTTP adds (``ETag`` equal to the version, ``Location``, the error shape)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def create(self, data: dict[str, Any], idempotency_key: str | None = None) -> tuple[Item, bool]:
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        response = await self.client.post("/v1/items", json=data, headers=headers)
        item = self._item(response, 201)
        return item, response.headers.get("Idempotent-Replayed") == "true"

    async def get(self, item_id: str) -> Item:
        return self._item(await self.client.get(f"/v1/items/{item_id}"), 200)

    async def put(self, item_id: str, data: dict[str, Any], if_match: IfMatch = None) -> tuple[Item, bool]:
        response = await self.client.put(f"/v1/items/{item_id}", json=data, headers=_if_match(if_match))
        item = self._item(response, 200, 201)
        return item, response.status_code == 201

    async def patch(self, item_id: str, patch: dict[str, Any], if_match: IfMatch = None) -> Item:
        headers = {"Content-Type": "application/merge-patch+json", **_if_match(if_match)}
        response = await self.client.patch(f"/v1/items/{item_id}", json=patch, headers=headers)
        return self._item(response, 200)

    async def delete(self, item_id: str, if_match: IfMatch = None) -> None:
        response = await self.client.delete(f"/v1/items/{item_id}", headers=_if_match(if_match))
        _raise_for_error(response)
        assert response.status_code == 204 and response.content == b""

    async def list(self, limit: int, cursor: str | None = None) -> ItemPage:
        params: dict[str, Any] = {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}
        response = await self.client.get("/v1/items", params=params)
        _raise_for_error(response)
        assert response.status_code == 200
        return ItemPage.model_validate(response.json())

    @staticmethod
    def _item(response: httpx.Response, *statuses: int) -> Item:
        _raise_for_error(response)
        assert response.status_code in statuses, response.text
        item = Item.model_validate(response.json())
        assert response.headers["ETag"] == f'"{item.version}"'
        if response.status_code == 201:
            assert response.headers["Location"] == f"/v1/items/{item.id}"
        return item


def _if_match(if_match: IfMatch) -> dict[str, str]:
    if if_match is None:
        return {}
    return {"If-Match": "*" if if_match == "*" else f'"{if_match}"'}


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    code = response.json().get("error", {}).get("code")
    assert code in _ERRORS, response.text
    status, error = _ERRORS[code]
    message = check_error(response, status, code)
    if status in (409, 503):
        assert int(response.headers["Retry-After"]) >= 1
    raise error(message)
