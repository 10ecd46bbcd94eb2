"""``tritonserve`` end to end: the real CLI process against a real gateway and Triton, on real photographs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from launcher.triton import TritonServer
from servables import names
from tests.support.stack import ROOT, Gateway

TOP_K = 3


def tritonserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.fixture
def photo_folder(tmp_path: Path, photos: dict[str, np.ndarray]) -> Path:
    """The fixture photos as JPEG files, some in a subfolder (folders are walked recursively)."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, (name, image) in enumerate(photos.items()):
        target = folder / "more" if i % 2 else folder
        assert cv2.imwrite(str(target / f"{name}.jpg"), image)
    return folder


def rest_answer(gateway: Gateway, path: Path, top_k: int = TOP_K) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway.url}/v1/classify",
        params={"top_k": top_k},
        content=path.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_same_predictions(got: list[dict[str, Any]], expected: list[dict[str, Any]], tolerance: float) -> None:
    assert [p["index"] for p in got] == [p["index"] for p in expected]
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine["probability"] == pytest.approx(theirs["probability"], abs=tolerance)


def test_classify_a_folder_gives_the_rest_api_answers(gateway: Gateway, photo_folder: Path) -> None:
    run = tritonserve("classify", str(photo_folder), "--url", gateway.url, "--format", "json", "--top-k", str(TOP_K))
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    files = sorted(photo_folder.rglob("*.jpg"))
    assert sorted(Path(r["path"]) for r in results) == files and len(files) == 6
    for result in results:
        assert result["ok"] and result["error"] is None and result["attempts"] == 1
        expected = rest_answer(gateway, Path(result["path"]))
        assert result["image"] == expected["image"]
        assert_same_predictions(result["predictions"], expected["predictions"], tolerance=1e-5)


def test_glob_to_csv_file_and_table(gateway: Gateway, photo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    pattern = str(photo_folder / "*.jpg")  # the top folder only, not more/
    run = tritonserve("classify", pattern, "--url", gateway.url, "--format", "csv", "--output", str(out), "-q")
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(out.read_text().splitlines()))
    top_level = sorted(photo_folder.glob("*.jpg"))
    assert len(top_level) == 3 and len(rows) == 3 * 5  # default top-k 5
    for path in top_level:
        mine = [r for r in rows if Path(r["path"]) == path]
        expected = rest_answer(gateway, path, top_k=5)["predictions"]
        assert [int(r["rank"]) for r in mine] == [1, 2, 3, 4, 5]
        assert [r["label"] for r in mine] == [p["label"] for p in expected]

    table = tritonserve("classify", str(top_level[0]), "--url", gateway.url)
    assert table.returncode == 0, table.stderr
    top1 = rest_answer(gateway, top_level[0])["predictions"][0]
    assert str(top_level[0]) in table.stdout and top1["label"] in table.stdout


def test_bad_files_fail_alone(gateway: Gateway, photo_folder: Path) -> None:
    (photo_folder / "broken.jpg").write_bytes(b"this is not an image")
    jpeg = (photo_folder / "astronaut.jpg").read_bytes()
    (photo_folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    missing = str(photo_folder / "missing.jpg")
    run = tritonserve("classify", str(photo_folder), missing, "--url", gateway.url, "--format", "json")
    assert run.returncode == 1
    results = {Path(r["path"]).name: r for r in json.loads(run.stdout)}
    assert len(results) == 9
    broken, truncated = results.pop("broken.jpg"), results.pop("truncated.jpg")
    assert not broken["ok"] and broken["error"]["status"] == 415 and "predictions" not in broken
    assert not truncated["ok"] and truncated["error"]["status"] == 422
    assert results.pop("missing.jpg")["error"]["code"] == "not_found"
    assert all(r["ok"] and len(r["predictions"]) == 5 for r in results.values())  # the default top-k
    assert "broken.jpg" in run.stderr and "truncated.jpg" in run.stderr and "missing.jpg" in run.stderr


def test_429_is_retried_after_retry_after(
    gateway_factory: Callable[..., Gateway], triton: TritonServer, photo_folder: Path
) -> None:
    """One request in flight at a time: the others are refused with 429 + Retry-After, and retried until done."""
    narrow = gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_MAX_INFLIGHT="1")
    args = ("classify", str(photo_folder), "--url", narrow.url, "--format", "json", "--concurrency", "6")

    without = tritonserve(*args, "--retries", "0")
    refused = [r for r in json.loads(without.stdout) if not r["ok"]]
    assert without.returncode == 1 and refused
    assert {r["error"]["status"] for r in refused} == {429}

    run = tritonserve(*args, "--retries", "20")
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert all(r["ok"] for r in results) and len(results) == 6
    assert sum(r["attempts"] for r in results) > len(results)


def test_edges_writes_a_png_beside_each_image(gateway: Gateway, photo_folder: Path) -> None:
    run = tritonserve("edges", str(photo_folder), "--url", gateway.url, "--low", "50", "--high", "150")
    assert run.returncode == 0, run.stderr
    sources = sorted(photo_folder.rglob("*.jpg"))
    written = [Path(line) for line in run.stdout.splitlines()]
    assert sorted(written) == sorted(p.with_name(p.stem + ".edges.png") for p in sources)
    for source in sources:
        edge_file = source.with_name(source.stem + ".edges.png")
        edge_map = cv2.imread(str(edge_file), cv2.IMREAD_UNCHANGED)
        assert edge_map.shape == cv2.imread(str(source)).shape[:2]
        assert set(np.unique(edge_map)) <= {0, 255} and edge_map.any()
        response = httpx.post(
            f"{gateway.url}/v1/edges",
            params={"low": 50, "high": 150},
            content=source.read_bytes(),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert response.status_code == 200
        assert np.array_equal(cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED), edge_map)

    again = tritonserve("edges", str(photo_folder), "--url", gateway.url, "-q")
    assert sorted(Path(line) for line in again.stdout.splitlines()) == sorted(written)  # its own output skipped


def test_grpc_sends_the_file_bytes_to_triton(gateway: Gateway, triton: TritonServer, photo_folder: Path) -> None:
    metadata = grpcclient.InferenceServerClient(triton.grpc_url).get_model_metadata(names.CLASSIFY, as_json=True)
    [image] = [tensor for tensor in metadata["inputs"] if tensor["name"] == names.IMAGE]
    assert image["shape"] == ["-1", "-1"], f"{names.CLASSIFY!r} must take the file's bytes [1, nbytes] for --grpc"
    grpc = ("--grpc", "--triton-url", triton.grpc_url, "--top-k", str(TOP_K))
    run = tritonserve("classify", str(photo_folder), *grpc, "--format", "json")
    assert run.returncode == 0, run.stderr
    for result in json.loads(run.stdout):
        assert result["ok"] and result["model"] == names.CLASSIFY
        expected = rest_answer(gateway, Path(result["path"]))
        # The same bytes to the same ensemble (the gateway forwards them as they came): the same answer, up to
        # the float rounding of the batch each request happened to share.
        assert_same_predictions(result["predictions"], expected["predictions"], tolerance=1e-5)
