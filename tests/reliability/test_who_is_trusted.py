"""Whom the gateway trusts, against a real gateway process: readiness shows its details (gRPC error text naming
Triton's address) only to a keyed or loopback caller, and a request that a proxy on the gateway's host forwarded
(it says so in ``Forwarded``, ``X-Forwarded-For`` or ``X-Real-IP``) is not a loopback caller, for model control
either."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.support.figures import hold
from tests.support.goals import every
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
    told = {"loopback": True, "forwarded, no key": False, "forwarded, wrong key": False, "forwarded, key": True}
    right = [caller for caller, detail in shown.items() if (str(port) in detail) == told[caller]]
    hold(
        "F22 /readyz's detail (Triton's address) only for keyed or loopback callers",
        len(right),
        every(4, "callers"),
        detail=str(shown),
    )
    assert shown["forwarded, no key"] == shown["forwarded, wrong key"] == "unavailable", shown


def test_a_request_forwarded_by_a_same_host_proxy_is_not_loopback(bare_gateway: Gateway) -> None:
    """No keys: model control is for the gateway's own host, and a proxy there forwarding a request from
    elsewhere (whichever header it names the client in) must not pass the rule for its client."""
    unload = f"{bare_gateway.url}/v1/admin/models/classify/unload"
    forwarded = {next(iter(headers)): httpx.post(unload, headers=headers) for headers in FORWARDED}
    local = httpx.post(unload)
    said = {header: f"{answer.status_code} {answer.json()['error']['code']}" for header, answer in forwarded.items()}
    refused = sum(answer.status_code == 403 for answer in forwarded.values())
    seen = f"{said}; from this host, no proxy: {local.status_code} {local.json()['error']['code']}"
    hold("N12 model control forwarded by a same-host proxy: refused 403", refused, every(3, "headers"), detail=seen)
    assert local.status_code == 503  # passed the rule, then found no Triton
