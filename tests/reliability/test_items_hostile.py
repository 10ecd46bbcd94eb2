"""Hostile but small requests against a real gateway process (``python -m gateway``, no Triton behind it): text
that has no UTF-8 form, ETags that only look like ours, a JSON body built to make the depth check backtrack, a
path that tries to forge access-log lines, a client that leaves mid-upload, slow, idle and oversized request
heads, and a listing of large items. Each answers in the project's error shape, or is closed, never a 5xx."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from gateway.items.document import InvalidDocument, nesting_depth, parse_object
from gateway.items.store import MAX_PAGE_BYTES
from gateway.settings import Settings
from tests.support.figures import hold, record
from tests.support.goals import closed_at_its_timeout
from tests.support.items_support import check_error
from tests.support.metrics import metric_samples
from tests.support.stack import Gateway
from tests.support.waiting import wait_until

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def front(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory()


def raw_exchange(gateway: Gateway, request: bytes, *, timeout_s: float = 10) -> bytes:
    """Sends ``request`` as is and reads until the server closes (or ``timeout_s``)."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout_s) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def send_until_answered(gateway: Gateway, request: bytes, piece: int = 16 * 1024) -> bytes:
    """Sends ``request`` a piece at a time, letting the server read each, until it answers; what it answered.
    (Sent at once, the server would close with unread bytes queued, and the reset could drop its answer.)"""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        for start in range(0, len(request), piece):
            sock.sendall(request[start : start + piece])
            if select.select([sock], [], [], 0.02)[0]:
                break
        return b"".join(iter(lambda: sock.recv(65536), b""))


@pytest.mark.parametrize("text", ['"\\ud800"', '"\\udfff tail"', '"a\\ud83d"', '{"\\udc00": 1}'])
def test_a_lone_surrogate_is_422_not_500(front: Gateway, text: str) -> None:
    body = f'{{"name": {text}}}'.encode()
    for method, url in (("POST", "/v1/items"), ("PUT", "/v1/items/surrogate"), ("PATCH", "/v1/items/surrogate")):
        response = httpx.request(method, front.url + url, content=body, headers={"Content-Type": "application/json"})
        assert "lone surrogate" in check_error(response, 422, "invalid_json")
    paired = httpx.put(f"{front.url}/v1/items/paired", content=b'{"name": "\\ud83d\\ude00"}',
                       headers={"Content-Type": "application/json"})  # fmt: skip
    assert paired.status_code in (200, 201) and paired.json()["data"] == {"name": "\U0001f600"}
    assert "Traceback" not in front.log()


@pytest.mark.parametrize("if_match", ['"02"', '"2 "', '"+2"', 'W/"2"', '"2", "3"', '*, "2"'])
def test_if_match_compares_strongly(front: Gateway, if_match: str) -> None:
    url = f"{front.url}/v1/items/etag-{abs(hash(if_match))}"
    httpx.put(url, json={"v": 1})
    assert httpx.put(url, json={"v": 2}).headers["ETag"] == '"2"'
    check_error(httpx.put(url, json={"v": 3}, headers={"If-Match": if_match}), 412, "precondition_failed")
    check_error(httpx.delete(url, headers={"If-Match": if_match}), 412, "precondition_failed")
    assert httpx.put(url, json={"v": 3}, headers={"If-Match": '"2"'}).headers["ETag"] == '"3"'
    assert httpx.put(url, json={"v": 4}, headers={"If-Match": "*"}).headers["ETag"] == '"4"'


def test_if_match_star_needs_the_item_to_exist(front: Gateway) -> None:
    url = f"{front.url}/v1/items/never-made"
    check_error(httpx.put(url, json={}, headers={"If-Match": "*"}), 412, "precondition_failed")
    check_error(httpx.get(url), 404, "not_found")


def test_the_depth_check_is_linear_on_bodies_built_to_backtrack() -> None:
    """The old check took 16.8 s on 64 KiB of escaped quotes (quadratic: about 70 min for this 1 MiB); run in a
    daemon thread so a regression fails here instead of hanging the suite."""
    bodies = {
        "escaped quotes": '["' + '\\"' * 512 * 1024,
        "escaped quotes, dangling backslash": '["' + '\\"' * 512 * 1024 + "\\",
        "quotes": '"' * 1024 * 1024,
        "open brackets": "[" * 1024 * 1024,
    }
    took: dict[str, float] = {}

    def scan() -> None:
        for name, text in bodies.items():
            started = time.perf_counter()
            nesting_depth(text)
            took[name] = time.perf_counter() - started

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    worker.join(timeout=30)  # generous: each scan takes milliseconds
    assert set(took) == set(bodies), f"the depth check has not finished after 30 s: {took}"
    record("depth check, 1 MiB adversarial bodies, slowest", max(took.values()) * 1000, unit="ms")
    with pytest.raises(InvalidDocument, match="not valid JSON"):
        parse_object(bodies["escaped quotes"].encode())
    assert nesting_depth('{"a": "[[[\\"]]]", "b": [[{}]]}') == 4


def test_the_escaped_quote_body_is_422_and_the_gateway_keeps_answering(front: Gateway) -> None:
    body = b'["' + b'\\"' * (32 * 1024 - 1)  # the default 64 KiB item limit, all but 2 bytes escaped quotes
    response = httpx.post(f"{front.url}/v1/items", content=body, headers={"Content-Type": "application/json"})
    check_error(response, 422, "invalid_json")
    assert httpx.get(f"{front.url}/healthz").status_code == 200


def test_the_access_log_writes_the_raw_path_and_escapes_the_rest(front: Gateway) -> None:
    forged = "2099-01-01 00:00:00,000 INFO gateway.access [forged] GET /admin 200 0.1 ms"
    target = "/v1/items/x%0A" + forged.replace(" ", "%20") + "%0D%0A%09%7F"
    answer = raw_exchange(front, f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith((b"HTTP/1.1 404", b"HTTP/1.1 422", b"HTTP/1.1 400"))
    wait_until(lambda: "%0A2099" in front.log(), "the access-log line")  # written after the answer
    lines = front.log().splitlines()
    assert not any(line.startswith("2099") or "[forged]" in line.split("gateway.access")[0] for line in lines)
    logged = [line for line in lines if "%0A2099" in line]
    assert len(logged) == 1 and "\n" not in logged[0], logged


def _counted(gateway: Gateway, method: str, route: str) -> dict[str, float]:
    """The gateway's request count of a route, by status."""
    samples = metric_samples(httpx.get(f"{gateway.url}/metrics").text)
    return {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "gateway_requests_total" and ("method", method) in labels and ("route", route) in labels
    }


def _inflight_elsewhere(gateway: Gateway) -> float:
    """Requests the gateway is serving on routes other than the image ones, this scrape excluded."""
    samples = metric_samples(httpx.get(f"{gateway.url}/metrics").text)
    return samples["gateway_inflight_requests", (("route", "other"),)] - 1


def test_a_client_that_leaves_mid_upload_is_counted_as_499_not_500(front: Gateway) -> None:
    head = b"PUT /v1/items/half HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    route = "/v1/items/{item_id}"
    before = _counted(front, "PUT", route).get("499", 0)
    for left in range(1, 4):
        with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
            sock.sendall(head + b'{"a": "' + b"x" * 400)
            wait_until(lambda: _inflight_elsewhere(front) == 1, "the gateway reading the body")  # then leave
        wait_until(lambda n=before + left: _counted(front, "PUT", route).get("499", 0) == n, f"{left} 499s counted")
    statuses = _counted(front, "PUT", route)
    assert not any(status.startswith("5") for status in statuses), statuses
    assert "PUT /v1/items/half 500" not in front.log() and "Traceback" not in front.log()
    check_error(httpx.get(f"{front.url}/v1/items/half"), 404, "not_found")  # nothing was written


def test_idle_and_slow_head_connections_are_closed(front: Gateway) -> None:
    def closed_after(trickle: bytes) -> tuple[bytes, float]:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", front.port), timeout=30) as sock:
            sock.settimeout(0.5)
            for byte in trickle:
                try:
                    sock.sendall(bytes([byte]))
                    answer = sock.recv(65536)
                    return answer, time.monotonic() - started
                except TimeoutError:
                    continue  # still open, keep trickling
                except (BrokenPipeError, ConnectionResetError):
                    return b"", time.monotonic() - started
            sock.settimeout(30)
            return sock.recv(65536), time.monotonic() - started

    results: dict[str, tuple[bytes, float]] = {}
    idle = threading.Thread(target=lambda: results.__setitem__("idle", closed_after(b"")))
    slow = threading.Thread(target=lambda: results.__setitem__("slow", closed_after(b"GET /healthz HTTP/1.1\r\n" * 9)))
    for worker in (idle, slow):
        worker.start()
    for worker in (idle, slow):
        worker.join(timeout=60)
    assert set(results) == {"idle", "slow"}
    for answer, _ in results.values():
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
    # Closed at the head timeout, never before it.
    timeout_s = Settings().head_timeout_s
    closed = closed_at_its_timeout(timeout_s)
    for name, (_, seconds) in results.items():
        assert seconds >= timeout_s - 0.1, (name, seconds)  # 0.1: the clocks of two processes
        hold(f"{name} connection closed after (head timeout {timeout_s:g} s)", seconds, closed)
    assert httpx.get(f"{front.url}/healthz").status_code == 200


def test_an_oversized_request_head_is_431_and_normal_heads_pass(front: Gateway) -> None:
    padding = "x" * 8000
    # Counted per read after parsing, a head is refused once it passes the cap plus one read (256 KiB).
    headers = "".join(f"X-Pad-{n}: {padding}\r\n" for n in range((Settings().max_head_bytes + 512 * 1024) // 8000))
    answer = send_until_answered(front, f"GET /healthz HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 431")
    assert b'"code": "request_header_fields_too_large"' in answer
    many = "".join(f"X-N-{n}: 1\r\n" for n in range(500))
    answer = send_until_answered(front, f"GET /healthz HTTP/1.1\r\nHost: t\r\n{many}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 400")
    assert httpx.get(f"{front.url}/healthz", headers={"X-Pad": padding}).status_code == 200


def test_a_page_of_large_items_stops_at_the_byte_budget(front: Gateway) -> None:
    pad = "y" * 60_000
    ids = [f"large-{n:03d}" for n in range(2 * MAX_PAGE_BYTES // 60_000 + 3)]
    with httpx.Client(base_url=front.url) as client:
        for item_id in ids:
            assert client.put(f"/v1/items/{item_id}", json={"pad": pad}).status_code in (200, 201)
        seen: list[str] = []
        sizes: list[int] = []
        cursor = None
        while True:
            response = client.get("/v1/items", params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
            assert response.status_code == 200
            sizes.append(len(response.content))
            page = response.json()
            seen.extend(item["id"] for item in page["items"] if item["id"].startswith("large-"))
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
    assert seen == ids
    assert len(sizes) >= 3 and max(sizes) < MAX_PAGE_BYTES + 2 * 64 * 1024
    record("GET /v1/items?limit=1000 over 60 KB items, largest page", round(max(sizes) / 1024), unit="KiB")
