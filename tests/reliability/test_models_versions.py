"""A new ResNet version goes live without a restart and without a failed request: put it beside the served one (as
``python -m export --version 2`` writes it: exported once for the session, tests/conftest.py), load it through the
gateway's admin route, pin requests to each version, drop the old one, all under load; every answer names the
version and weights that produced it, and its classes are that version's."""

from __future__ import annotations

import json
import shutil
import statistics
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from launcher.triton import TritonServer
from servables import default, names
from servables import repository as repo
from servables.specs import Batching, PreprocessSpec
from tests.support.figures import record
from tests.support.stack import TEST_MODEL, Gateway, running_triton

CLIENTS = 4
SEED_0, SEED_1 = (f"seed:{n} (random init: predictions are meaningless)" for n in (0, 1))


@pytest.fixture(scope="module")
def repository(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the test repository, configs regenerated from today's code (version policy, warmup)."""
    copy = tmp_path_factory.mktemp("versions") / "repository"
    shutil.copytree(test_repository, copy)
    model_configs = default.model_configs(TEST_MODEL, PreprocessSpec(), Batching())
    repo.write_configs(copy, model_configs)
    repo.write_python_models(copy, model_configs)
    return copy


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(repository, tmp_path_factory, exit_timeout_s=10) as triton:
        yield triton


@dataclass
class Load:
    """Clients classifying back to back until stopped; every answer's status and latency kept, and what it says
    ran: the version, the weights and the classes."""

    url: str
    body: bytes
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[int, float, str]] = field(default_factory=list)
    claims: list[tuple[str, str, str]] = field(default_factory=list)  # version, weights, predictions (as JSON)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                response = client.post(f"{self.url}/v1/classify", content=self.body,
                                       headers={"content-type": "image/jpeg"})  # fmt: skip
                answer = response.json() if response.status_code == 200 else {}
                version = answer.get("model_version", "")
                with self.lock:
                    self.answers.append((response.status_code, response.elapsed.total_seconds(), version))
                    if answer:
                        claim = version, answer["weights"], json.dumps(answer["predictions"])
                        self.claims.append(claim)


def _ready_versions(gateway: Gateway, model: str) -> list[str]:
    listed = httpx.get(f"{gateway.url}/v1/models", timeout=10).json()["models"]
    [entry] = [m for m in listed if m["name"] == model]
    return [v["version"] for v in entry["versions"] if v["state"] == "READY"]


def _classify(gateway: Gateway, body: bytes, version: str = "") -> httpx.Response:
    params = {"model_version": version} if version else {}
    return httpx.post(f"{gateway.url}/v1/classify", content=body, params=params,
                      headers={"content-type": "image/jpeg"}, timeout=60)  # fmt: skip


@pytest.mark.reliability
def test_version_swap_under_load(
    repository: Path,
    server: TritonServer,
    gateway_factory: Callable[..., Gateway],
    photos: dict[str, np.ndarray],
    second_version: Path,
) -> None:
    gateway = gateway_factory(GATEWAY_TRITON_URL=server.grpc_url)
    body = cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()
    assert _ready_versions(gateway, TEST_MODEL) == ["1"]
    before = _classify(gateway, body, "1").json()
    assert (before["model"], before["model_version"], before["weights"]) == (names.CLASSIFY, "1", SEED_0)

    load = Load(gateway.url, body)
    clients = [threading.Thread(target=load.run) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        # Other weights, so the two versions' answers differ: proof of which one ran.
        shutil.copytree(second_version, repository / TEST_MODEL / "2")
        assert [f"{p.parent.name}/{p.name}" for p in server.refresh_repository()] == [f"{TEST_MODEL}/2"]
        loaded = httpx.post(f"{gateway.url}/v1/admin/models/{TEST_MODEL}/load", timeout=180)
        assert loaded.status_code == 200, loaded.text
        assert [v["version"] for v in loaded.json()["versions"] if v["state"] == "READY"] == ["1", "2"]

        one, two = _classify(gateway, body, "1").json(), _classify(gateway, body, "2").json()
        latest = _classify(gateway, body).json()
        assert (one["model_version"], two["model_version"], latest["model_version"]) == ("1", "2", "2")
        assert (one["weights"], two["weights"], latest["weights"]) == (SEED_0, SEED_1, SEED_1)
        assert one["predictions"] == before["predictions"]  # version 1 is still the same network
        assert two["predictions"] != one["predictions"]
        assert latest["predictions"] == two["predictions"]  # the ensemble follows the latest version

        dropped = httpx.post(f"{gateway.url}/v1/admin/models/{TEST_MODEL}/unload", json={"versions": [1]},
                             timeout=180)  # fmt: skip
        assert dropped.status_code == 200, dropped.text
        assert _ready_versions(gateway, TEST_MODEL) == ["2"]
        gone = _classify(gateway, body, "1")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_version_not_found"
        assert "retry-after" not in gone.headers  # not served is not coming back by itself
        assert _classify(gateway, body).json()["predictions"] == two["predictions"]
    finally:
        load.stop.set()
        for client in clients:
            client.join()

    statuses = [status for status, _, _ in load.answers]
    latencies = sorted(seconds for _, seconds, _ in load.answers)
    failures = sum(status != 200 for status in statuses)
    by_version = {
        v: sum(1 for *_, version in load.answers if version == v) for v in sorted({a[2] for a in load.answers})
    }
    p50, p99 = statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))]
    record("version swap: failed requests", failures, unit=f"of {len(statuses)} under load",
           detail=f"p50 / p99 latency {p50:.3f} / {p99:.3f} s; unpinned answers by version {by_version}")  # fmt: skip
    assert failures == 0, sorted(set(statuses))
    assert len(statuses) > CLIENTS
    # Every answer under the swap says what produced it, truly: each version's weights, and that version's classes.
    ran = {"1": (SEED_0, json.dumps(one["predictions"])), "2": (SEED_1, json.dumps(two["predictions"]))}
    assert {version for version, *_ in load.claims} == {"1", "2"}
    assert all((weights, predictions) == ran[version] for version, weights, predictions in load.claims)
