"""Who may call what, every body's limit and pace, what readiness tells whom, and the route each request is counted
under, in-process (the app with a stand-in Triton client; ``client=`` is the peer address the app sees). The same
rules against a real process and real sockets: tests/reliability/test_bodies_bounded.py, test_who_is_trusted.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Body, FastAPI
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.items.sqlite import SQLiteItemStore
from gateway.items.store import ItemNotFound
from gateway.settings import Settings
from gateway.uploads import BODY_LIMIT, BodyRefused, Intake, Pace
from tests.support.fake_triton import FakeTriton
from tests.support.metrics import metric_samples
from tests.support.stack import TEST_MODEL

LOCAL, REMOTE = ("127.0.0.1", 50000), ("203.0.113.7", 50000)
UNLOAD = f"/v1/admin/models/{TEST_MODEL}/unload"


@pytest.fixture
def fake() -> FakeTriton:
    return FakeTriton()


def app_with(fake: FakeTriton, tmp_path: Path, **settings: Any) -> FastAPI:
    return create_app(Settings(sqlite_path=tmp_path / "items.sqlite3", **settings), triton_client=lambda _: fake)


@pytest.fixture
def keyed(fake: FakeTriton, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app_with(fake, tmp_path, api_keys="k1"), client=REMOTE) as client:
        yield client


def test_with_keys_every_v1_route_takes_one_and_the_probes_stay_open(keyed: TestClient) -> None:
    for method, path in (("GET", "/v1/items/x"), ("POST", UNLOAD), ("GET", "/v1/nothing-here"), ("POST", "/v1/edges")):
        refused = keyed.request(method, path)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", (path, refused.text)
        assert refused.headers["www-authenticate"] == 'Bearer realm="gateway"'
    assert keyed.get("/v1/items/x", headers={"Authorization": "Bearer k1"}).status_code == 404
    assert keyed.get("/v1/items/x", headers={"X-API-Key": "k1"}).status_code == 404
    assert keyed.get("/v1/items/x", headers={"Authorization": "Basic k1"}).status_code == 401
    assert keyed.post(UNLOAD, headers={"X-API-Key": "k1"}).status_code == 200  # a key opens model control anywhere
    assert [keyed.get(path).status_code for path in ("/healthz", "/readyz", "/metrics")] == [200, 200, 200]


def test_protected_metrics_take_a_key(fake: FakeTriton, tmp_path: Path) -> None:
    app = app_with(fake, tmp_path, api_keys="k1", protect_metrics=True)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": "k1"}).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_the_openapi_document_declares_the_key_schemes_only_where_keys_are_set(keyed: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert {"bearer": []} in spec["paths"]["/v1/items/{item_id}"]["get"]["security"]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_without_keys_model_control_is_for_this_host_and_no_proxy(fake: FakeTriton, tmp_path: Path) -> None:
    app = app_with(fake, tmp_path)
    with TestClient(app, client=LOCAL) as local, TestClient(app, client=REMOTE) as remote:
        assert local.post(UNLOAD).status_code == 200
        for forwarded in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=x"}, {"X-Real-IP": "203.0.113.7"}):
            refused = local.post(UNLOAD, headers=forwarded)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", forwarded
        assert remote.post(UNLOAD).status_code == 403
        assert remote.get("/v1/items/x").status_code == 404  # the rest of /v1 is open without keys
    assert fake.sent == [(f"unload {TEST_MODEL}", {})]  # once, from this host


def test_a_route_added_later_gets_the_default_body_limit(fake: FakeTriton, tmp_path: Path) -> None:
    app = app_with(fake, tmp_path)

    @app.post("/v1/later")
    async def later(body: Annotated[dict[str, Any], Body()]) -> dict[str, int]:
        return {"keys": len(body)}

    with TestClient(app) as client:
        assert client.post("/v1/later", json={"a": 1}).json() == {"keys": 1}
        padded = {"pad": "x" * BODY_LIMIT}
        declared = client.post("/v1/later", json=padded)
        streamed = client.post("/v1/later", content=iter([b'{"pad": "', b"x" * BODY_LIMIT, b'"}']))
    for refused in (declared, streamed):
        assert refused.status_code == 413, refused.text
        assert refused.json() == {
            "error": {
                "code": "payload_too_large",
                "message": f"the request body is over the limit of {BODY_LIMIT} bytes",
            }
        }


def _receiving(*messages: dict[str, Any], then_wait: bool = True) -> Any:
    """A receive callable: ``messages`` in turn, then (when ``then_wait``) nothing ever."""
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


SCOPE = {"type": "http", "headers": [(b"content-length", b"10")]}
PACE = Pace(timeout_s=60, min_bytes_per_s=1024, grace_s=0.05)


def test_a_body_that_stops_coming_is_408_and_closes() -> None:
    intake = Intake(_receiving({"type": "http.request", "body": b"12345", "more_body": True}), SCOPE, PACE)

    async def read() -> None:
        await intake()
        await intake()  # the other 5 bytes never come

    with pytest.raises(BodyRefused) as refused:
        asyncio.run(read())
    assert refused.value.error.error.code == "request_timeout"
    assert refused.value.error.headers == {"Connection": "close"}
    assert "5 bytes in" in refused.value.error.message


def test_once_the_body_is_whole_receive_waits_for_the_client_untimed() -> None:
    whole = {"type": "http.request", "body": b"0123456789", "more_body": False}
    intake = Intake(_receiving(whole), SCOPE, PACE)

    async def read() -> bool:
        await intake()
        waiting = asyncio.ensure_future(intake())  # what an inference route does to notice a client leaving
        await asyncio.sleep(PACE.grace_s * 4)  # past the body's pace: must not have been refused
        still_waiting = not waiting.done()
        waiting.cancel()
        return still_waiting

    assert asyncio.run(read())


def test_readiness_shows_why_only_to_this_host_or_a_keyed_caller(fake: FakeTriton, tmp_path: Path) -> None:
    async def unreachable(**_: object) -> bool:
        raise InferenceServerException(
            "failed to connect to all addresses; ipv4:10.1.2.3:8001", "StatusCode.UNAVAILABLE"
        )

    fake.is_server_ready = unreachable  # type: ignore[method-assign]
    app = app_with(fake, tmp_path, api_keys="k1")
    with TestClient(app, client=LOCAL) as local, TestClient(app, client=REMOTE) as remote:
        shown = {
            "local": local.get("/readyz").json()["components"]["triton"],
            "remote": remote.get("/readyz").json()["components"]["triton"],
            "remote, key": remote.get("/readyz", headers={"X-API-Key": "k1"}).json()["components"]["triton"],
            "local, forwarded": local.get("/readyz", headers={"X-Real-IP": "1.2.3.4"}).json()["components"]["triton"],
        }
    assert "10.1.2.3" in shown["local"] and "10.1.2.3" in shown["remote, key"]
    assert shown["remote"] == shown["local, forwarded"] == "unavailable"


def test_requests_are_counted_under_the_route_clients_see(fake: FakeTriton, tmp_path: Path) -> None:
    app = app_with(fake, tmp_path, api_keys="k1")
    key = {"X-API-Key": "k1"}
    with TestClient(app) as client:
        client.post(UNLOAD, headers=key)  # a route of a router included in another: /v1 + /admin
        client.get("/openapi.json")  # Swagger UI's spec: a plain route FastAPI records no route for
        client.get("/docs/assets/swagger-ui.css")
        client.get("/v1/items/x")  # refused by the gate before any route ran: still its route
        client.get("/nowhere")
        samples = metric_samples(client.get("/metrics", headers=key).text)
    counted = {
        (dict(labels)["route"], dict(labels)["status"])
        for (name, labels), _ in samples.items()
        if name == "gateway_requests_total"
    }
    assert {
        ("/v1/admin/models/{name}/unload", "200"),
        ("/openapi.json", "200"),
        ("/docs/assets/{name}", "200"),
        ("/v1/items/{item_id}", "401"),
        ("unmatched", "404"),
    } <= counted, counted


def test_a_replay_after_delete_says_the_item_is_gone(tmp_path: Path) -> None:
    async def scenario() -> str:
        store = SQLiteItemStore(tmp_path / "items.sqlite3", max_data_bytes=1024)
        item, _ = await store.create({"n": 1}, "key-1")
        assert (await store.create({"n": 1}, "key-1")) == (item, True)  # replayed while the item lives
        await store.delete(item.id)
        try:
            await store.create({"n": 1}, "key-1")
        except ItemNotFound as exc:
            return str(exc)
        finally:
            await store.close()
        raise AssertionError("replayed a deleted item")

    assert "has been deleted since; send a new key" in asyncio.run(scenario())
