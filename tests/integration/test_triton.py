"""A real tritonserver, started by the launcher, serving the exported repository over gRPC."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import cv2
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
from servables import default, names
from servables.repository import write_configs
from servables.specs import Batching, PreprocessSpec
from tests.support.figures import FIGURES, Beside
from tests.support.stack import TEST_MODEL, TEST_WEIGHTS


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


def _stats(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_dynamic_batching_groups_concurrent_requests(triton: TritonServer, photos: dict[str, np.ndarray]) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    images = list(photos.values())
    before = _stats(client, TEST_MODEL)
    expected = [client.infer(names.CLASSIFY_PIXELS, [image_input(img)]).as_numpy("PROBABILITIES")[0] for img in images]

    async def burst(count: int) -> list[np.ndarray]:
        async with aioclient.InferenceServerClient(triton.grpc_url) as aio:

            async def one(i: int) -> np.ndarray:
                tensor = aioclient.InferInput("IMAGE", [1, *images[i % len(images)].shape], "UINT8")
                tensor.set_data_from_numpy(images[i % len(images)][None])
                # A queue timeout of our own (allow_timeout_override): a loaded 2-core machine may need > 5 s.
                answer = await aio.infer(names.CLASSIFY_PIXELS, [tensor], timeout=60_000_000)
                return answer.as_numpy("PROBABILITIES")[0]

            return await asyncio.gather(*(one(i) for i in range(count)))

    requests = 64
    answers = asyncio.run(burst(requests))
    sent = requests + len(images)  # the burst plus the one-by-one answers above (one execution each)
    deadline = time.monotonic() + 10
    while (counts := _stats(client, TEST_MODEL))[0] - before[0] < sent and time.monotonic() < deadline:
        time.sleep(0.05)  # Triton records statistics just after it answers
    inferences, executions = (a - b for a, b in zip(counts, before, strict=True))
    executions -= len(images)
    print(f"\n{requests} concurrent requests -> {executions} {TEST_MODEL} executions")
    assert inferences == sent
    assert executions < requests
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer, expected[i % len(images)], atol=1e-5)


SMALL_QUEUE = Batching(max_batch_size=4, max_queue_size=8)


@pytest.fixture(scope="module")
def small_queue_triton(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """The same ResNet with a queue of 8 and batches of 4, so a burst overflows it deterministically."""
    repository = tmp_path_factory.mktemp("small-queue")
    config = default.classifier(TEST_MODEL, PreprocessSpec()).network_config(SMALL_QUEUE)
    write_configs(repository, {TEST_MODEL: config})
    for name in ("1/model.onnx", "labels.txt"):
        (repository / TEST_MODEL / name).symlink_to(test_repository / TEST_MODEL / name)
    with TritonServer(repository, Ports(*free_ports(3)), exit_timeout_s=5) as server:
        yield server


async def _send_zeros(url: str, timeouts_us: list[int | None]) -> list[object]:
    """One request per entry, all at once; each answer is a result or Triton's error."""
    tensor = np.zeros((1, 3, 224, 224), np.float32)
    async with aioclient.InferenceServerClient(url) as aio:

        async def one(timeout_us: int | None) -> object:
            request = aioclient.InferInput("INPUT", list(tensor.shape), "FP32")
            request.set_data_from_numpy(tensor)
            try:
                return await aio.infer(TEST_MODEL, [request], timeout=timeout_us)
            except InferenceServerException as exc:
                return exc

        return await asyncio.wait_for(asyncio.gather(*(one(t) for t in timeouts_us)), timeout=60)


def test_requests_beyond_the_queue_bound_are_rejected_not_hung(small_queue_triton: TritonServer) -> None:
    burst = 64
    results = asyncio.run(_send_zeros(small_queue_triton.grpc_url, [None] * burst))
    errors = [r.message() for r in results if isinstance(r, InferenceServerException)]
    served = burst - len(errors)
    bound = SMALL_QUEUE.max_queue_size
    print(f"\nburst of {burst}, queue bound {bound}: {served} served, {len(errors)} rejected")
    assert errors and all("Exceeds maximum queue size" in message for message in errors)
    assert served >= SMALL_QUEUE.max_queue_size  # what fitted in the queue was served


def test_a_request_that_waits_past_its_queue_timeout_is_rejected(small_queue_triton: TritonServer) -> None:
    """allow_timeout_override: a client may shorten its queue timeout; Triton rejects, not serves late."""
    results = asyncio.run(_send_zeros(small_queue_triton.grpc_url, [None] * 4 + [1000] * 4))
    late = [r.message() for r in results[4:] if isinstance(r, InferenceServerException)]
    assert all(not isinstance(r, InferenceServerException) for r in results[:4])
    assert late and all("timeout" in message.lower() for message in late)


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


def _encoded_input(data: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(names.IMAGE, [1, len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, np.uint8)[None])
    return tensor


@pytest.mark.reliability
def test_hostile_files_sent_straight_to_triton_are_refused_and_it_keeps_serving(
    triton: TritonServer, photos: dict[str, np.ndarray]
) -> None:
    """gRPC clients bypass the gateway: the decode step enforces the same rules and answers INVALID_ARGUMENT, while
    a normal photo sent to the classify ensemble beside each file is answered."""
    from imaging import ImageError
    from tests.support.hostile import corpus, unusual_but_valid

    client = grpcclient.InferenceServerClient(triton.grpc_url)
    files = {
        case.name: case.kwargs["content"]
        for case in corpus(photos["coffee"], max_body_bytes=10 * 1024 * 1024)
        if case.path in ("/v1/classify", "/v1/edges")  # the image rules, not the query or content-type ones
        and case.status in (413, 415, 422)
        and isinstance(case.kwargs.get("content"), bytes)
        and case.kwargs["headers"].get("content-type", "").startswith(("image/", "application/octet-stream"))
        and len(case.kwargs["headers"].get("content-type", "")) < 100
    }
    assert len(files) >= 20
    photo = cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()
    other_client = grpcclient.InferenceServerClient(triton.grpc_url)

    def normal() -> str:
        try:
            other_client.infer(names.CLASSIFY, [_encoded_input(photo)], client_timeout=30)
        except InferenceServerException as exc:
            return str(exc.status())
        return "OK"

    refusals = {}
    with Beside(normal) as beside:
        for name, data in files.items():
            for model in (names.CLASSIFY, names.EDGES):
                with pytest.raises(InferenceServerException) as refused:
                    beside.send(f"{name} ({model})", partial(client.infer, model, [_encoded_input(data)],
                                                               client_timeout=60))  # fmt: skip
                assert "INVALID_ARGUMENT" in str(refused.value.status()), (name, model, refused.value)
                problem = ImageError.from_message(refused.value.message())
                assert problem is not None, (name, model, refused.value.message())
                refusals[name] = problem.problem.value
    print("\nrefused straight by Triton:", refusals)
    FIGURES["normal photo beside each hostile file straight to Triton (goal: within 2 s)"] = str(beside)
    assert set(beside.outcomes) == {"OK"} and beside.worst_s < 30, beside  # a bound that catches a hang, no timing
    assert triton.process is not None and triton.process.poll() is None
    for name, (data, _) in unusual_but_valid(photos["chelsea"]).items():  # and odd but valid files still pass
        answer = client.infer(names.CLASSIFY, [_encoded_input(data)]).as_numpy(names.PROBABILITIES)[0]
        assert abs(float(answer.sum()) - 1.0) < 1e-4, name
