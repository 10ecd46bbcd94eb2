"""A real tritonserver, started by the launcher, serving the exported repository over gRPC."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from export.network import Classifier, load_backbone
from export.preprocess import reference_preprocess
from launcher.process import free_ports
from launcher.triton import Ports, TritonError, TritonServer
from servables import names
from tests.support.gate import GATED_BATCHING, GatedTriton
from tests.support.stack import TEST_MODEL, TEST_WEIGHTS
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def eager() -> Classifier:
    return Classifier(load_backbone(TEST_MODEL, TEST_WEIGHTS))


def eager_probabilities(model: Classifier, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.array(inputs[None])))[1][0].numpy()


def image_input(image: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("IMAGE", [1, *image.shape], "UINT8")
    tensor.set_data_from_numpy(image[None])
    return tensor


def parse_top(result: grpcclient.InferResult) -> list[tuple[float, int, str]]:
    """Triton's classification extension answers ``score:index:label`` strings."""
    rows = []
    for entry in result.as_numpy("PROBABILITIES")[0]:
        score, index, label = entry.decode().split(":", 2)
        rows.append((float(score), int(index), label))
    return rows


def assert_same_top5(top: list[tuple[float, int, str]], probabilities: np.ndarray, atol: float) -> None:
    expected = np.argsort(-probabilities)[:5]
    for (score, index, _), want in zip(top, expected, strict=True):
        assert abs(score - probabilities[index]) <= atol, (index, score, probabilities[index])
        if index != want:  # a different class is only acceptable as a tie
            assert abs(probabilities[index] - probabilities[want]) <= 1e-3, (index, want)


def test_classify_matches_eager_pytorch_on_real_photographs(
    triton: TritonServer, photos: dict[str, np.ndarray], eager: Classifier
) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    labels = (triton.repository / "classify" / "labels.txt").read_text().splitlines()
    for name, image in photos.items():
        result = client.infer(
            names.CLASSIFY_PIXELS,
            [image_input(image)],
            outputs=[grpcclient.InferRequestedOutput("PROBABILITIES", class_count=5)],
        )
        top = parse_top(result)
        assert [label for _, index, label in top] == [labels[index] for _, index, _ in top]
        # Against eager PyTorch on OpenCV's preprocessing: the two resizes differ by < 1 uint8 level.
        assert_same_top5(top, eager_probabilities(eager, reference_preprocess(image)), atol=2e-3)
        # Against eager PyTorch on the ONNX preprocessing's own output: isolates the model path.
        pre = client.infer("preprocess", [image_input(image)]).as_numpy("INPUT")[0]
        full = client.infer(names.CLASSIFY_PIXELS, [image_input(image)]).as_numpy("PROBABILITIES")[0]
        np.testing.assert_allclose(full, eager_probabilities(eager, pre), atol=1e-4, err_msg=name)
        assert abs(float(full.sum()) - 1.0) < 1e-4


def test_dynamic_batching_groups_concurrent_requests(gated: GatedTriton, photos: dict[str, np.ndarray]) -> None:
    """While the ResNet is busy (held at its gate), concurrent requests queue; once it is free, it takes them in
    batches of its max_batch_size: 1 + 16 requests in 1 + 2 executions, each answer the one it gets alone."""
    client = grpcclient.InferenceServerClient(gated.grpc_url)
    images = list(photos.values())
    expected = [client.infer(names.CLASSIFY_PIXELS, [image_input(img)]).as_numpy("PROBABILITIES")[0] for img in images]
    queued, before = GATED_BATCHING.max_queue_size, gated.stats(TEST_MODEL)

    async def burst() -> list[np.ndarray]:
        async with aioclient.InferenceServerClient(gated.grpc_url) as aio:

            async def one(i: int) -> np.ndarray:
                tensor = aioclient.InferInput("IMAGE", [1, *images[i % len(images)].shape], "UINT8")
                tensor.set_data_from_numpy(images[i % len(images)][None])
                answer = await aio.infer(names.CLASSIFY_PIXELS, [tensor])
                return answer.as_numpy("PROBABILITIES")[0]

            return await gated.behind_a_busy_resnet(
                [one(0)],
                [one(i) for i in range(1, 1 + queued)],
            )

    answers = asyncio.run(burst())
    wait_until(lambda: gated.stats(TEST_MODEL)["inferences"] - before["inferences"] == 1 + queued, "the statistics")
    executions = gated.stats(TEST_MODEL)["executions"] - before["executions"]
    assert executions == 1 + queued // GATED_BATCHING.max_batch_size
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer, expected[i % len(images)], atol=1e-5)


async def _zeros_at_the_gate(gated: GatedTriton, timeouts_us: list[int | None], answered: int) -> list[object]:
    """A request held at the ResNet's gate, then one per entry of ``timeouts_us``
    (``GatedTriton.behind_a_busy_resnet``); each answer is a result or Triton's error."""
    tensor = np.zeros((1, 3, 224, 224), np.float32)
    async with aioclient.InferenceServerClient(gated.grpc_url) as aio:

        async def one(timeout_us: int | None) -> object:
            request = aioclient.InferInput("INPUT", list(tensor.shape), "FP32")
            request.set_data_from_numpy(tensor)
            try:
                return await aio.infer(TEST_MODEL, [request], timeout=timeout_us)
            except InferenceServerException as exc:
                return exc

        return await gated.behind_a_busy_resnet([one(None)], [one(timeout) for timeout in timeouts_us], answered)


def test_requests_beyond_the_queue_bound_are_rejected_not_hung(gated: GatedTriton) -> None:
    """The ResNet busy (held at its gate) and its queue full: every request past the bound is rejected at once."""
    queued, beyond = GATED_BATCHING.max_queue_size, 8
    results = asyncio.run(_zeros_at_the_gate(gated, [None] * (queued + beyond), answered=beyond))
    errors = [r.message() for r in results if isinstance(r, InferenceServerException)]
    assert len(errors) == beyond and all("Exceeds maximum queue size" in message for message in errors), errors
    assert len(results) - len(errors) == 1 + queued  # the held one and the queue, served once the ResNet is free


def test_a_request_that_waits_past_its_queue_timeout_is_rejected(gated: GatedTriton) -> None:
    """allow_timeout_override: a client may shorten its queue timeout; waiting behind the busy ResNet (held at its
    gate) past it, the request is rejected, not served late; those without one are served."""
    results = asyncio.run(_zeros_at_the_gate(gated, [None] * 4 + [1000] * 4, answered=4))
    late = [r.message() for r in results[5:] if isinstance(r, InferenceServerException)]
    assert all(not isinstance(r, InferenceServerException) for r in results[:5])
    assert len(late) == 4 and all("timeout" in message.lower() for message in late), late


def test_launcher_reports_a_taken_port_at_once(test_repository: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        http, metrics = free_ports(2)
        started = time.monotonic()
        with pytest.raises(TritonError, match=f"{taken}.*in use"):
            TritonServer(test_repository, Ports(http, taken, metrics)).start()
        assert time.monotonic() - started < 5


def test_launcher_reports_a_model_that_fails_to_load(tmp_path: Path, test_repository: Path) -> None:
    broken = tmp_path / "repository"
    (broken / "classify" / "1").mkdir(parents=True)
    config = (test_repository / "classify" / "config.pbtxt").read_text().replace("resnet18", "resnet_missing")
    (broken / "classify" / "config.pbtxt").write_text(config)
    server = TritonServer(broken, Ports(*free_ports(3)), startup_timeout_s=90)
    with pytest.raises(TritonError, match="exited with code") as error:
        server.start()
    assert "ensemble classify contains models that are not available" in str(error.value)  # the log says why


def test_launcher_asks_for_an_export_when_model_files_are_missing(tmp_path: Path, test_repository: Path) -> None:
    repository = tmp_path / "repository"
    (repository / "preprocess" / "1").mkdir(parents=True)
    (repository / "preprocess" / "config.pbtxt").write_text(
        (test_repository / "preprocess" / "config.pbtxt").read_text()
    )
    with pytest.raises(TritonError, match="python -m export"):
        TritonServer(repository, Ports(*free_ports(3))).start()
