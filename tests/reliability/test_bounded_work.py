"""Bounded work per request on the image path, against the real gateway (and Triton behind it): crafted files
cost a bounded walk, slow bodies are cut off, and a batch cannot take more pixels than the budget."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable

import cv2
import httpx
import numpy as np
import pytest

from imaging import ImageError, Limits, Problem, read_header, structure
from imaging.decode import decodable
from launcher.triton import TritonServer
from tests.support.figures import PeakRss, hold, hold_rss, record, rss_mib
from tests.support.goals import HEALTHZ_UNDER_LOAD, LOOP_STALL_BOUND_S, LOOP_STALLS_OVER_100_MS
from tests.support.hostile import abusive_structure, png_bomb
from tests.support.metrics import metric_samples
from tests.support.probe import Probe
from tests.support.stack import Gateway

pytestmark = pytest.mark.reliability
MAX_BODY = 10 * 1024 * 1024
JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def abusive(photos: dict[str, np.ndarray]) -> list[tuple[str, bytes, str, int]]:
    return abusive_structure(photos["coffee"], MAX_BODY - (64 << 10))


def test_header_walks_stop_at_their_caps(abusive: list[tuple[str, bytes, str, int]]) -> None:
    """Work is counted, not timed: each file is refused by the walk's cap, or by a rule Pillow reads at once."""
    refused = {}
    for name, data, *_ in abusive:
        try:
            read_header(data, Limits())
        except ImageError as exc:
            refused[name] = exc.problem
    assert refused["jpeg: 10 MB of empty APP1 segments"] is Problem.TOO_COMPLEX
    assert refused["jpeg: 10 MB of fill bytes"] is Problem.TOO_COMPLEX
    assert refused["png: 10 MB of empty chunks before the image data"] is Problem.TOO_COMPLEX
    assert refused["tiff: 65,535 entries in the first directory"] is Problem.TOO_COMPLEX
    assert refused["tiff: 500,000 chained directories"] is Problem.ANIMATED  # from the first directory's link
    assert refused["gif: 10 MB of comment blocks"] is Problem.UNSUPPORTED  # GIF's plugin never runs
    # Only the decode step's walk (the whole file) sees these; the header's stops at the first scan or data chunk.
    assert {"progressive jpeg with 3,000 scans", "png: 10 MB of empty chunks after the image data"} <= (
        {name for name, *_ in abusive} - set(refused)
    )


def test_decode_walks_refuse_scans_and_chunks_and_drop_text(abusive: list[tuple[str, bytes, str, int]]) -> None:
    files = {name: data for name, data, *_ in abusive}
    progressive = files["progressive jpeg with 3,000 scans"]
    header = read_header(progressive, Limits())
    with pytest.raises(ImageError, match=f"over {structure.MAX_JPEG_SCANS} scans"):
        decodable(progressive, header)
    after = files["png: 10 MB of empty chunks after the image data"]
    with pytest.raises(ImageError, match=f"over {structure.MAX_PNG_CHUNKS} chunks"):
        structure.png_chunks(after, up_to_image_data=False)
    assert len(structure.png_chunks(after, up_to_image_data=True)) == 2  # IHDR, IDAT: the header's walk stops


def _healthz_worst_ms(url: str, uploads: list[tuple[bytes, str]], copies: int) -> tuple[float, Counter[int]]:
    """The slowest /healthz answer, probed from another process, while ``copies`` of each upload are in flight."""

    async def scenario() -> Counter[int]:
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=64)) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/classify", content=data, headers={"content-type": kind})
                  for data, kind in uploads for _ in range(copies))
            )  # fmt: skip
            return Counter(r.status_code for r in answers)

    with Probe(f"{url}/healthz") as probe:
        statuses = asyncio.run(scenario())
    return probe.worst_ms, statuses


def _loop_lags_over(url: str, seconds: float) -> float:
    """How many of the gateway's event-loop lag samples were over ``seconds`` (its own histogram)."""
    samples = metric_samples(httpx.get(f"{url}/metrics").text)
    return (
        samples["gateway_event_loop_lag_seconds_count", ()]
        - samples["gateway_event_loop_lag_seconds_bucket", (("le", str(seconds)),)]
    )


def test_healthz_answers_while_abusive_files_are_in_flight(
    gateway: Gateway, abusive: list[tuple[str, bytes, str, int]], photos: dict[str, np.ndarray]
) -> None:
    uploads = [(data, kind) for _, data, kind, _ in abusive]
    before = {seconds: _loop_lags_over(gateway.url, seconds) for seconds in (0.1, LOOP_STALL_BOUND_S)}
    worst_ms, statuses = _healthz_worst_ms(gateway.url, uploads, copies=3)
    stalls = {seconds: _loop_lags_over(gateway.url, seconds) - count for seconds, count in before.items()}
    assert set(statuses) <= {413, 415, 422}, statuses  # every one refused, none a 5xx
    hold(f"/healthz worst during 3 x each of {len(uploads)} abusive files", worst_ms, HEALTHZ_UNDER_LOAD,
         detail=f"statuses {dict(statuses)}")  # fmt: skip
    record("event-loop stalls over 100 ms during them", int(stalls[0.1]), LOOP_STALLS_OVER_100_MS,
           detail="the gateway's own lag histogram")  # fmt: skip
    assert stalls[LOOP_STALL_BOUND_S] == 0, f"the gateway's event loop stalled over {LOOP_STALL_BOUND_S:g} s"
    photo = cv2.imencode(".jpg", photos["coffee"])[1].tobytes()
    assert httpx.post(f"{gateway.url}/v1/classify", content=photo, headers=JPEG, timeout=60).status_code == 200


def test_healthz_answers_while_twelve_12_mp_photos_are_classified(
    gateway: Gateway, photos: dict[str, np.ndarray]
) -> None:
    """Valid, large and all admitted at the defaults: each upload crosses the event loop on its way to Triton."""
    big = cv2.resize(photos["coffee"], (4000, 3000), interpolation=cv2.INTER_CUBIC)
    grain = np.random.default_rng(0).integers(0, 40, big.shape, dtype=np.uint8)  # a sensor's noise: 8-9 MB
    photo = cv2.imencode(".jpg", cv2.add(big, grain), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    worst_ms, statuses = _healthz_worst_ms(gateway.url, [(photo, "image/jpeg")], copies=12)
    assert statuses == Counter({200: 12})
    hold("/healthz worst during 12 x a 12 MP photo", worst_ms, HEALTHZ_UNDER_LOAD,
         detail=f"{len(photo) / 1e6:.1f} MB each, all classified")  # fmt: skip


def _trickler(port: int) -> socket.socket:
    """A client that declares a 1 MB JPEG and sends its head and a single body byte."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1048576\r\n\r\n"
    )
    sock.sendall(b"\xff")
    return sock


def test_tricklers_are_cut_off_and_real_users_keep_getting_200(
    gateway_factory: Callable[..., Gateway], triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    front = gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_BODY_GRACE_S="1")
    tricklers = [_trickler(front.port) for _ in range(50)]
    photo = cv2.imencode(".jpg", photos["coffee"])[1].tobytes()
    try:
        users = Counter(
            httpx.post(f"{front.url}/v1/classify", content=photo, headers=JPEG, timeout=60).status_code
            for _ in range(20)
        )
        answers = []
        for sock in tricklers:
            sock.settimeout(30)
            answers.append(sock.recv(4096).split(b"\r\n", 1)[0].decode("latin-1"))
    finally:
        for sock in tricklers:
            sock.close()
    record("50 tricklers, 20 users beside them", dict(Counter(answers)), detail=f"users {dict(users)}")
    assert users == Counter({200: 20})
    assert set(answers) == {"HTTP/1.1 408 Request Timeout"}, Counter(answers)


def test_a_batch_over_the_pixel_budget_is_refused_without_memory_growth(gateway: Gateway) -> None:
    """32 small PNGs declaring 8000x5000 each (1.28 G pixels, 3.8 GB decoded): refused from the headers."""
    bomb = png_bomb(8000, 5000)
    files = [("files", (f"{i}.png", bomb, "image/png")) for i in range(32)]
    assert gateway.process is not None
    before = rss_mib(gateway.process.pid)
    with PeakRss(gateway.process.pid) as peak:
        answers = [httpx.post(f"{gateway.url}/v1/classify/batch", files=files, timeout=60) for _ in range(5)]
    grown = rss_mib(gateway.process.pid) - before
    record("32 x 8000x5000 PNG batch, gateway RSS growth", round(grown, 1), unit="MiB",
           detail=f"over 5 tries, answered {answers[0].status_code}")  # fmt: skip
    hold_rss("32 x 8000x5000 PNG batch gateway RSS", gateway.url, peak)
    assert {a.status_code for a in answers} == {413}
    assert answers[0].json()["error"]["code"] == "image_too_large"
    assert "32 images total 1,280,000,000 pixels" in answers[0].json()["error"]["message"]
    assert grown < 32
