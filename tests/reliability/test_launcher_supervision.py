"""What the launcher keeps across a Triton restart, and that a restart cannot wedge it, on one launched stack.

The versions an operator chose (one unloaded, a model unloaded whole) are served again after Triton is killed and
restarted, and a later load still reads the model's own version policy; a version exported while serving is
mirrored and loadable; ``/metrics/triton`` works; ``--trace-endpoint`` sends the gateway's and Triton's traces to
one collector. Then a Triton whose model load never ends is killed and started
again with growing waits, and Ctrl-C to the pipeline's process group (as a terminal sends it) stops everything
while such a restart is under way. The module's tests run in order, on the same stack.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.figures import hold
from tests.support.goals import STACK_STOPPED, STOPPED_WITHIN_S, VERSION_MIRRORED, every, serving_after_wedged_restarts
from tests.support.launched import Launched, launch, processes, write_version

pytestmark = pytest.mark.reliability
RESTART_TIMEOUT_S = 4


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP receiver that keeps which services sent spans: the gateway sends protobuf, Triton JSON."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Collect)
        self.services: set[str] = set()


class _Collect(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers["Content-Type"] == "application/json":
            for spans in json.loads(body)["resourceSpans"]:
                attributes = spans["resource"]["attributes"]
                self.server.services.update(a["value"]["stringValue"] for a in attributes if a["key"] == "service.name")
        else:
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                names = [a.value.string_value for a in resource.resource.attributes if a.key == "service.name"]
                self.server.services.update(names)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _launched(folder: Path, *options: str) -> Iterator[Launched]:
    launched = launch(folder, "{launcher} 2>&1 | tee " + str(folder / "terminal.txt"),
                      "--triton-restart-timeout", str(RESTART_TIMEOUT_S), *options)  # fmt: skip
    try:
        launched.wait_ready()
        launched.wait_for("Ctrl-C stops both", 60)
        yield launched
    finally:
        launched.kill()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[Launched]:
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    yield from _launched(tmp_path_factory.mktemp("supervised"), "--trace-endpoint", endpoint)


@pytest.fixture(scope="module")
def wedgeable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    """A stack of its own: the restarts above have grown the other's backoff."""
    yield from _launched(tmp_path_factory.mktemp("wedgeable"))


def _ready(stack: Launched, model: str) -> list[str]:
    models = httpx.get(f"{stack.url}/v1/models", timeout=10).json()["models"]
    [entry] = [m for m in models if m["name"] == model]
    return [v["version"] for v in entry["versions"] if v["state"] == "READY"]


def _admin(stack: Launched, action: str, model: str, versions: list[int] | None = None) -> None:
    body = {"versions": versions} if versions else None
    answer = httpx.post(f"{stack.url}/v1/admin/models/{model}/{action}", json=body, timeout=60)
    assert answer.status_code == 200, answer.text


def _restart(stack: Launched) -> None:
    """Kill Triton as the OOM killer would, and wait until the launcher has it back and it is ready."""
    said = len(stack.said())
    os.kill(stack.triton_pid(), signal.SIGKILL)
    stack.wait_for("Triton is back", 60, after=said)
    stack.wait_ready()


def test_a_rollback_survives_a_restart(stack: Launched) -> None:
    assert _ready(stack, "versioned") == ["1", "2"]
    said = len(stack.said())
    _admin(stack, "unload", "versioned", [2])
    stack.wait_for("versioned serves version 1 (kept if Triton restarts)", 10, after=said)
    _restart(stack)
    assert "serving as before: versioned: version 1" in stack.said()
    after = _ready(stack, "versioned")
    hold(
        "22.2 a rollback to version 1, then Triton killed: served as the operator left it after the restart",
        int(after == ["1"]),
        every(1, "restarts"),
        detail=f"versions ready after: {after}",
    )
    _admin(stack, "load", "versioned")  # without versions: the config's policy (all) again, not the pin
    assert _ready(stack, "versioned") == ["1", "2"]


def test_a_model_unloaded_whole_stays_unloaded(stack: Launched) -> None:
    said = len(stack.said())
    _admin(stack, "unload", "versioned")
    stack.wait_for("versioned serves nothing (unloaded)", 10, after=said)
    _restart(stack)
    after = _ready(stack, "versioned")
    hold(
        "22.2 a model unloaded whole, then Triton killed: served as the operator left it after the restart",
        int(after == []),
        every(1, "restarts"),
        detail=f"versions ready after: {after}",
    )
    _admin(stack, "load", "versioned")
    assert _ready(stack, "versioned") == ["1", "2"]


def test_a_version_exported_while_serving_is_loadable(stack: Launched) -> None:
    said = len(stack.said())
    write_version(stack.repository, "versioned", 3)
    lag = stack.wait_for("the repository changed (versioned)", 10, after=said)
    hold("22.4 a version written while serving: mirrored for Triton after", lag, VERSION_MIRRORED)
    _admin(stack, "load", "versioned")
    assert _ready(stack, "versioned") == ["1", "2", "3"]


def test_tritons_metrics_pass_through(stack: Launched) -> None:
    answer = httpx.get(f"{stack.url}/metrics/triton", timeout=10)
    assert answer.status_code == 200 and "nv_inference_count" in answer.text


def test_traces_of_the_gateway_and_triton_reach_one_collector(stack: Launched, collector: Collector) -> None:
    assert httpx.get(f"{stack.url}/v1/models", timeout=10).status_code == 200
    infer = {"inputs": [{"name": "IN", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    assert httpx.post(f"{stack.triton_http}/v2/models/versioned/infer", json=infer, timeout=10).status_code == 200
    deadline = time.monotonic() + 30
    while collector.services != {"tritonserve-gateway", "tritonserver"}:
        assert time.monotonic() < deadline, collector.services
        time.sleep(0.2)


def test_a_wedged_restart_is_killed_and_retried_with_backoff(wedgeable: Launched) -> None:
    stack = wedgeable
    said = len(stack.said())
    stack.wedge.touch()
    killed = time.monotonic()
    os.kill(stack.triton_pid(), signal.SIGKILL)
    stack.wait_for(f"Triton did not come back: tritonserver not ready after {RESTART_TIMEOUT_S} s", 30, after=said)
    stack.wait_for("restarting Triton in 1 s (attempt 2", 30, after=said)
    stack.wait_for("restarting Triton in 2 s (attempt 3", 30, after=said)
    assert stack.said()[said:].count("Triton did not come back") == 2
    assert sum(name == "tritonserver" for _, name, _ in processes(stack.tree())) <= 1  # the wedged ones are gone
    stack.wedge.unlink()
    stack.wait_for("Triton is back", 60, after=said)
    stack.wait_ready()
    hold(
        "N14 Triton killed, its restarts wedged twice, then healed: serving again after",
        time.monotonic() - killed,
        serving_after_wedged_restarts(RESTART_TIMEOUT_S, (1, 2)),
        detail=f"each wedged start killed at the restart bound, {RESTART_TIMEOUT_S} s; waits of 1 s and 2 s",
    )


def test_ctrl_c_stops_everything_while_a_restart_waits_on_a_wedged_triton(wedgeable: Launched) -> None:
    stack = wedgeable
    said = len(stack.said())
    stack.wedge.touch()
    killed = stack.triton_pid()
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not any(name == "tritonserver" and pid != killed for pid, name, _ in processes(stack.tree())):
        assert time.monotonic() < deadline, stack.said()[said:]
        time.sleep(0.05)
    time.sleep(1)  # inside its start, waiting for a model load that never ends
    assert "Triton is back" not in stack.said()[said:]
    tree = stack.tree()
    os.killpg(stack.shell.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole pipeline gets it
    seconds = stack.wait_gone(tree, STOPPED_WITHIN_S)
    hold(
        "N14 Ctrl-C while a restart waits on a wedged Triton: every process gone, every port free",
        seconds,
        STACK_STOPPED,
    )
    assert "SIGINT: stopping" in stack.said()[said:]
