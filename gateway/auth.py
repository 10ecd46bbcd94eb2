"""Optional API keys on ``/v1``: ``Authorization: Bearer <key>`` or ``X-API-Key``; off while none is set."""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import Request

from gateway.errors import ApiError
from gateway.settings import Settings


def load_keys(settings: Settings) -> tuple[bytes, ...]:
    """Keys from settings and from the key file (one per line, ``#`` comments), as bytes for hmac."""
    keys = [key.get_secret_value() for key in settings.api_keys]
    if settings.api_keys_file:
        lines = Path(settings.api_keys_file).read_text().splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return tuple(key.encode() for key in keys)


def presented_key(request: Request) -> bytes | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip().encode()
    api_key = request.headers.get("x-api-key", "").strip()
    return api_key.encode() if api_key else None


async def require_api_key(request: Request) -> None:
    keys: tuple[bytes, ...] = request.app.state.api_keys
    if not keys:
        return
    presented = presented_key(request)
    # Compare against every key, always: the time taken says nothing about which key, or how much, matched.
    matched = False
    for key in keys:
        matched |= presented is not None and hmac.compare_digest(presented, key)
    if not matched:
        raise ApiError(
            401, "unauthorized", "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
            {"WWW-Authenticate": 'Bearer realm="gateway"'},
        )  # fmt: skip
