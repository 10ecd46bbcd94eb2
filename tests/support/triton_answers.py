"""Triton's error answers, as a real ``tritonserver`` gives them to the gateway's client: recorded once into
``triton_answers.json`` beside this file, so the in-process gateway tests map what Triton really says (status and
message) instead of strings written to match the mapper.

Recorded with (from the repository root, the test repository exported; about a minute)::

    .venv/bin/python -m tests.support.triton_answers

Each case provokes one answer through ``tritonclient.grpc.aio`` with the gateway's channel options, against the
test repository served behind gates (``tests/support/gate.py``) so that the busy cases are certain. Re-record when
Triton or tritonclient changes; tests/unit/test_gateway_inprocess.py says what the gateway answers to each.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import cv2
import numpy as np
import tritonclient.grpc.aio as aio
from tritonclient.utils import InferenceServerException

from gateway.inference import CHANNEL_ARGS
from launcher.process import free_ports, on_free_ports
from launcher.triton import Ports, TritonServer
from servables import names
from tests.support.gate import GATED_BATCHING, GatedTriton, gated_repository
from tests.support.hostile import png_bomb
from tests.support.photos import load_photos
from tests.support.stack import TEST_MODEL, TEST_REPOSITORY
from tests.support.tensors import infer_input
from tests.support.waiting import wait_until

RECORDED = Path(__file__).with_name("triton_answers.json")
Call = Callable[[], Awaitable[object]]


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def _encoded(data: bytes) -> list[aio.InferInput]:
    return [infer_input(names.IMAGE, np.frombuffer(data, np.uint8)[np.newaxis])]


def _deadline(seconds: float) -> dict[str, int]:
    return {names.DEADLINE_PARAMETER: time.time_ns() + int(seconds * 1e9)}


async def _answer(call: Call) -> dict[str, str]:
    try:
        await call()
    except InferenceServerException as exc:
        return {"status": str(exc.status()), "message": exc.message() or str(exc)}
    raise AssertionError("Triton answered without an error")


async def _record(gated: GatedTriton) -> dict[str, dict[str, str]]:
    photos = load_photos()
    photo = _jpeg(photos["coffee"])
    large = cv2.resize(photos["astronaut"], (4624, 3468), interpolation=cv2.INTER_CUBIC)
    client = aio.InferenceServerClient(gated.grpc_url, channel_args=CHANNEL_ARGS)
    unreachable = aio.InferenceServerClient(f"127.0.0.1:{free_ports(1)[0]}", channel_args=CHANNEL_ARGS)
    # A channel with gRPC's own 4 MB default in place of the gateway's limits (tritonclient lifts them).
    plain = aio.InferenceServerClient(gated.grpc_url, channel_args=[("grpc.max_receive_message_length", 4 << 20)])
    answers = {}

    def classify(data: bytes, **options: object) -> Call:
        return lambda: client.infer(names.CLASSIFY, _encoded(data), **options)

    answers["deadline exceeded"] = await _hold_resnet(gated, classify(photo, client_timeout=0.5, timeout=500_000))
    answers["triton unreachable"] = await _answer(
        lambda: unreachable.infer(names.CLASSIFY, _encoded(photo), client_timeout=5)
    )
    answers["unknown model"] = await _answer(lambda: client.infer("no_such_model", _encoded(photo)))
    answers["unknown model version"] = await _answer(classify(photo, model_version="9"))
    answers["queue full"] = await _queue_full(gated, classify(photo))
    answers["corrupt image"] = await _answer(classify(_jpeg(photos["chelsea"])[:3000]))
    answers["image too large"] = await _answer(classify(png_bomb(30000, 30000)))
    answers["wrong input shape"] = await _answer(
        lambda: client.infer(names.CLASSIFY, [infer_input(names.IMAGE, photos["coffee"][np.newaxis])])
    )
    answers["answer over the channel's message limit"] = await _answer(
        lambda: plain.infer(names.EDGES, _encoded(_jpeg(large)), client_timeout=60)
    )
    answers["run stopped past its deadline"] = await _canny_past_deadline(gated, client, large)
    answers["onnxruntime failed"] = await _answer(  # an empty image sent to the graph behind canny's pixel check
        lambda: client.infer(names.CANNY_GRAPH, [infer_input(names.IMAGE, np.zeros((1, 0, 0, 3), np.uint8))])
    )
    answers["model instance lost"] = await _stub_killed(gated, classify(photo, client_timeout=30))
    for each in (client, unreachable, plain):
        await each.close()
    return answers


async def _hold_resnet(gated: GatedTriton, call: Call) -> dict[str, str]:
    with gated.resnet.closed():
        return await _answer(call)


async def _queue_full(gated: GatedTriton, call: Call) -> dict[str, str]:
    """One request held, the queue filled behind it and one more: the one Triton refused."""

    async def outcome() -> dict[str, str] | None:
        try:
            await call()
        except InferenceServerException as exc:
            return {"status": str(exc.status()), "message": exc.message() or str(exc)}
        return None

    calls = [outcome() for _ in range(GATED_BATCHING.max_queue_size + 2)]
    [refused] = [answer for answer in await gated.behind_a_busy_resnet(calls[:1], calls[1:], answered=1) if answer]
    return refused


async def _canny_past_deadline(
    gated: GatedTriton, client: aio.InferenceServerClient, image: np.ndarray
) -> dict[str, str]:
    """A direct Canny call whose deadline parameter passes while it waits at Canny's gate (its slowest options make
    the run last long past the runner's first look)."""
    inputs = [
        infer_input(names.IMAGE, image[np.newaxis]),
        infer_input(names.APERTURE_SIZE, np.array([[7]], np.int32)),
        infer_input(names.L2_GRADIENT, np.array([[True]])),
    ]
    with gated.canny.closed():
        call = asyncio.ensure_future(_answer(lambda: client.infer(names.CANNY, inputs, parameters=_deadline(1))))
        await asyncio.to_thread(wait_until, lambda: gated.canny.held() == 1, "the Canny call at the gate")
        await asyncio.sleep(1.5)  # past the deadline the call carries
    return await call


async def _stub_killed(gated: GatedTriton, call: Call) -> dict[str, str]:
    """The ResNet's python-backend stub killed, as the launcher's supervision test does."""
    [stub] = [pid for pid in gated.server.stub_pids() if f"/{TEST_MODEL}/" in Path(f"/proc/{pid}/cmdline").read_text()]
    os.kill(stub, signal.SIGKILL)
    await asyncio.to_thread(wait_until, lambda: stub not in gated.server.stub_pids(), "the stub gone")
    return await _answer(call)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="triton-answers-"))
    repository = gated_repository(TEST_REPOSITORY, folder / "repository", folder / "gates")
    server = on_free_ports(3, lambda ports: TritonServer(repository, Ports(*ports), exit_timeout_s=5).start())
    try:
        answers = asyncio.run(_record(GatedTriton(server, folder / "gates")))
    finally:
        server.stop(timeout_s=10)
    RECORDED.write_text(json.dumps(answers, indent=2) + "\n")
    for case, answer in answers.items():
        print(f"{case}: {answer['status']}: {answer['message']}")


if __name__ == "__main__":
    main()
