"""Who may call what, decided from a request's head before any route runs, so before a byte of its body is read
(FastAPI reads a route's body before its dependencies: a 200 MB body to model control was read and parsed, 1.2 GB
of it, only to answer 403).

- With API keys configured (``GATEWAY_API_KEYS``), every ``/v1`` route takes one, as ``Authorization: Bearer
  <key>`` or ``X-API-Key`` (and ``/metrics`` too with ``GATEWAY_PROTECT_METRICS``); ``/healthz`` and ``/readyz``
  stay open for load balancers, and show their details (Triton's errors, which name its address) only to a caller
  with a key or on the gateway's own host.
- With none, model control (``/v1/admin``: unloading a model stops every client's requests for it) is open to
  callers on the gateway's own host only: ``make serve``'s user, never whoever reaches it through a load balancer.

"The gateway's own host" is a loopback peer whose request no proxy forwarded: one with ``Forwarded``,
``X-Forwarded-For`` or ``X-Real-IP`` is the client it names, from elsewhere. A proxy on the same host that sets none
of them makes every client it forwards look local: behind one, configure keys.

Both ways to send a key are declared with FastAPI's security classes (``key_schemes``), so OpenAPI lists them
under ``securitySchemes`` and Swagger UI's "Authorize" button can send one; the check itself is ``Gate``'s
(constant time, our 401 body).
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path
from typing import Annotated

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import Error, error_response
from gateway.settings import Settings

# auto_error=False: the schemes only declare; Gate answers for a missing or wrong key.
bearer_scheme = HTTPBearer(
    scheme_name="bearer", description="`Authorization: Bearer <key>` (when GATEWAY_API_KEYS is set)", auto_error=False
)
header_scheme = APIKeyHeader(
    name="X-API-Key", scheme_name="apiKey", description="`X-API-Key: <key>` (the same keys)", auto_error=False
)
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def load_keys(settings: Settings) -> tuple[bytes, ...]:
    """Keys from settings and from the key file (one per line, ``#`` comments), as bytes for hmac."""
    keys = [key.get_secret_value() for key in settings.api_keys]
    if settings.api_keys_file:
        lines = Path(settings.api_keys_file).read_text().splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return tuple(key.encode() for key in keys)


async def key_schemes(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    api_key: Annotated[str | None, Security(header_scheme)],
) -> None:
    """The routes' dependency when keys are configured: it declares the two ways to send one (OpenAPI), and
    checks nothing, Gate having checked them before the route was even chosen."""


def presented_key(headers: Headers) -> bytes | None:
    """The bearer token when there is one, else the X-API-Key header."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip().encode()
    api_key = headers.get("x-api-key", "").strip()
    return api_key.encode() if api_key else None


def has_key(headers: Headers, keys: tuple[bytes, ...]) -> bool:
    presented = presented_key(headers)
    # Compare against every key, always: the time taken says nothing about which key, or how much, matched.
    matched = False
    for key in keys:
        matched |= presented is not None and hmac.compare_digest(presented, key)
    return matched


def on_this_host(connection: HTTPConnection) -> bool:
    """A loopback peer, and no proxy saying it forwards the request for someone else."""
    if any(name in connection.headers for name in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(connection.client.host if connection.client else "").is_loopback
    except ValueError:  # not an address (a test client's name, a Unix socket)
        return False


def trusted(connection: HTTPConnection, keys: tuple[bytes, ...]) -> bool:
    """May see what the gateway knows of its surroundings (Triton's address, in its errors)."""
    return on_this_host(connection) or has_key(connection.headers, keys)


class Gate:
    """Refuses, from the head alone, a request to a route its caller may not use: 401 without a valid key where
    keys are configured, 403 for model control from another host where none is. The app never reads the refused
    request's body: uvicorn drops it as it comes."""

    def __init__(self, app: ASGIApp, keys: tuple[bytes, ...], protect_metrics: bool) -> None:
        self.app = app
        self.keys = keys
        self.protect_metrics = protect_metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            connection = HTTPConnection(scope)
            if self.keys and self._keyed(path) and not has_key(connection.headers, self.keys):
                refusal = error_response(
                    Error.UNAUTHORIZED,
                    "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
                    {"WWW-Authenticate": 'Bearer realm="gateway"'},
                )
                await refusal(scope, receive, send)
                return
            if not self.keys and path.startswith("/v1/admin/") and not on_this_host(connection):
                refusal = error_response(
                    Error.FORBIDDEN,
                    "model control is open to clients on the gateway's own host only while no API key is "
                    "configured; set GATEWAY_API_KEYS and send a key",
                )
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _keyed(self, path: str) -> bool:
        return path.startswith("/v1/") or (self.protect_metrics and path.startswith("/metrics"))
