"""What HTTP adds to the item contract: headers, validation of bodies, ids, headers and queries with the
project's error shape, the OpenAPI document, and 503 when the store is down. Written against ``base_url`` so
the same tests can run against the full gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gateway.items.document import MAX_DEPTH
from tests.support.items_support import check_error, closed_port, items_server, serving

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024  # the default GATEWAY_MAX_ITEM_BYTES


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The routes over SQLite, and over two stores that are down; all boot side by side."""
    directory = tmp_path_factory.mktemp("items")
    not_a_database = directory / "broken.sqlite3"
    not_a_database.write_bytes(b"this is not a database file, just bytes " * 100)
    started = {
        "sqlite": items_server(sqlite_path=str(directory / "items.sqlite3")),
        "sqlite-not-a-database": items_server(sqlite_path=str(not_a_database)),
        "dynamodb-closed-port": items_server(
            item_store="dynamodb", dynamodb_endpoint_url=f"http://127.0.0.1:{closed_port()}"
        ),
    }
    with serving(*started.values()) as urls:
        yield dict(zip(started, urls, strict=True))


@pytest.fixture(scope="module")
def base_url(servers: dict[str, str]) -> str:
    """Everything tested with it is decided before, or regardless of, the store (SQLite here)."""
    return servers["sqlite"]


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


async def test_post_answers_201_with_location_etag_and_the_item(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/items", json={"name": "widget"})
    assert response.status_code == 201
    item = response.json()
    assert set(item) == {"id", "version", "created_at", "updated_at", "data"}
    assert (item["version"], item["data"]) == (1, {"name": "widget"})
    assert response.headers["Location"] == f"/v1/items/{item['id']}"
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Content-Type"] == "application/json"
    assert "Idempotent-Replayed" not in response.headers
    fetched = await client.get(response.headers["Location"])
    assert (fetched.status_code, fetched.json(), fetched.headers["ETag"]) == (200, item, '"1"')


async def test_a_replayed_post_says_so_and_answers_like_the_first(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = await client.post("/v1/items", json={"n": 1}, headers=headers)
    again = await client.post("/v1/items", json={"n": 1}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"] and again.headers["ETag"] == '"1"'
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await client.post("/v1/items", json={"n": 2}, headers=headers)
    assert "different body" in check_error(other, 422, "idempotency_key_reused")


async def test_put_answers_201_then_200_and_delete_204(client: httpx.AsyncClient) -> None:
    item_id = f"sku_{uuid.uuid4().hex[:8]}-A"
    created = await client.put(f"/v1/items/{item_id}", json={"v": 1})
    assert (created.status_code, created.headers["Location"], created.headers["ETag"]) == (
        201,
        f"/v1/items/{item_id}",
        '"1"',
    )
    replaced = await client.put(f"/v1/items/{item_id}", json={"v": 2}, headers={"If-Match": '"1"'})
    assert (replaced.status_code, replaced.headers["ETag"], replaced.json()["data"]) == (200, '"2"', {"v": 2})
    assert "Location" not in replaced.headers
    deleted = await client.delete(f"/v1/items/{item_id}", headers={"If-Match": '"2"'})
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert item_id in check_error(await client.get(f"/v1/items/{item_id}"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "not an array"),
        (b"null", "not null"),
        (b"{", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"price": NaN}', "NaN is not JSON"),
        (b'{"price": 1e999}', "out of range"),
        (b'{"name": "caf\xe9"}', "not UTF-8"),
        ('{"name": "x"}'.encode("utf-16"), "not UTF-8"),
        (nested(MAX_DEPTH + 1).encode(), f"deeper than {MAX_DEPTH}"),
        (b"[" * 60_000, f"deeper than {MAX_DEPTH}"),
        (b'{"n": ' + b"7" * 5000 + b"}", "not valid JSON"),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_422(client: httpx.AsyncClient, body: bytes, reason: str) -> None:
    for method, url in (("POST", "/v1/items"), ("PUT", "/v1/items/bad-body"), ("PATCH", "/v1/items/bad-body")):
        response = await client.request(method, url, content=body, headers={"Content-Type": "application/json"})
        assert reason in check_error(response, 422, "invalid_json")
    check_error(await client.get("/v1/items/bad-body"), 404, "not_found")  # and nothing was written


async def test_nesting_up_to_the_limit_is_stored(client: httpx.AsyncClient) -> None:
    body = nested(MAX_DEPTH).encode()
    response = await client.post("/v1/items", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201 and response.json()["data"]["a"]["a"]["a"] is not None


@pytest.mark.parametrize(
    ("method", "content_type"),
    [
        ("POST", None),
        ("POST", "text/plain"),
        ("POST", "application/merge-patch+json"),  # a patch is no item
        ("PUT", "application/x-www-form-urlencoded"),
        ("PATCH", "application/json-patch+json"),  # RFC 6902 is another format
    ],
)
async def test_other_content_types_are_415(client: httpx.AsyncClient, method: str, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.request(
        method, "/v1/items" if method == "POST" else "/v1/items/ct", content=b"{}", headers=headers
    )
    assert "application/json" in check_error(response, 415, "unsupported_media_type")


async def test_patch_takes_merge_patch_and_plain_json(client: httpx.AsyncClient) -> None:
    item = (await client.post("/v1/items", json={"a": 1, "b": 2})).json()
    url = f"/v1/items/{item['id']}"
    merge = await client.patch(url, content=b'{"a": null}', headers={"Content-Type": "application/merge-patch+json"})
    plain = await client.patch(url, json={"c": 3})
    assert (merge.status_code, merge.json()["data"], merge.headers["ETag"]) == (200, {"b": 2}, '"2"')
    assert (plain.status_code, plain.json()["data"], plain.headers["ETag"]) == (200, {"b": 2, "c": 3}, '"3"')


async def test_a_body_at_the_limit_is_stored_one_byte_more_is_413(client: httpx.AsyncClient) -> None:
    def body(size: int) -> bytes:
        return b'{"blob": "' + b"x" * (size - 12) + b'"}'

    assert len(body(LIMIT)) == LIMIT
    at_limit = await client.post("/v1/items", content=body(LIMIT), headers={"Content-Type": "application/json"})
    assert at_limit.status_code == 201 and len(at_limit.json()["data"]["blob"]) == LIMIT - 12
    over = await client.post("/v1/items", content=body(LIMIT + 1), headers={"Content-Type": "application/json"})
    assert str(LIMIT) in check_error(over, 413, "payload_too_large")


async def test_a_chunked_body_cannot_exceed_the_limit(client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the server has to count
        nonlocal sent
        yield b'{"blob": "'
        for _ in range(64):
            sent += 4096
            yield b"x" * 4096
        yield b'"}'

    response = await client.post("/v1/items", content=chunks(), headers={"Content-Type": "application/json"})
    check_error(response, 413, "payload_too_large")


async def test_a_declared_length_over_the_limit_is_refused_before_reading(base_url: str) -> None:
    # A raw request that announces 10 MB and sends nothing: the answer must not wait for the body.
    url = httpx.URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"POST /v1/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("item_id", ["has space", "dot.ted", "x" * 129, "ünïcode", "idem%23key"])
async def test_ids_outside_the_safe_charset_are_422(client: httpx.AsyncClient, item_id: str) -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = await client.request(method, f"/v1/items/{item_id}", json={})
        assert "item_id" in check_error(response, 422, "invalid_request")


async def test_the_longest_id_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.put(f"/v1/items/{'x' * 128}", json={})
    assert response.status_code in (200, 201) and response.json()["id"] == "x" * 128


@pytest.mark.parametrize("if_match", ['W/"1"', '"abc"', '"1", "2"', "1"])
async def test_if_match_values_that_name_no_version_are_412(client: httpx.AsyncClient, if_match: str) -> None:
    item = (await client.post("/v1/items", json={"a": 1})).json()
    response = await client.put(f"/v1/items/{item['id']}", json={"a": 2}, headers={"If-Match": if_match})
    check_error(response, 412, "precondition_failed")
    assert (await client.get(f"/v1/items/{item['id']}")).json() == item


@pytest.mark.parametrize("key", ["has space", "x" * 256, "tab\tinside"])
async def test_idempotency_keys_must_be_printable_ascii(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post("/v1/items", json={}, headers={"Idempotency-Key": key})
    assert "Idempotency-Key" in check_error(response, 422, "invalid_request")


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=ten", "cursor=" + "x" * 257])
async def test_list_queries_out_of_range_are_422(client: httpx.AsyncClient, query: str) -> None:
    check_error(await client.get(f"/v1/items?{query}"), 422, "invalid_request")


async def test_an_invalid_cursor_is_422(client: httpx.AsyncClient) -> None:
    check_error(await client.get("/v1/items?cursor=bm90IGFuIGlkIQ"), 422, "invalid_cursor")  # "not an id!"


async def test_openapi_documents_the_bodies_the_answers_and_the_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    items, item = spec["paths"]["/v1/items"], spec["paths"]["/v1/items/{item_id}"]
    create_body = items["post"]["requestBody"]
    assert create_body["required"] is True
    assert create_body["content"]["application/json"]["schema"]["type"] == "object"
    assert set(item["patch"]["requestBody"]["content"]) == {"application/merge-patch+json", "application/json"}
    created = items["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Item"}
    assert {"ETag"} <= set(created["headers"]) and created["links"]["GetItem"]["operationId"] == "get_item"
    assert items["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ItemPage"
    }
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for operation, statuses in (
        (item["get"], ("404", "422", "503")),
        (item["put"], ("412", "413", "415", "422", "503")),
        (item["patch"], ("404", "409", "412", "413", "415", "422", "503")),
        (item["delete"], ("404", "412", "422", "503")),
        (items["post"], ("413", "415", "422", "503")),
    ):
        for status in statuses:
            assert operation["responses"][status]["content"]["application/json"]["schema"] == error
    parameters = {p["name"]: p for p in item["put"]["parameters"]}
    assert parameters["item_id"]["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,128}$"
    assert parameters["If-Match"]["in"] == "header"
    schemas = spec["components"]["schemas"]
    assert set(schemas["Item"]["required"]) == {"id", "version", "created_at", "updated_at", "data"}
    assert schemas["ItemPage"]["properties"]["next_cursor"]["anyOf"] == [{"type": "string"}, {"type": "null"}]


@pytest.fixture(params=["sqlite-not-a-database", "dynamodb-closed-port"])
def broken_url(request: pytest.FixtureRequest, servers: dict[str, str]) -> str:
    return servers[request.param]


async def test_a_store_that_is_down_answers_503_with_retry_after(broken_url: str) -> None:
    async with httpx.AsyncClient(base_url=broken_url, timeout=30) as client:
        for method, url, body in (
            ("GET", "/v1/items/abc", None),
            ("GET", "/v1/items", None),
            ("POST", "/v1/items", {"a": 1}),
            ("PUT", "/v1/items/abc", {"a": 1}),
            ("PATCH", "/v1/items/abc", {"a": 1}),
            ("DELETE", "/v1/items/abc", None),
        ):
            response = await client.request(method, url, json=body)
            message = check_error(response, 503, "store_unavailable")
            assert response.headers["Retry-After"] == "1"
            assert "sqlite" not in message and "127.0.0.1" not in message  # no internals to clients
        # Validation still answers first, without the store.
        check_error(await client.post("/v1/items", json=[1]), 422, "invalid_json")
