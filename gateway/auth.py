"""Optional API keys on ``/v1``: ``Authorization: Bearer <key>`` or ``X-API-Key``; off while none is set, except
for model control, which is then open to clients on this host only.

Both ways are declared with FastAPI's security classes so OpenAPI lists them under ``securitySchemes`` and
Swagger UI's "Authorize" button can send a key; the check itself stays ours (constant time, our 401 body).
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.deps import ApiKeysDep
from gateway.errors import ApiError, Error
from gateway.settings import Settings

# auto_error=False: a missing key is only an error when keys are configured, and the error is ours.
bearer_scheme = HTTPBearer(
    scheme_name="bearer", description="`Authorization: Bearer <key>` (when GATEWAY_API_KEYS is set)", auto_error=False
)
header_scheme = APIKeyHeader(
    name="X-API-Key", scheme_name="apiKey", description="`X-API-Key: <key>` (the same keys)", auto_error=False
)


def load_keys(settings: Settings) -> tuple[bytes, ...]:
    """Keys from settings and from the key file (one per line, ``#`` comments), as bytes for hmac."""
    keys = [key.get_secret_value() for key in settings.api_keys]
    if settings.api_keys_file:
        lines = Path(settings.api_keys_file).read_text().splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return tuple(key.encode() for key in keys)


def presented_key(bearer: HTTPAuthorizationCredentials | None, api_key: str | None) -> bytes | None:
    """The bearer token when there is one, else the X-API-Key header."""
    if bearer is not None:
        return bearer.credentials.encode()
    api_key = (api_key or "").strip()
    return api_key.encode() if api_key else None


async def require_api_key(
    keys: ApiKeysDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    api_key: Annotated[str | None, Security(header_scheme)],
) -> None:
    presented = presented_key(bearer, api_key)
    # Compare against every key, always: the time taken says nothing about which key, or how much, matched.
    matched = False
    for key in keys:
        matched |= presented is not None and hmac.compare_digest(presented, key)
    if not matched:
        raise ApiError(
            Error.UNAUTHORIZED,
            "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
            {"WWW-Authenticate": 'Bearer realm="gateway"'},
        )


async def require_model_control(request: Request, keys: ApiKeysDep) -> None:
    """Unloading a model stops every client's requests for it: with API keys configured, model control takes a
    valid key like every /v1 route; with none, it is open to loopback clients only (``make serve``'s user), never
    to whoever reaches the gateway through a load balancer."""
    if keys:
        return  # require_api_key guards every /v1 route then
    if not _loopback(request.client.host if request.client else ""):
        raise ApiError(
            Error.FORBIDDEN,
            "model control is open to clients on the gateway's own host only while no API key is configured; "
            "set GATEWAY_API_KEYS and send a key",
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # not an address (a test client's name, a Unix socket)
        return False
