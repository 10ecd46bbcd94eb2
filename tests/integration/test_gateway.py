"""The gateway as a real uvicorn process in front of a real Triton, over HTTP."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import cv2
import httpx
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from PIL import Image

from export.network import Classifier, load_backbone
from export.preprocess import reference_preprocess
from launcher.triton import TritonServer
from servables import names
from tests.support.gate import GATED_BATCHING, GatedTriton
from tests.support.stack import ROOT, TEST_MODEL, TEST_WEIGHTS, Gateway
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def eager() -> Classifier:
    return Classifier(load_backbone(TEST_MODEL, TEST_WEIGHTS))


def encode(image_bgr: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, image_bgr)
    assert ok
    return data.tobytes()


def expected_top5(model: Classifier, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """What eager PyTorch says about these bytes, decoded at full size and cv2-preprocessed: Triton's decode step
    reads a large JPEG at a reduced scale, which moves probabilities by a few thousandths, not the ranking."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    with torch.no_grad():
        probabilities = model(torch.from_numpy(reference_preprocess(image)[None]))[1][0].numpy()
    return probabilities, np.argsort(-probabilities)[:5]


def assert_matches_eager(answer: dict, probabilities: np.ndarray, top5: np.ndarray) -> None:
    predictions = answer["predictions"]
    assert len(predictions) == 5
    for prediction, want in zip(predictions, top5, strict=True):
        assert abs(prediction["probability"] - probabilities[prediction["index"]]) <= 2e-3
        if prediction["index"] != want:
            assert abs(probabilities[prediction["index"]] - probabilities[want]) <= 1e-3
    scores = [p["probability"] for p in predictions]
    assert scores == sorted(scores, reverse=True)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


def rgba_png(image_bgr: np.ndarray) -> bytes:
    rgba = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 200
    return encode(rgba, ".png")


@pytest.fixture(scope="module")
def uploads(photos: dict[str, np.ndarray]) -> dict[str, tuple[bytes, str]]:
    """Real photographs as clients send them: JPEG and PNG, portrait and landscape, grayscale, RGBA."""
    gray = cv2.cvtColor(photos["camera_gray"], cv2.COLOR_BGR2GRAY)
    return {
        "coffee.jpg": (encode(photos["coffee"], ".jpg"), "image/jpeg"),
        "chelsea.png": (encode(photos["chelsea"], ".png"), "image/png"),
        "rocket_portrait.jpg": (encode(photos["rocket_portrait"], ".jpg"), "image/jpeg"),
        "astronaut.webp": (encode(photos["astronaut"], ".webp"), "image/webp"),
        "camera_gray.png": (encode(gray, ".png"), "image/png"),
        "hubble_rgba.png": (rgba_png(photos["hubble"]), "image/png"),
    }


def test_classify_raw_bodies_match_eager_pytorch(
    gateway: Gateway, uploads: dict[str, tuple[bytes, str]], eager: Classifier
) -> None:
    for name, (data, media_type) in uploads.items():
        response = httpx.post(f"{gateway.url}/v1/classify", content=data, headers={"content-type": media_type})
        assert response.status_code == 200, (name, response.text)
        answer = response.json()
        assert answer["model"] == "classify" and answer["model_version"] == "1"
        assert_matches_eager(answer, *expected_top5(eager, data))


def test_classify_multipart_upload_and_top_k(gateway: Gateway, uploads: dict[str, tuple[bytes, str]]) -> None:
    data, media_type = uploads["coffee.jpg"]
    raw = httpx.post(f"{gateway.url}/v1/classify", content=data, headers={"content-type": media_type}).json()
    multipart = httpx.post(
        f"{gateway.url}/v1/classify", params={"top_k": 20}, files={"file": ("coffee.jpg", data, media_type)}
    ).json()
    assert len(multipart["predictions"]) == 20
    assert multipart["predictions"][:5] == raw["predictions"]
    assert multipart["image"] == {"width": 600, "height": 400, "format": "JPEG"}
    one = httpx.post(f"{gateway.url}/v1/classify?top_k=1", content=data, headers={"content-type": media_type})
    assert one.json()["predictions"] == raw["predictions"][:1]


def test_probabilities_are_a_softmax_over_all_classes(gateway: Gateway, triton: TritonServer) -> None:
    """gRPC clients send the file's bytes as REST clients do, and get the REST route's probabilities."""
    image = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    png = encode(image, ".png")
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    tensor = grpcclient.InferInput(names.IMAGE, [1, len(png)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(png, np.uint8)[None])
    full = client.infer(names.CLASSIFY, [tensor]).as_numpy(names.PROBABILITIES)[0]
    assert abs(float(full.sum()) - 1.0) < 1e-4
    pixels = grpcclient.InferInput(names.IMAGE, [1, *image.shape], "UINT8")
    pixels.set_data_from_numpy(image[None])  # a lossless PNG: the pixel entry point sees the same image
    from_pixels = client.infer(names.CLASSIFY_PIXELS, [pixels]).as_numpy(names.PROBABILITIES)[0]
    np.testing.assert_allclose(full, from_pixels, atol=1e-6)
    answer = httpx.post(
        f"{gateway.url}/v1/classify?top_k=20", content=png, headers={"content-type": "image/png"}
    ).json()
    for prediction in answer["predictions"]:
        assert abs(prediction["probability"] - full[prediction["index"]]) < 1e-5


def test_exif_orientation_is_honoured(gateway: Gateway, photos: dict[str, np.ndarray]) -> None:
    landscape = photos["chelsea"]
    rotated = np.ascontiguousarray(np.rot90(landscape, k=-1))  # what a camera held sideways means
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    Image.fromarray(cv2.cvtColor(landscape, cv2.COLOR_BGR2RGB)).save(buffer, "JPEG", quality=95, exif=exif)
    tagged = httpx.post(
        f"{gateway.url}/v1/classify", content=buffer.getvalue(), headers={"content-type": "image/jpeg"}
    ).json()
    assert tagged["image"]["width"] == landscape.shape[0] and tagged["image"]["height"] == landscape.shape[1]
    upright = httpx.post(
        f"{gateway.url}/v1/classify", content=encode(rotated, ".png"), headers={"content-type": "image/png"}
    ).json()
    assert [p["index"] for p in tagged["predictions"][:3]] == [p["index"] for p in upright["predictions"][:3]]


def test_batch_answers_each_image_in_order(gateway: Gateway, uploads: dict[str, tuple[bytes, str]]) -> None:
    names = ["rocket_portrait.jpg", "coffee.jpg", "camera_gray.png", "coffee.jpg"]
    files = [("files", (name, *uploads[name])) for name in names]
    response = httpx.post(f"{gateway.url}/v1/classify/batch", files=files, timeout=60)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == names
    for name, result in zip(names, results, strict=True):
        data, media_type = uploads[name]
        single = httpx.post(f"{gateway.url}/v1/classify", content=data, headers={"content-type": media_type})
        assert result["predictions"] == single.json()["predictions"], name


def test_edges_route_png_and_json(gateway: Gateway, uploads: dict[str, tuple[bytes, str]]) -> None:
    data, media_type = uploads["rocket_portrait.jpg"]
    png = httpx.post(f"{gateway.url}/v1/edges", content=data, headers={"content-type": media_type})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    edges = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert edges.shape == (640, 427) and set(np.unique(edges)) <= {0, 255}
    summary = httpx.post(
        f"{gateway.url}/v1/edges", params={"format": "json", "low": 100, "high": 200},
        content=data, headers={"content-type": media_type},
    ).json()  # fmt: skip
    assert summary["edge_pixels"] == int(np.count_nonzero(edges)) > 0
    assert (summary["width"], summary["height"]) == (427, 640)
    looser = httpx.post(
        f"{gateway.url}/v1/edges", params={"format": "json", "low": 20, "high": 60},
        content=data, headers={"content-type": media_type},
    ).json()  # fmt: skip
    assert looser["edge_pixels"] > summary["edge_pixels"]  # lower thresholds keep more edges
    assert_error(
        httpx.post(f"{gateway.url}/v1/edges?low=300&high=100", content=data, headers={"content-type": media_type}),
        422,
    )


def _big_png(width: int, height: int) -> bytes:
    return encode(np.zeros((height, width, 3), np.uint8), ".png")


def _truncated_jpeg(uploads: dict[str, tuple[bytes, str]]) -> bytes:
    data = uploads["coffee.jpg"][0]
    return data[: len(data) // 2]


BAD_REQUESTS: list[tuple[str, Callable[[dict], dict], int, str]] = [
    ("empty body", lambda u: {"content": b"", "headers": {"content-type": "image/jpeg"}}, 422, "empty_image"),
    ("random bytes", lambda u: {"content": np.random.default_rng(0).bytes(5000),
                                "headers": {"content-type": "image/jpeg"}}, 415, "unsupported_image"),
    ("truncated jpeg", lambda u: {"content": _truncated_jpeg(u), "headers": {"content-type": "image/jpeg"}},
     422, "corrupt_image"),
    ("text content type", lambda u: {"content": b"hello", "headers": {"content-type": "text/plain"}},
     415, "unsupported_media_type"),
    ("no content type", lambda u: {"content": u["coffee.jpg"][0], "headers": {"content-type": ""}},
     415, "unsupported_media_type"),
    ("over the pixel limit", lambda u: {"content": _big_png(9000, 5000), "headers": {"content-type": "image/png"}},
     413, "image_too_large"),
    ("1x1 image", lambda u: {"content": _big_png(1, 1), "headers": {"content-type": "image/png"}},
     422, "image_too_small"),
    ("1000x10 image", lambda u: {"content": _big_png(1000, 10), "headers": {"content-type": "image/png"}},
     422, "bad_aspect_ratio"),
    ("multipart without a file", lambda u: {"data": {"note": "no file"}, "files": {"x": ("", b"", "text/plain")}},
     422, None),
    ("malformed multipart", lambda u: {"content": b"--zzz\r\nnot a part",
                                       "headers": {"content-type": "multipart/form-data; boundary=zzz"}}, 422, None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "request_args", "status", "code"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_json_4xx_and_the_gateway_keeps_serving(
    gateway: Gateway,
    uploads: dict[str, tuple[bytes, str]],
    case: str,
    request_args: Callable,
    status: int,
    code: str,
) -> None:
    response = httpx.post(f"{gateway.url}/v1/classify", **request_args(uploads), timeout=30)
    assert_error(response, status, code)
    data, media_type = uploads["coffee.jpg"]
    assert (
        httpx.post(f"{gateway.url}/v1/classify", content=data, headers={"content-type": media_type}).status_code == 200
    )


@pytest.mark.parametrize("top_k", ["0", "21", "five"])
def test_bad_top_k_is_a_422(gateway: Gateway, uploads: dict[str, tuple[bytes, str]], top_k: str) -> None:
    data, media_type = uploads["coffee.jpg"]
    response = httpx.post(
        f"{gateway.url}/v1/classify?top_k={top_k}", content=data, headers={"content-type": media_type}
    )
    assert "top_k" in assert_error(response, 422, "invalid_request")["message"]


def test_body_limit_is_enforced_while_streaming(
    gateway_factory: Callable[..., Gateway], triton: TritonServer, uploads: dict[str, tuple[bytes, str]]
) -> None:
    small = gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_MAX_BODY_BYTES="20000")
    data, media_type = uploads["coffee.jpg"]
    assert len(data) > 20000
    declared = httpx.post(f"{small.url}/v1/classify", content=data, headers={"content-type": media_type})
    assert_error(declared, 413, "payload_too_large")

    def chunked():  # no Content-Length: the limit must hold while the body streams in
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    streamed = httpx.post(f"{small.url}/v1/classify", content=chunked(), headers={"content-type": media_type})
    assert_error(streamed, 413, "payload_too_large")
    assert httpx.get(f"{small.url}/healthz").status_code == 200


def test_triton_unavailable_is_a_503_with_retry_after_and_crud_still_works(
    bare_gateway: Gateway, uploads: dict[str, tuple[bytes, str]]
) -> None:
    orphan = bare_gateway
    data, media_type = uploads["coffee.jpg"]
    response = httpx.post(f"{orphan.url}/v1/classify", content=data, headers={"content-type": media_type})
    assert_error(response, 503, "triton_unavailable")
    assert int(response.headers["retry-after"]) >= 1
    ready = httpx.get(f"{orphan.url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["components"]["triton"].startswith("unavailable")
    assert ready.json()["components"]["items"] == "ready"
    created = httpx.post(f"{orphan.url}/v1/items", json={"name": "still here"})
    assert created.status_code == 201
    assert httpx.get(f"{orphan.url}{created.headers['location']}").json()["data"] == {"name": "still here"}


def test_deadline_exceeded_is_a_504(
    gateway_factory: Callable[..., Gateway], triton: TritonServer, uploads: dict[str, tuple[bytes, str]]
) -> None:
    hasty = gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_CLASSIFY_TIMEOUT_S="0.001")
    data, media_type = uploads["coffee.jpg"]
    response = httpx.post(f"{hasty.url}/v1/classify", content=data, headers={"content-type": media_type})
    assert_error(response, 504, "deadline_exceeded")


def test_overload_answers_429_at_once(
    gateway_factory: Callable[..., Gateway], gated: GatedTriton, uploads: dict[str, tuple[bytes, str]]
) -> None:
    """Two requests in flight (waiting for the busy ResNet, held at its gate) fill a gateway allowed two: every
    request beside them is answered 429 at once, and the two are served once the ResNet is free."""
    narrow = gateway_factory(GATEWAY_TRITON_URL=gated.grpc_url, GATEWAY_MAX_INFLIGHT="2")
    data, media_type = uploads["hubble_rgba.png"]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=narrow.url, timeout=60) as client:
            posts = [client.post("/v1/classify", content=data, headers={"content-type": media_type}) for _ in range(12)]
            return await gated.behind_a_busy_resnet(posts[:1], posts[1:], answered=10)

    responses = asyncio.run(burst())
    assert Counter(r.status_code for r in responses) == Counter({200: 2, 429: 10})
    for response in responses:
        if response.status_code == 429:
            assert_error(response, 429, "overloaded")
            assert response.headers["retry-after"] == "1"


def test_concurrent_rest_requests_are_batched_by_triton(
    gateway_factory: Callable[..., Gateway], gated: GatedTriton, uploads: dict[str, tuple[bytes, str]]
) -> None:
    """REST requests reach Triton together: 16 queue behind the busy ResNet (held at its gate) and run in batches
    of its max_batch_size once it is free; every answer the same."""
    front = gateway_factory(GATEWAY_TRITON_URL=gated.grpc_url)
    data, media_type = uploads["coffee.jpg"]
    queued, before = GATED_BATCHING.max_queue_size, gated.stats(TEST_MODEL)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=front.url, timeout=120) as http:
            posts = [http.post("/v1/classify", content=data, headers={"content-type": media_type}) for _ in range(17)]
            return await gated.behind_a_busy_resnet(posts[:1], posts[1:])

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * (1 + queued)
    assert len({r.text for r in responses}) == 1  # every answer the same, and correct for this image
    wait_until(lambda: gated.stats(TEST_MODEL)["inferences"] - before["inferences"] == 1 + queued, "the statistics")
    assert gated.stats(TEST_MODEL)["executions"] - before["executions"] == 1 + queued // GATED_BATCHING.max_batch_size


def test_request_id_is_honoured_or_made(gateway: Gateway) -> None:
    made = httpx.get(f"{gateway.url}/healthz").headers["x-request-id"]
    assert len(made) == 32
    assert httpx.get(f"{gateway.url}/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert "abc-123" in gateway.log()
    hostile = httpx.get(f"{gateway.url}/healthz", headers={"x-request-id": "a b\tc"}).headers["x-request-id"]
    assert hostile != "a b\tc" and len(hostile) == 32


def test_health_readiness_and_metrics(gateway: Gateway, uploads: dict[str, tuple[bytes, str]]) -> None:
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["components"] == {
        "triton": "ready",
        "classify": "ready",
        "edges": "ready",
        "items": "ready",
    }
    data, media_type = uploads["coffee.jpg"]
    httpx.post(f"{gateway.url}/v1/classify", content=data, headers={"content-type": media_type})
    text = httpx.get(f"{gateway.url}/metrics").text
    assert 'gateway_requests_total{method="POST",route="/v1/classify",status="200"}' in text
    assert 'gateway_request_seconds_bucket{le="0.005",method="GET",route="/healthz",status="200"}' in text
    assert 'gateway_triton_call_seconds_count{model="classify",outcome="ok"}' in text
    assert "gateway_inflight_requests" in text


def test_openapi_documents_every_route(gateway: Gateway) -> None:
    spec = httpx.get(f"{gateway.url}/openapi.json").json()
    classify = spec["paths"]["/v1/classify"]["post"]
    assert {"multipart/form-data", "image/jpeg", "image/png"} <= set(classify["requestBody"]["content"])
    assert {"200", "413", "415", "422", "429", "503", "504"} <= set(classify["responses"])
    assert "ClassifyResponse" in spec["components"]["schemas"]
    assert {"/healthz", "/readyz", "/metrics", "/v1/classify/batch", "/v1/edges", "/v1/items"} <= set(spec["paths"])
    assert "swagger-ui" in httpx.get(f"{gateway.url}/docs").text


def test_grpc_example_gives_the_rest_answer(
    gateway: Gateway, triton: TritonServer, uploads: dict[str, tuple[bytes, str]], tmp_path
) -> None:
    data, media_type = uploads["rocket_portrait.jpg"]
    path = tmp_path / "rocket.jpg"
    path.write_bytes(data)
    script = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "grpc_classify.py"), str(path), "--url", triton.grpc_url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    import json

    rest = httpx.post(f"{gateway.url}/v1/classify", content=data, headers={"content-type": media_type}).json()
    assert json.loads(script.stdout) == rest["predictions"]
    pixels = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "grpc_classify.py"), str(path), "--url", triton.grpc_url, "--pixels"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    # Decoded at full resolution here and at 1/2 scale in Triton (1536 px on the short side): same classes.
    assert [p["index"] for p in json.loads(pixels.stdout)][:3] == [p["index"] for p in rest["predictions"]][:3]
