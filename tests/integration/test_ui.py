"""The page at ``/`` and the API docs, in a real headless Chromium (Debian's) against a real gateway and Triton.

Playwright drives the system browser (``make test`` installs ``chromium``); it never downloads one of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from launcher.triton import TritonServer
from tests.support.stack import Gateway

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "k1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does it too)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context per test (its own localStorage), sized like a laptop screen."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def keyed(gateway_factory: Callable[..., Gateway], triton: TritonServer, gateway: Gateway) -> Gateway:
    """A gateway that wants an API key, and lets pages from the open gateway's origin call it (CORS)."""
    return gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_API_KEYS=KEY, GATEWAY_CORS_ORIGINS=gateway.url)


@pytest.fixture()
def photo(photos: dict[str, np.ndarray], tmp_path: Path) -> Path:
    path = tmp_path / "chelsea.jpg"
    assert cv2.imwrite(str(path), photos["chelsea"])
    return path


def record_requests(page: Page) -> list[Request]:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    return requests


def external(requests: list[Request]) -> list[str]:
    """Every URL the browser tried to fetch from off this machine; data: and blob: URLs never leave it, and a
    request the page's Content-Security-Policy blocked was never sent."""
    parts = [(request, urlsplit(request.url)) for request in requests if request.failure != "csp"]
    return [r.url for r, part in parts if part.scheme not in ("data", "blob") and part.hostname != "127.0.0.1"]


def classify_via_api(gateway: Gateway, photo: Path, **headers: str) -> dict:
    response = httpx.post(
        f"{gateway.url}/v1/classify?top_k=5",
        content=photo.read_bytes(),
        headers={"content-type": "image/jpeg", **headers},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def edge_image_size(page: Page) -> tuple[int, int]:
    """The decoded size of the edge map the page shows, once it has loaded."""
    edges = page.locator("#edges")
    expect(edges).to_have_attribute("src", re.compile(r"^blob:"))
    width, height = edges.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
    return width, height


def test_page_shows_the_apis_top_k_and_the_edge_map(page: Page, gateway: Gateway, photo: Path) -> None:
    expected = classify_via_api(gateway, photo)
    requests = record_requests(page)
    page.goto(f"{gateway.url}/")
    expect(page.locator("#readiness-text")).to_have_text("ready")

    page.set_input_files("#file", photo)

    rows = page.locator("#predictions li")
    expect(rows).to_have_count(5)
    assert rows.locator(".label").all_inner_texts() == [p["label"] for p in expected["predictions"]]
    shown = [float(text.rstrip("%")) for text in rows.locator(".probability").all_inner_texts()]
    assert shown == pytest.approx([p["probability"] * 100 for p in expected["predictions"]], abs=0.051)
    height, width = cv2.imread(str(photo)).shape[:2]
    assert edge_image_size(page) == (width, height)  # the edge map is the photo's size
    expect(page.locator("#model")).to_have_text(expected["model"])
    expect(page.locator("#model-version")).to_have_text(expected["model_version"])
    expect(page.locator("#weights")).to_have_text(expected.get("weights", "not reported"))
    expect(page.locator("#photo-info")).to_have_text(f"{width}×{height} JPEG")
    expect(page.locator("#classify-latency")).to_have_text(re.compile(r"^classify [\d.]+ ms$"))
    expect(page.locator("#edges-latency")).to_have_text(re.compile(r"^edges [\d.]+ ms$"))
    expect(page.locator("#error")).to_be_hidden()
    assert external(requests) == []
    urls = [request.url for request in requests]
    assert f"{gateway.url}/v1/classify?top_k=5" in urls and f"{gateway.url}/v1/edges" in urls


def test_page_shows_api_errors_readably(page: Page, gateway: Gateway, tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("a shopping list, not a PNG")
    answer = httpx.post(
        f"{gateway.url}/v1/edges", content=not_an_image.read_bytes(), headers={"content-type": "image/png"}
    )
    assert answer.status_code == 415
    error = answer.json()["error"]
    page.goto(f"{gateway.url}/")

    page.set_input_files("#file", not_an_image)

    errors = page.locator("#error p")
    expect(errors).to_have_count(2)  # classify and edges each say why, in the API's words
    expect(errors.first).to_have_text(f"Classify failed with 415 {error['code']}: {error['message'].rstrip('.')}.")
    expect(errors.last).to_have_text(f"Edges failed with 415 {error['code']}: {error['message'].rstrip('.')}.")
    expect(page.locator("#predictions li")).to_have_count(0)
    # Only the errors: no broken image of the file, no empty (black) edge panel.
    expect(page.locator("#result")).to_be_hidden()


def test_page_sends_the_api_key_it_keeps(page: Page, keyed: Gateway, photo: Path) -> None:
    expected = classify_via_api(keyed, photo, authorization=f"Bearer {KEY}")
    sent: list[str | None] = []

    def keep_authorization(request: Request) -> None:
        if "/v1/classify" in request.url or "/v1/edges" in request.url:
            sent.append(request.headers.get("authorization"))

    page.on("request", keep_authorization)
    page.goto(f"{keyed.url}/")

    page.set_input_files("#file", photo)
    expect(page.locator("#error p").first).to_contain_text("401 unauthorized: a valid API key is required")
    expect(page.locator("#api-key")).to_be_focused()  # the key field opens itself on a 401

    page.fill("#api-key", KEY)
    page.reload()  # the key survives: localStorage
    expect(page.locator("#api-key")).to_have_value(KEY)
    page.set_input_files("#file", photo)

    expect(page.locator("#predictions li .label").first).to_have_text(expected["predictions"][0]["label"])
    assert edge_image_size(page)[0] > 0
    expect(page.locator("#error")).to_be_hidden()
    assert sent == [None, None, f"Bearer {KEY}", f"Bearer {KEY}"]


def test_cors_lets_only_the_configured_origin_call_from_a_browser(page: Page, gateway: Gateway, keyed: Gateway) -> None:
    call = """async ([url, key]) => {
        try {
            const response = await fetch(url, {headers: {Authorization: `Bearer ${key}`}});
            return response.status;
        } catch (error) {
            return String(error);
        }
    }"""
    # From /healthz, not /: the page's own Content-Security-Policy would stop the call before CORS is asked.
    page.goto(f"{gateway.url}/healthz")  # the origin the keyed gateway allows
    assert page.evaluate(call, [f"{keyed.url}/v1/items", KEY]) == 200
    page.goto(f"{keyed.url}/healthz")  # the open gateway sets no CORS: the browser refuses to hand over the answer
    assert page.evaluate(call, [f"{gateway.url}/v1/items", KEY]) == "TypeError: Failed to fetch"


def test_docs_render_offline_and_send_a_key(page: Page, keyed: Gateway) -> None:
    requests = record_requests(page)
    page.goto(f"{keyed.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("tritonserve gateway")

    # Swagger UI's "Authorize": the bearer scheme's key, then a real call that needs it.
    page.click("button.authorize")
    page.fill("#auth-bearer-value", KEY)
    page.locator(".auth-container").filter(has=page.locator("#auth-bearer-value")).locator("button.authorize").click()
    page.locator(".auth-container button.btn-done").first.click()
    page.locator("#operations-items-list_items .opblock-summary").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")

    page.goto(f"{keyed.url}/redoc")
    expect(page.locator(".api-info h1")).to_contain_text("tritonserve gateway")
    assert external(requests) == []
    assert f"{keyed.url}/docs/assets/swagger-ui-bundle.js" in [request.url for request in requests]


def test_openapi_declares_both_key_schemes_on_v1_routes_only(gateway: Gateway, keyed: Gateway) -> None:
    open_spec = httpx.get(f"{gateway.url}/openapi.json").json()
    assert not any(op.get("security") for ops in open_spec["paths"].values() for op in ops.values())  # no keys set
    spec = httpx.get(f"{keyed.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {name: {k: v for k, v in scheme.items() if k != "description"} for name, scheme in schemes.items()} == {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    either: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    operations = {(method, path): op for path, ops in spec["paths"].items() for method, op in ops.items()}
    for (method, path), operation in operations.items():
        assert operation.get("security") == (either if path.startswith("/v1/") else None), (method, path)
    assert not {"/", "/docs", "/redoc"} & set(spec["paths"])  # the page and the docs are not API
