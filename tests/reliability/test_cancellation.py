"""Triton stops work its client abandoned (issue 13), against the real tritonserver and gateway.

Triton 2.51 marks a request cancelled when its gRPC call is cancelled or its deadline passes, and an ensemble marks
the steps it has not started yet (not the one running); the ONNX runner stops a run whose requests are all
cancelled, or all past the deadline the gateway sends as a request parameter. Every public entry point is an
ensemble (``canny`` too, behind its pixel check), so a direct gRPC client stops a running step with that parameter:
``test_direct_grpc.py`` shows it. Two things show it here,
neither a latency: the ``edges`` ensemble's statistics (an ensemble whose Canny step was stopped fails, one whose
Canny ran to the end succeeds, answer read or not; the python backend counts every request it answered, error or
not, as a success, so Canny's own statistics cannot tell) and the CPU time of Canny's stub processes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient

from launcher.triton import TritonServer
from servables import names
from tests.support.figures import record
from tests.support.gate import GatedTriton, running_gated_triton
from tests.support.stack import Gateway
from tests.support.waiting import wait_until

pytestmark = pytest.mark.reliability
ABANDONED = 4
# Long enough for a request to be decoded and reach Canny, which waits at its gate until every deadline has passed.
HASTY_TIMEOUT_S = "2"
PATIENT_TIMEOUT_S = "60"
JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def large_photo(photos: dict[str, np.ndarray]) -> np.ndarray:
    """16 MP with a sensor's noise (an upscaled photo alone compresses and decodes unlike a real one), sent as a
    progressive JPEG of 2.5 MB: Triton decodes it in about 0.2 s, and its Canny run takes about a second."""
    big = cv2.resize(photos["astronaut"], (4624, 3468), interpolation=cv2.INTER_CUBIC)
    return cv2.add(big, np.random.default_rng(0).integers(0, 6, big.shape, dtype=np.uint8))


@pytest.fixture(scope="module")
def gated(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatedTriton]:
    """A Triton for this module alone: Canny on a photo this large leaves ONNX Runtime's arena at gigabytes per
    instance, for as long as the process lives. Its Canny waits while a test holds its gate (tests/support/gate.py);
    open, the gate changes nothing."""
    with running_gated_triton(test_repository, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def own_triton(gated: GatedTriton) -> TritonServer:
    return gated.server


class Cpu:
    """CPU seconds (user + system) that some of Triton's processes have used so far."""

    def __init__(self, triton: TritonServer, model: str | None = None) -> None:
        """Triton and every stub, or the stubs of ``model`` (one per instance)."""
        assert triton.process is not None
        stubs = [psutil.Process(pid) for pid in triton.stub_pids()]
        if model is None:
            self.processes = [psutil.Process(triton.process.pid), *stubs]
        else:  # a stub's command line names its model's file: <repository>/<model>/1/model.py
            self.processes = [stub for stub in stubs if f"/{model}/" in " ".join(stub.cmdline())]
        assert self.processes

    def __call__(self) -> float:
        return sum(times.user + times.system for times in (process.cpu_times() for process in self.processes))

    def idle_since(self, quiet_s: float = 0.5, timeout_s: float = 120) -> float:
        """When (``time.monotonic()``) the processes last used CPU, once they have used none for ``quiet_s``."""
        started = busy = time.monotonic()
        used = self()
        while time.monotonic() - busy < quiet_s:
            assert time.monotonic() - started < timeout_s, "Triton kept computing"
            time.sleep(0.02)
            if (now := self()) > used:
                busy, used = time.monotonic(), now
        return busy


class Abandonment:
    """What Triton made of the requests a block abandoned, once it has finished with them: how many reached Canny,
    how many of those ran to the end (their ensemble succeeded), Canny's CPU and how soon after the block Triton
    was idle."""

    def __init__(self, triton: TritonServer) -> None:
        self.stats = grpcclient.InferenceServerClient(triton.grpc_url)
        self.canny, self.everything = Cpu(triton, names.CANNY_GRAPH), Cpu(triton)

    def _outcomes(self) -> tuple[int, int]:
        """(Canny runs, edges ensembles that succeeded): the python backend counts every request it answered, error
        or not, as a success; an ensemble succeeds only when its Canny step ran to the end."""

        def successes(model: str) -> int:
            stats = self.stats.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]
            return int(stats["success"].get("count", 0))

        return successes(names.CANNY_GRAPH), successes(names.EDGES)

    def __enter__(self) -> Abandonment:
        self._before, self._cpu = self._outcomes(), self.canny()
        return self

    def __exit__(self, *exc_info: object) -> None:
        left = time.monotonic()
        self.idle_after_s = max(self.everything.idle_since() - left, 0)
        self.canny_cpu_s = self.canny() - self._cpu
        (runs, succeeded), (runs_before, succeeded_before) = self._outcomes(), self._before
        self.reached, self.ran_to_the_end = runs - runs_before, succeeded - succeeded_before

    def __str__(self) -> str:
        return (
            f"{self.reached} reached Canny, {self.ran_to_the_end} ran to the end; Canny CPU {self.canny_cpu_s:.2f} s "
            f"for them; Triton idle {self.idle_after_s * 1000:.0f} ms after"
        )


def encoded(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()


async def _posts(url: str, body: bytes, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=count)) as client:
        return await asyncio.gather(*(client.post("/v1/edges", content=body, headers=JPEG) for _ in range(count)))


@pytest.fixture(scope="module")
def front(own_triton: TritonServer, gateway_factory: Callable[..., Gateway]) -> Gateway:
    """A gateway whose deadline no warm-up reaches, whatever else the machine is finishing (the session's Triton
    may still be working off the previous module's floods when the first runs on a fresh Triton start)."""
    return gateway_factory(GATEWAY_TRITON_URL=own_triton.grpc_url, GATEWAY_EDGES_TIMEOUT_S=PATIENT_TIMEOUT_S)


@pytest.fixture(scope="module")
def hasty(own_triton: TritonServer, gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory(GATEWAY_TRITON_URL=own_triton.grpc_url, GATEWAY_EDGES_TIMEOUT_S=HASTY_TIMEOUT_S)


@pytest.fixture(scope="module")
def one_run_cpu_s(own_triton: TritonServer, front: Gateway, large_photo: np.ndarray) -> float:
    """What Canny computes for the large photo alone, once each Canny instance has run it (an edges request per
    instance, at once), so that no instance is timed on its first run."""
    canny, body = Cpu(own_triton, names.CANNY_GRAPH), encoded(large_photo)
    warm = asyncio.run(_posts(front.url, body, len(canny.processes)))
    assert [r.status_code for r in warm] == [200] * len(warm), [r.text for r in warm]
    before = canny()
    assert httpx.post(f"{front.url}/v1/edges", content=body, headers=JPEG, timeout=60).status_code == 200
    return canny() - before


def test_abandoned_edges_requests_stop_at_the_canny_step(
    gated: GatedTriton,
    own_triton: TritonServer,
    front: Gateway,
    hasty: Gateway,
    one_run_cpu_s: float,
    large_photo: np.ndarray,
    photos: dict[str, np.ndarray],
) -> None:
    """Requests whose deadline passes while they wait for Canny (held at its gate: so whatever the CPU) are handed to
    Canny and stopped there: none runs to the end for nobody."""
    body = encoded(large_photo)
    with Abandonment(own_triton) as abandoned, gated.canny.closed():
        responses = asyncio.run(_posts(hasty.url, body, ABANDONED))

    record("abandoned edges (16 MP): ran to the end", abandoned.ran_to_the_end, unit=f"of {ABANDONED}",
           detail=f"{HASTY_TIMEOUT_S} s deadline passed at Canny's gate, answered "
           f"{sorted({r.status_code for r in responses})}; {abandoned} the last 504 (a complete run: "
           f"{one_run_cpu_s:.2f} s of CPU)")  # fmt: skip
    assert [r.status_code for r in responses] == [504] * ABANDONED, [r.text for r in responses]
    assert all(r.json()["error"]["code"] == "deadline_exceeded" for r in responses)
    assert abandoned.reached >= 1  # the deadlines passed before Canny started: Canny was given abandoned requests
    assert abandoned.ran_to_the_end == 0  # each stopped: its ensemble failed instead of completing for nobody

    small = photos["chelsea"]
    served = httpx.post(f"{front.url}/v1/edges", content=encoded(small), headers=JPEG)
    assert served.status_code == 200
    edge_map = cv2.imdecode(np.frombuffer(served.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert edge_map.shape == small.shape[:2] and set(np.unique(edge_map)) <= {0, 255}


def test_a_client_that_leaves_stops_its_edges_request(
    own_triton: TritonServer, front: Gateway, large_photo: np.ndarray
) -> None:
    """A REST client that disconnects while Triton works on its request: the gateway cancels the gRPC call (499)."""
    body = encoded(large_photo)
    head = f"POST /v1/edges HTTP/1.1\r\nHost: test\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
    decode = Cpu(own_triton, names.DECODE)
    with Abandonment(own_triton) as abandoned:
        before, clients = decode(), [socket.create_connection(("127.0.0.1", front.port)) for _ in range(ABANDONED)]
        for client in clients:
            client.sendall(head.encode() + body)
        started = time.monotonic()
        while decode() - before < 0.05:  # Triton is decoding them: the requests are in flight
            assert time.monotonic() - started < 60
            time.sleep(0.005)
        for client in clients:
            client.close()

    record("edges clients that left (16 MP): ran to the end", abandoned.ran_to_the_end, unit=f"of {ABANDONED}",
           detail=f"disconnected while Triton decoded; {abandoned} they left")  # fmt: skip
    assert front.log().count("POST /v1/edges 499") == ABANDONED  # the module's only 499s
    assert abandoned.reached >= 1
    assert abandoned.ran_to_the_end == 0


def test_an_edges_run_still_going_at_its_deadline_stops_itself(
    gated: GatedTriton, own_triton: TritonServer, hasty: Gateway, one_run_cpu_s: float, large_photo: np.ndarray
) -> None:
    """Triton does not tell the ensemble step that is running; the deadline the gateway sends as a parameter does:
    requests whose deadline passes in the middle of their Canny run (after decoding) stop there. Each waits at
    Canny's gate until shortly before its deadline, so the deadline passes mid-run whatever the CPU or its load."""
    body = encoded(large_photo)
    # A run alone takes at least half its CPU time in wall time (two threads): it starts a quarter of that before
    # its deadline, so the deadline passes while it runs.
    lead_s = one_run_cpu_s / 4
    deadline_s = float(HASTY_TIMEOUT_S)
    statuses = []
    with Abandonment(own_triton) as abandoned, ThreadPoolExecutor(1) as client:
        for _ in range(ABANDONED):  # one at a time
            with gated.canny.closed():
                sent = time.monotonic()
                answer = client.submit(httpx.post, f"{hasty.url}/v1/edges", content=body, headers=JPEG, timeout=60)
                wait_until(lambda: gated.canny.held() == 1, "the request at Canny's gate")
                time.sleep(max(0.0, sent + deadline_s - lead_s - time.monotonic()))  # the deadline's own clock
            statuses.append(answer.result().status_code)

    record("edges past their deadline mid-Canny (16 MP): ran to the end", abandoned.ran_to_the_end,
           unit=f"of {ABANDONED}", detail=f"each run started {lead_s:.2f} s before its {deadline_s:g} s deadline, "
           f"answered {sorted(set(statuses))}; {abandoned}")  # fmt: skip
    assert statuses == [504] * ABANDONED
    assert abandoned.reached == ABANDONED
    assert abandoned.ran_to_the_end == 0
