"""A Triton whose ResNet and Canny wait at gates the test holds, so that a queue fills, a deadline passes or requests
pile up to be batched whatever the CPU: what a test sees no longer depends on how fast this machine computes.

``gated_repository`` builds it from the test repository: every model linked as exported, except the gated ones,
which run the project's own ONNX runner (``servables/python_models/onnx_runner.py``, the local runtime's stand-in
for Triton's onnxruntime backend) with a few lines appended: before each batch, while ``<gate>.closed`` exists, the
model instance writes how many requests it holds to ``<gate>.held.<instance>`` and waits. A test closes a gate, sees
requests arrive (``Gate.held``, and Triton's own pending count for the queue behind it), then opens it; an open gate
costs a file lookup per batch. A gate left closed opens by itself after ``GATE_TIMEOUT_S``, so no test can leave
Triton stuck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from launcher.triton import TritonServer
from servables import default, names
from servables.edges import canny_graph_config
from servables.repository import ONNX_FILE, PYTHON_FILE, VERSION, write_configs
from servables.runtime import ONNX_RUNNER
from servables.specs import Batching, PreprocessSpec
from tests.support.stack import TEST_MODEL, running_triton
from tests.support.waiting import wait_until

T = TypeVar("T")

# The gated ResNet batches 8 at most and queues 16: small enough to fill, large enough to show batching. Its queue
# timeout is long: requests wait at a closed gate for as long as the test needs, and the gateway sends its own.
GATED_BATCHING = Batching(max_batch_size=8, max_queue_size=16, queue_timeout_us=60_000_000)
GATE_TIMEOUT_S = 120
GATE_PARAMETER = "gate"

# Appended to the runner: the model Triton loads is the runner, waiting at the gate before each batch.
_GATED_RUNNER = f'''

_Runner = TritonPythonModel
GATE_TIMEOUT_S = {GATE_TIMEOUT_S}


class TritonPythonModel(_Runner):
    """The ONNX runner, holding each batch while its gate is closed (tests/support/gate.py)."""

    def initialize(self, args):
        super().initialize(args)
        gate = json.loads(args["model_config"])["parameters"]["{GATE_PARAMETER}"]["string_value"]
        self.closed = gate + ".closed"
        self.held = gate + ".held." + args["model_instance_name"]

    def execute(self, requests):
        if os.path.exists(self.closed):
            writing = self.held.replace(".held.", ".writing.")
            with open(writing, "w") as file:
                file.write(str(len(requests)))
            os.replace(writing, self.held)
            opens = time.monotonic() + GATE_TIMEOUT_S
            while os.path.exists(self.closed) and time.monotonic() < opens:
                time.sleep(0.005)
            os.unlink(self.held)
        return super().execute(requests)
'''


class Gate:
    """One gated model's gate: closed while the file ``<model>.closed`` exists in the gates' folder."""

    def __init__(self, folder: Path, model: str) -> None:
        self.model = model
        self.path = folder / model
        self._closed = folder / f"{model}.closed"

    @contextmanager
    def closed(self) -> Iterator[Gate]:
        """Batches that reach the model wait until the block ends."""
        self._closed.touch()
        try:
            yield self
        finally:
            self._closed.unlink()

    def held(self) -> int:
        """Requests the model's instances hold at the gate now."""
        return sum(int(path.read_text()) for path in self.path.parent.glob(f"{self.model}.held.*"))


def gated_repository(source: Path, target: Path, gates: Path) -> Path:
    """``source`` (an exported repository) with its ResNet and Canny behind gates in the folder ``gates``."""
    target.mkdir(parents=True)
    gates.mkdir(parents=True, exist_ok=True)
    configs = {
        TEST_MODEL: default.classifier(TEST_MODEL, PreprocessSpec()).network_config(GATED_BATCHING),
        names.CANNY_GRAPH: canny_graph_config(),
    }
    for folder in source.iterdir():
        if folder.is_dir() and folder.name not in configs:
            (target / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
    for model, config in configs.items():
        config["backend"] = "python"
        config.setdefault("parameters", {})[GATE_PARAMETER] = {"string_value": str(gates / model)}
    write_configs(target, configs)
    for model in configs:
        version = target / model / VERSION
        (version / ONNX_FILE).symlink_to((source / model / VERSION / ONNX_FILE).resolve())
        (version / PYTHON_FILE).write_text(ONNX_RUNNER.read_text() + _GATED_RUNNER)
        for extra in (source / model).glob("*.txt"):  # labels
            (target / model / extra.name).symlink_to(extra.resolve())
    return target


class GatedTriton:
    """The running Triton and its two gates."""

    def __init__(self, server: TritonServer, gates: Path) -> None:
        self.server = server
        self.resnet = Gate(gates, TEST_MODEL)
        self.canny = Gate(gates, names.CANNY_GRAPH)

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    async def behind_a_busy_resnet(
        self, first: Sequence[Awaitable[T]], then: Sequence[Awaitable[T]], answered: int = 0
    ) -> list[T]:
        """Sends ``first`` and holds it at the ResNet's gate, then sends ``then``; opens the gate once Triton has
        queued all of ``then`` but the ``answered`` it answers at once (past the queue's bound, or its timeout).
        Every outcome, in order."""
        with self.resnet.closed():
            held = [asyncio.ensure_future(call) for call in first]
            await asyncio.to_thread(wait_until, lambda: self.resnet.held() == len(first), "requests at the gate")
            rest = [asyncio.ensure_future(call) for call in then]
            queued = len(then) - answered
            await asyncio.to_thread(
                wait_until,
                lambda: self.pending(TEST_MODEL) == queued and sum(task.done() for task in rest) >= answered,
                f"{queued} requests queued behind the busy ResNet and {answered} answered",
            )
        return await asyncio.gather(*held, *rest)

    def pending(self, model: str) -> int:
        """Requests in the model's queue, not yet handed to an instance: Triton's own gauge."""
        prefix = f'nv_inference_pending_request_count{{model="{model}",'
        lines = [line for line in httpx.get(self.server.metrics_url).text.splitlines() if line.startswith(prefix)]
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in lines)

    def stats(self, model: str) -> dict[str, int]:
        """Triton's statistics of the model (all versions) once they stop moving: Triton records a batch's just after
        it answers, so a read right after an answer can miss it (looked at every 50 ms, for at most a minute)."""

        def read() -> dict[str, int]:
            answer = httpx.get(f"{self.server.http_url}/v2/models/{model}/stats").json()["model_stats"]
            return {
                "inferences": sum(int(stats.get("inference_count", 0)) for stats in answer),
                "executions": sum(int(stats.get("execution_count", 0)) for stats in answer),
                "failures": sum(int(stats["inference_stats"]["fail"].get("count", 0)) for stats in answer),
            }

        last, deadline = read(), time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
            if (now := read()) == last:
                return now
            last = now
        return last


@contextmanager
def running_gated_triton(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedTriton]:
    """``test_repository`` behind gates, served by a Triton on free ports; stopped after."""
    folder = tmp_path_factory.mktemp("gated")
    repository = gated_repository(test_repository, folder / "repository", folder / "gates")
    with running_triton(repository, tmp_path_factory) as server:
        yield GatedTriton(server, folder / "gates")
