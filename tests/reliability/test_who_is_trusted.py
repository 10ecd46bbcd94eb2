"""Whom the gateway trusts, against a real gateway process: readiness shows its details (gRPC error text naming
Triton's address) only to a keyed or loopback caller, and a request that a proxy on the gateway's host forwarded
(it says so in ``Forwarded``, ``X-Forwarded-For`` or ``X-Real-IP``) is not a loopback caller, for model control
either."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support.figures import FIGURES
from tests.support.items_support import closed_port
from tests.support.stack import Gateway

pytestmark = pytest.mark.reliability

FORWARDED = [
    {"X-Forwarded-For": "203.0.113.7"},
    {"Forwarded": "for=203.0.113.7;proto=https"},
    {"X-Real-IP": "203.0.113.7"},
]


def test_readiness_details_only_for_keyed_or_loopback_callers(gateway_factory: Callable[..., Gateway]) -> None:
    port = closed_port()
    keyed = gateway_factory(GATEWAY_TRITON_URL=f"127.0.0.1:{port}", GATEWAY_API_KEYS="k1")
    shown: dict[str, str] = {}
    for caller, headers in {
        "loopback": {},
        "forwarded, no key": FORWARDED[0],
        "forwarded, wrong key": FORWARDED[0] | {"X-API-Key": "nope"},
        "forwarded, key": FORWARDED[0] | {"Authorization": "Bearer k1"},
    }.items():
        answer = httpx.get(f"{keyed.url}/readyz", headers=headers)
        assert answer.status_code == 503  # no Triton: readiness is red for everyone
        shown[caller] = answer.json()["components"]["triton"]
    FIGURES["F22 /readyz's Triton detail by caller (goal: the address only for keyed or loopback)"] = str(shown)
    assert str(port) in shown["loopback"] and str(port) in shown["forwarded, key"], shown
    assert shown["forwarded, no key"] == shown["forwarded, wrong key"] == "unavailable", shown


@pytest.mark.parametrize("headers", FORWARDED, ids=lambda headers: next(iter(headers)))
def test_a_request_forwarded_by_a_same_host_proxy_is_not_loopback(
    gateway_factory: Callable[..., Gateway], headers: dict[str, str]
) -> None:
    """No keys: model control is for the gateway's own host, and a proxy there forwarding a request from
    elsewhere must not pass the rule for its client."""
    open_gateway = gateway_factory(GATEWAY_TRITON_URL=f"127.0.0.1:{closed_port()}")
    forwarded = httpx.post(f"{open_gateway.url}/v1/admin/models/classify/unload", headers=headers)
    local = httpx.post(f"{open_gateway.url}/v1/admin/models/classify/unload")
    FIGURES[f"N12 model control forwarded with {next(iter(headers))} by a same-host proxy (goal: 403)"] = (
        f"{forwarded.status_code} {forwarded.json()['error']['code']}; from this host with no proxy: "
        f"{local.status_code} {local.json()['error']['code']}"
    )
    assert forwarded.status_code == 403, forwarded.text
    assert local.status_code == 503  # passed the rule, then found no Triton
