"""Triton's response cache, where the local runtime puts it (the networks: their version is in the key): a repeated
photo is answered without running the network, hits show in Triton's metrics, and no version ever answers from
another version's entries, whether a new one is loaded or the old one brought back."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from launcher.triton import TritonServer
from servables import names
from tests.support.stack import TEST_MODEL, running_triton

CACHE_BYTES = 16 << 20


@pytest.fixture(scope="module")
def repository(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the test repository that a new version can be exported into."""
    copy = tmp_path_factory.mktemp("cache") / "repository"
    shutil.copytree(test_repository, copy)
    return copy


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with running_triton(repository, tmp_path_factory, response_cache_bytes=CACHE_BYTES) as triton:
        yield triton


def _encoded(photo: np.ndarray) -> grpcclient.InferInput:
    data = np.frombuffer(cv2.imencode(".jpg", photo)[1].tobytes(), np.uint8)[np.newaxis]
    tensor = grpcclient.InferInput(names.IMAGE, list(data.shape), "UINT8")
    tensor.set_data_from_numpy(data)
    return tensor


def _classify(client: grpcclient.InferenceServerClient, photo: np.ndarray) -> np.ndarray:
    return client.infer(names.CLASSIFY, [_encoded(photo)]).as_numpy(names.PROBABILITIES)[0]


def _network(client: grpcclient.InferenceServerClient, photo: np.ndarray, version: str) -> np.ndarray:
    """The network alone, at ``version``, on the photo decoded and preprocessed by the served models."""
    pixels = client.infer(names.DECODE_REDUCED, [_encoded(photo)]).as_numpy(names.PIXELS)
    image = grpcclient.InferInput(names.IMAGE, list(pixels.shape), "UINT8")
    image.set_data_from_numpy(pixels)
    preprocessed = client.infer(names.PREPROCESS, [image]).as_numpy(names.INPUT)
    tensor = grpcclient.InferInput(names.INPUT, list(preprocessed.shape), "FP32")
    tensor.set_data_from_numpy(preprocessed)
    return client.infer(TEST_MODEL, [tensor], model_version=version).as_numpy(names.PROBABILITIES)[0]


def _counters(server: TritonServer) -> dict[tuple[str, str], float]:
    """(hits|misses, version) -> Triton's cache counter for the network."""
    text = httpx.get(server.metrics_url, timeout=10).text
    pattern = rf'^nv_cache_num_(hits|misses)_per_model{{model="{TEST_MODEL}",version="(\d+)"}} (\S+)$'
    return {(kind, version): float(value) for kind, version, value in re.findall(pattern, text, re.MULTILINE)}


def _executions(client: grpcclient.InferenceServerClient) -> int:
    stats = client.get_inference_statistics(TEST_MODEL, as_json=True)["model_stats"]
    return sum(int(entry.get("inference_count", 0)) for entry in stats)


def test_the_network_uses_the_cache_and_nothing_else_does(server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    cached = {
        entry["name"]
        for entry in client.get_model_repository_index(as_json=True)["models"]
        if client.get_model_config(entry["name"]).config.response_cache.enable
    }
    assert cached == {TEST_MODEL}  # not the ensembles: their key would not change with the network's version
    # The key ignores which outputs were asked: the network serves only what the ensembles read of it.
    outputs = [tensor.name for tensor in client.get_model_config(TEST_MODEL).config.output]
    assert outputs == [names.PROBABILITIES, names.MODEL_ID]


def test_an_output_no_entry_holds_is_refused_not_left_out(server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput(names.INPUT, [1, 3, 224, 224], "FP32")
    tensor.set_data_from_numpy(np.full((1, 3, 224, 224), 0.5, np.float32))
    client.infer(TEST_MODEL, [tensor], outputs=[grpcclient.InferRequestedOutput(names.PROBABILITIES)])  # cached
    with pytest.raises(InferenceServerException, match=names.LOGITS):
        client.infer(TEST_MODEL, [tensor], outputs=[grpcclient.InferRequestedOutput(names.LOGITS)])


def test_a_repeated_photo_is_answered_from_the_cache(server: TritonServer, photos: dict[str, np.ndarray]) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    photo = photos["astronaut"]
    first = _classify(client, photo)
    before, ran = _counters(server), _executions(client)
    again = _classify(client, photo)
    after = _counters(server)
    np.testing.assert_array_equal(again, first)
    assert after[("hits", "1")] == before[("hits", "1")] + 1
    assert after[("misses", "1")] == before[("misses", "1")]
    assert _executions(client) == ran  # the network did not run


def test_no_version_answers_from_another_versions_entries(
    repository: Path, server: TritonServer, photos: dict[str, np.ndarray], second_version: Path
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    photo = photos["coffee"]
    old = _classify(client, photo)
    np.testing.assert_array_equal(_classify(client, photo), old)  # cached under version 1
    # Other weights as version 2, loaded beside version 1: the ensemble now runs version 2.
    shutil.copytree(second_version, repository / TEST_MODEL / "2")
    server.refresh_repository()
    client.load_model(TEST_MODEL)
    before = _counters(server)
    new = _classify(client, photo)
    assert not np.allclose(new, old, atol=1e-4)  # version 2's own answer, not version 1's entry
    np.testing.assert_allclose(new, _network(client, photo, "2"), atol=1e-6)
    after = _counters(server)
    assert after[("misses", "2")] >= before.get(("misses", "2"), 0) + 1
    # Version 1 pinned still answers its own (from its entry), and brought back it is what the ensemble answers.
    np.testing.assert_allclose(_network(client, photo, "1"), old, atol=1e-6)
    config = client.get_model_config(TEST_MODEL, as_json=True)["config"]
    config["version_policy"] = {"specific": {"versions": [1]}}
    client.load_model(TEST_MODEL, config=json.dumps(config))
    np.testing.assert_array_equal(_classify(client, photo), old)
    assert not np.allclose(_classify(client, photo), new, atol=1e-4)


def test_the_dashboard_shows_the_hits() -> None:
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboard.json").read_text())
    queries = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    assert "nv_cache_num_hits_per_model" in queries and "nv_cache_num_misses_per_model" in queries
