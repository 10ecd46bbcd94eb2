"""Direct gRPC clients are bounded at Triton as REST clients are at the gateway (issue 21), against the real
tritonserver: request parameters are validated where they are read, the raw-pixel entry points are held to the
upload rules before any work, the encoded ones to the byte limit, and memory comes back after large requests.

Memory is read per process from ``/proc/<pid>/status``: ``RssAnon`` is what a process holds of its own (heap, ONNX
Runtime's arena); ``/dev/shm`` is counted apart, from the python backend's regions, which Triton maps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from gateway.inference import CHANNEL_ARGS, PROBE_TTL_S
from imaging.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from launcher.process import on_free_ports
from launcher.triton import Install, Ports, TritonServer
from servables import names
from servables.configs import MIN_FREE_SHARED_MEMORY_BYTES
from servables.edges import canny_graph_config
from servables.repository import write_configs
from tests.reliability.test_cancellation import Cpu
from tests.support.figures import PeakRss, hold
from tests.support.goals import CANNY_KEPT_AFTER_LARGE_RUNS, TRITON_KEPT_AFTER_REFUSALS, every
from tests.support.stack import Gateway, running_triton

pytestmark = pytest.mark.reliability
JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def direct(triton: TritonServer) -> TritonServer:
    """The session's Triton, for the attacks measured by their answers and the graphs' CPU (what earlier requests
    left in it changes neither)."""
    return triton


@pytest.fixture
def fresh(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A Triton that has served nothing yet, for the attacks measured by the memory they leave behind: what an
    earlier request left (a grown arena, a pooled message) would hide what this one leaves."""
    with running_triton(test_repository, tmp_path_factory) as server:
        yield server


@pytest.fixture
def shrinking(test_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A fresh Triton whose edge detector counts inputs over 8 MB as large (the default: a 16 MP photo's pixels), so
    that a 6 MP edge map, a few hundred MB of arena, shows what a 40 MP one (3.1 GB) does at the default."""
    repository = tmp_path_factory.mktemp("shrinking") / "repository"
    repository.mkdir()
    for model in test_repository.iterdir():
        if model.is_dir() and model.name != names.CANNY_GRAPH:
            (repository / model.name).symlink_to(model, target_is_directory=True)
    config = canny_graph_config()
    config["parameters"]["arena_shrinkage_above_bytes"] = {"string_value": str(8_000_000)}
    write_configs(repository, {names.CANNY_GRAPH: config})
    model = Path(names.CANNY_GRAPH, "1", "model.onnx")
    (repository / model).symlink_to(test_repository / model)
    with running_triton(repository, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")
def noisy_photo(photos: dict[str, np.ndarray]) -> Callable[[int, int], np.ndarray]:
    """``width`` x ``height`` with a sensor's noise: an upscaled photo alone compresses unlike a real one."""

    def make(width: int, height: int) -> np.ndarray:
        big = cv2.resize(photos["astronaut"], (width, height), interpolation=cv2.INTER_CUBIC)
        return cv2.add(big, np.random.default_rng(0).integers(0, 6, big.shape, dtype=np.uint8))

    return make


def _tensor(name: str, array: np.ndarray) -> grpcclient.InferInput:  # the aio client's InferInput too
    tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


def _client(triton: TritonServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(triton.grpc_url, channel_args=CHANNEL_ARGS)


def _refusal(client: grpcclient.InferenceServerClient, model: str, inputs: list, **options: object) -> str:
    """``status: message`` of the error Triton answers (the test fails if it answers with a result)."""
    with pytest.raises(InferenceServerException) as refused:
        client.infer(model, inputs, **options)
    return f"{refused.value.status()}: {refused.value.message()}"


async def _outcomes(calls: list[Awaitable[object]]) -> list[str]:
    """Each call's ``status: message``, or "answered"."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    return [f"{o.status()}: {o.message()}" if isinstance(o, InferenceServerException) else "answered" for o in outcomes]


def anon_mib(pid: int) -> float:
    """What a process holds of its own (heap, arenas), apart from the shared memory it maps."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no RssAnon for {pid}")


def cpu_ns(pid: int) -> int:
    """CPU time a process has used, to the nanosecond (the scheduler's own count; psutil's ticks are 10 ms)."""
    return sum(int(stat.read_text().split()[0]) for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"))


def shared_memory_mib(triton: TritonServer) -> float:
    """What the python backend's regions hold in /dev/shm (Triton maps every stub's region; in Triton's own mount
    namespace, where a test gives it a /dev/shm of its own)."""
    assert triton.process is not None
    pid = triton.process.pid
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    regions = {line.split()[-1] for line in maps if " /dev/shm/" in line and not line.endswith("(deleted)")}
    return sum((Path(f"/proc/{pid}/root") / region.lstrip("/")).stat().st_blocks * 512 for region in regions) / 2**20


# N4: the deadline parameter is read by the ONNX runner's cancellation watcher, which a string once killed for good.
BAD_DEADLINES: list[object] = ["abc", "", True, 1.7e18, int(time.time()) + 60, 2**62]


def test_bad_deadlines_are_refused_and_the_watcher_keeps_stopping_runs(
    direct: TritonServer, noisy_photo: Callable[[int, int], np.ndarray]
) -> None:
    """Each bad deadline answers INVALID_ARGUMENT; afterwards, runs whose (valid) deadline passes mid-run still stop,
    on both instances of the edge detector."""
    graph = Cpu(direct, names.CANNY_GRAPH)
    client = _client(direct)
    # Canny's slowest options on 4 MP: a run lasts long enough for a deadline to pass in its middle.
    inputs = [
        _tensor(names.IMAGE, noisy_photo(2400, 1800)[np.newaxis]),
        _tensor(names.APERTURE_SIZE, np.array([[7]], np.int32)),
        _tensor(names.L2_GRADIENT, np.array([[True]])),
    ]
    for _ in graph.processes:
        client.infer(names.CANNY, inputs)  # each instance has run this size once
    before, started = graph(), time.monotonic()
    client.infer(names.CANNY, inputs)
    one_run_cpu, one_run_s = graph() - before, time.monotonic() - started

    refusals = [
        _refusal(client, names.CANNY, inputs, parameters={names.DEADLINE_PARAMETER: bad}) for bad in BAD_DEADLINES * 2
    ]  # twice each: the watchers of both instances have seen them

    async def past_their_deadline() -> list[str]:
        """Two runs at once (one per instance), each with a deadline a quarter into a run alone."""
        async with aioclient.InferenceServerClient(direct.grpc_url, channel_args=CHANNEL_ARGS) as aio:
            deadline = _deadline(one_run_s / 4)
            calls = [aio.infer(names.CANNY, inputs, parameters=deadline) for _ in graph.processes]
            return [outcome.split(":")[0] for outcome in await _outcomes(calls)]

    before = graph()
    stopped = asyncio.run(past_their_deadline())
    stopped_cpu = graph() - before
    refused = [r for r in refusals if r.startswith("StatusCode.INVALID_ARGUMENT") and names.DEADLINE_PARAMETER in r]
    hold(
        "N4 bad deadline_unix_ns over gRPC: refused INVALID_ARGUMENT",
        len(refused),
        every(len(refusals), "refused"),
        detail=f"{', '.join(map(repr, BAD_DEADLINES))}, twice each: {sorted({r.split(':')[0] for r in refusals})}",
    )
    hold(
        "N4 then runs past a deadline a quarter in, one per Canny instance: stopped",
        stopped.count("StatusCode.CANCELLED"),
        every(len(graph.processes), "stopped"),
        detail=f"{stopped}, {stopped_cpu:.2f} s of Canny CPU for them (a complete run: {one_run_cpu:.2f} s)",
    )
    assert stopped_cpu < one_run_cpu  # both stopped early: without the watcher, twice a complete run


# N5, N13: the raw-pixel entry points take decoded pixels straight into the ONNX graphs, which cannot refuse.
def _pixels(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.uint8)


PIXEL_CASES = {
    "canny, zero sides": (names.CANNY, (1, 0, 0, 3), "image_too_small"),
    "classify_pixels, zero sides": (names.CLASSIFY_PIXELS, (1, 0, 0, 3), "image_too_small"),
    "canny, a side of 6": (names.CANNY, (1, 6, 640, 3), "image_too_small"),
    "classify_pixels, 1:25": (names.CLASSIFY_PIXELS, (1, 16, 400, 3), "bad_aspect_ratio"),
    "canny, 6400x6300": (names.CANNY, (1, 6300, 6400, 3), "image_too_large"),
    "classify_pixels, 2 x 5100x4000": (names.CLASSIFY_PIXELS, (2, 4000, 5100, 3), "image_too_large"),
}
CANNY_CASES = {
    "aperture 9": (names.APERTURE_SIZE, np.int32, 9),
    "aperture -1": (names.APERTURE_SIZE, np.int32, -1),
    "blur 2**31-1": (names.BLUR, np.int32, 2**31 - 1),
    "blur 4": (names.BLUR, np.int32, 4),
    "blur -3": (names.BLUR, np.int32, -3),
    "low NaN": (names.LOW, np.float32, np.nan),
    "high inf": (names.HIGH, np.float32, np.inf),
    "low -1": (names.LOW, np.float32, -1),
    "high 10001": (names.HIGH, np.float32, 10_001),
}


def test_raw_pixel_entry_points_refuse_before_any_work(direct: TritonServer, photos: dict[str, np.ndarray]) -> None:
    """Zero sides, too small, too elongated, over the pixel limit (alone or as a request's batch), Canny's
    parameters out of range: INVALID_ARGUMENT with the gateway's code, and neither ONNX graph behind computes."""
    assert MAX_IMAGE_PIXELS < 6400 * 6300 < 2 * 5100 * 4000  # the large cases are just over the limit
    client = _client(direct)
    photo = photos["chelsea"][np.newaxis]
    client.infer(names.CLASSIFY_PIXELS, [_tensor(names.IMAGE, photo)])
    client.infer(names.CANNY, [_tensor(names.IMAGE, photo)])
    graphs = Cpu(direct, names.CANNY_GRAPH), Cpu(direct, names.PREPROCESS)
    graph_pids = [process.pid for graph in graphs for process in graph.processes]
    cpu_before, anon_before = [graph() for graph in graphs], sum(map(anon_mib, graph_pids))
    answers, slowest = {}, (0.0, "")
    for case, (model, shape, _) in PIXEL_CASES.items():
        started = time.monotonic()
        answers[case] = _refusal(client, model, [_tensor(names.IMAGE, _pixels(*shape))])
        slowest = max(slowest, (time.monotonic() - started, case))
    for case, (name, dtype, value) in CANNY_CASES.items():
        inputs = [_tensor(names.IMAGE, photo), _tensor(name, np.array([[value]], dtype))]
        answers[case] = _refusal(client, names.CANNY, inputs)
    low_over_high = [
        _tensor(names.LOW, np.array([[300]], np.float32)),
        _tensor(names.HIGH, np.array([[100]], np.float32)),
    ]
    answers["low 300 > high 100"] = _refusal(client, names.CANNY, [_tensor(names.IMAGE, photo), *low_over_high])
    graphs_cpu = sum(graph() for graph in graphs) - sum(cpu_before)
    graphs_grew = sum(map(anon_mib, graph_pids)) - anon_before

    [hop] = Cpu(direct, names.CHECK_PIXELS).processes
    before = cpu_ns(hop.pid)
    for _ in range(20):
        client.infer(names.CLASSIFY_PIXELS, [_tensor(names.IMAGE, photo)])
    hop_ms = (cpu_ns(hop.pid) - before) / 20 / 1e6
    wrong = {
        case: answer
        for case, answer in answers.items()
        if not answer.startswith("StatusCode.INVALID_ARGUMENT")
        or (PIXEL_CASES[case][2] if case in PIXEL_CASES else "invalid_request") not in answer
    }
    parameters = [case for case in answers if case not in PIXEL_CASES]
    hold(
        "N5 raw pixels over gRPC, zero sides to over the pixel limit: refused with the gateway's code",
        sum(case not in wrong for case in PIXEL_CASES),
        every(len(PIXEL_CASES), "shapes"),
        detail=f"the ONNX graphs computed {graphs_cpu:.2f} s and grew {graphs_grew:.0f} MiB for all {len(answers)} "
        f"refusals; slowest {slowest[0]:.2f} s ({slowest[1]}, sent whole); check_pixels' own CPU per normal request "
        f"{hop_ms:.2f} ms" + (f"; wrong: {wrong}" if wrong else ""),
    )
    hold(
        "N13 Canny's parameters out of range over gRPC: refused INVALID_ARGUMENT",
        sum(case not in wrong for case in parameters),
        every(len(parameters), "parameters"),
        detail=", ".join(parameters),
    )
    assert graphs_cpu < 0.5  # the graphs' idle cancellation watchers only: a 40 MP Canny run takes seconds
    assert graphs_grew < 64
    valid = [_tensor(names.APERTURE_SIZE, np.array([[5]], np.int32)), _tensor(names.BLUR, np.array([[31]], np.int32))]
    edge_map = client.infer(names.CANNY, [_tensor(names.IMAGE, photo), *valid]).as_numpy(names.EDGE_MAP)[0]
    assert edge_map.shape == photo.shape[1:3] and set(np.unique(edge_map)) <= {0, 255}


# N6: Triton 2.51 has no gRPC message-size limit, and the python backend copies every input into its shared memory.
def test_files_over_the_byte_limit_are_refused_and_triton_gives_its_memory_back(fresh: TritonServer) -> None:
    """Two bursts of four 32 MiB files at once: each refused from its size (payload_too_large), and Triton's own
    memory back near where it was (a pooled gRPC request object kept each message it had parsed, for good)."""
    size = 32 * 1024 * 1024
    assert size > MAX_IMAGE_BYTES
    assert fresh.process is not None
    pid = fresh.process.pid
    noise = np.random.default_rng(0).integers(0, 256, (1, size), dtype=np.uint8)

    async def burst() -> list[str]:
        async with aioclient.InferenceServerClient(fresh.grpc_url, channel_args=CHANNEL_ARGS) as aio:
            calls = [aio.infer(model, [_tensor(names.IMAGE, noise)]) for model in (names.CLASSIFY, names.EDGES) * 2]
            return await _outcomes(calls)

    anon_before, shm_before = anon_mib(pid), shared_memory_mib(fresh)
    with PeakRss(pid) as peak:
        answers = asyncio.run(burst()) + asyncio.run(burst())
    grown = anon_mib(pid) - anon_before
    refused = [a for a in answers if a.startswith("StatusCode.INVALID_ARGUMENT") and "payload_too_large" in a]
    hold(
        f"N6 files over the byte limit over gRPC (2 x 4 x {size >> 20} MiB): refused payload_too_large",
        len(refused),
        every(len(answers), "files"),
        detail=answers[0].split(", ", 1)[-1],
    )
    hold(
        "N6 then tritonserver's own memory grown by",
        round(grown),
        TRITON_KEPT_AFTER_REFUSALS,
        detail=f"{anon_before:.0f} -> {anon_before + grown:.0f} MiB (peak RSS {peak.mib:.0f}); /dev/shm "
        f"{shm_before:.0f} -> {shared_memory_mib(fresh):.0f} MiB (the python backend keeps each stub's region at its "
        "largest inputs)",
    )


# N7, F11/F20: ONNX Runtime's arena kept a large input's intermediates, gigabytes per instance, for good.
def test_memory_comes_back_after_large_and_abandoned_edge_maps(
    shrinking: TritonServer, noisy_photo: Callable[[int, int], np.ndarray]
) -> None:
    graph = Cpu(shrinking, names.CANNY_GRAPH)
    body = np.frombuffer(cv2.imencode(".jpg", noisy_photo(3000, 2000))[1].tobytes(), np.uint8)[np.newaxis]

    async def edge_maps(timeout_s: float | None = None) -> list[str]:
        """One request per instance at once, or four that are abandoned at ``timeout_s``, as the gateway abandons
        them (a gRPC deadline, and the same deadline as a parameter for the step that is running)."""
        count = len(graph.processes) if timeout_s is None else 4
        options = {} if timeout_s is None else {"client_timeout": timeout_s, "parameters": _deadline(timeout_s)}
        async with aioclient.InferenceServerClient(shrinking.grpc_url, channel_args=CHANNEL_ARGS) as aio:
            calls = [aio.infer(names.EDGES, [_tensor(names.IMAGE, body)], **options) for _ in range(count)]
            return [outcome.split(":")[0] for outcome in await _outcomes(calls)]

    before = {process.pid: anon_mib(process.pid) for process in graph.processes}
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        peaks = [stack.enter_context(PeakRss(pid)) for pid in before]
        complete = asyncio.run(edge_maps())
    complete_s = time.monotonic() - started
    after_complete = {pid: anon_mib(pid) for pid in before}
    abandoned = asyncio.run(edge_maps(timeout_s=complete_s / 3))
    left = time.monotonic()
    idle_after_s = max(Cpu(shrinking).idle_since() - left, 0)
    after = {pid: anon_mib(pid) for pid in before}
    assert complete == ["answered"] * len(graph.processes)
    # Without the arena's shrinkage: about 550 MiB more each, for good.
    hold(
        "F11/F20 a 6 MP edge map (large, here) per Canny instance: its own memory grown by, the most",
        round(max(after_complete[pid] - base for pid, base in before.items())),
        CANNY_KEPT_AFTER_LARGE_RUNS,
        detail=f"{_mib(before)} before, peak RSS {'/'.join(f'{p.mib:.0f}' for p in peaks)}, {_mib(after_complete)} "
        f"after; /dev/shm {shared_memory_mib(shrinking):.0f} MiB (the python backend's regions, kept at their largest "
        "tensors)",
    )
    hold(
        "N7 then 4 abandoned at a third of a run: a Canny instance's own memory grown by, the most",
        round(max(after[pid] - base for pid, base in before.items())),
        CANNY_KEPT_AFTER_LARGE_RUNS,
        detail=f"{_mib(after)} after 4 abandoned at {complete_s / 3:.2f} s ({sorted(set(abandoned))}; Triton idle "
        f"{idle_after_s:.2f} s after)",
    )


def _deadline(timeout_s: float) -> dict[str, int]:
    return {names.DEADLINE_PARAMETER: time.time_ns() + int(timeout_s * 1e9)}


def _mib(values: dict[int, float]) -> str:
    return "/".join(f"{value:.0f}" for value in values.values()) + " MiB"


# N10: a full /dev/shm made inference 502 (the python backend failing to grow a region) while readiness stayed green.
class OwnSharedMemoryTriton(TritonServer):
    """Triton with a /dev/shm of its own, as a container's ``--shm-size`` gives it: a mount namespace with a tmpfs
    there (which needs root, and util-linux's ``unshare``)."""

    shm_mib = 128

    def command(self, install: Install, repository: Path) -> list[str]:
        mount = f'mount -t tmpfs -o size={self.shm_mib}m tmpfs /dev/shm && exec "$@"'
        namespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"]
        return [*namespace, *super().command(install, repository)]

    def shared_memory(self) -> Path:
        assert self.process is not None
        return Path(f"/proc/{self.process.pid}/root/dev/shm")


def _said(response: httpx.Response) -> str:
    """Status, and the error code and Retry-After or readiness detail that came with it."""
    body = response.json() if response.headers.get("content-type") == "application/json" else {}
    if "error" in body:
        return f"{response.status_code} {body['error']['code']} (Retry-After {response.headers.get('retry-after')})"
    if "components" in body:
        return f"{response.status_code} ({body['components'][names.CLASSIFY][:100]})"
    return str(response.status_code)


def _own_mount_namespaces() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "--mount", "true"]).returncode == 0


@pytest.mark.skipif(not _own_mount_namespaces(), reason="needs root and unshare for a /dev/shm of Triton's own")
def test_a_full_shared_memory_answers_503_and_turns_readiness_red(
    test_repository: Path, tmp_path: Path, gateway_factory: Callable[..., Gateway], photos: dict[str, np.ndarray]
) -> None:
    small = cv2.imencode(".jpg", photos["chelsea"])[1].tobytes()
    large = cv2.imencode(".jpg", cv2.resize(photos["chelsea"], (4000, 3000)))[1].tobytes()  # 36 MB decoded
    log = tmp_path / "tritonserver.log"
    triton = on_free_ports(3, lambda ports: OwnSharedMemoryTriton(test_repository, Ports(*ports), log_path=log).start())
    try:
        front = gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url)
        shm, filler = triton.shared_memory(), triton.shared_memory() / "filler"

        def post(path: str, body: bytes) -> httpx.Response:
            return httpx.post(f"{front.url}{path}", content=body, headers=JPEG, timeout=60)

        def fill(leave_mib: int) -> None:
            """Take all of /dev/shm but ``leave_mib``, as another process (or the regions' growth) would."""
            filler.unlink(missing_ok=True)
            free = os.statvfs(shm).f_bavail * os.statvfs(shm).f_frsize
            with filler.open("wb") as file:
                os.posix_fallocate(file.fileno(), 0, free - (leave_mib << 20))

        def readiness() -> httpx.Response:
            time.sleep(PROBE_TTL_S)  # the gateway probes Triton at most once a second
            return httpx.get(f"{front.url}/readyz", timeout=30)

        assert post("/v1/classify", small).status_code == 200 and readiness().status_code == 200
        fill(leave_mib=MIN_FREE_SHARED_MEMORY_BYTES // 2**20 + 24)  # over the floor, under what 12 MP needs
        over_the_floor = post("/v1/edges", large)
        fill(leave_mib=2)
        full = [post("/v1/classify", small), post("/v1/edges", small)]
        not_ready = readiness()
        filler.unlink()
        healed = post("/v1/classify", small), readiness()
    finally:
        triton.stop()
    answers = [over_the_floor, *full]
    said_so = [_said(answer).startswith("503 triton_shared_memory_full (Retry-After ") for answer in answers]
    said_so.append(
        not_ready.status_code == 503 and "shared memory is full" in not_ready.json()["components"][names.CLASSIFY]
    )
    hold(
        "N10 a full /dev/shm: 503 triton_shared_memory_full with Retry-After, then /readyz red",
        sum(said_so),
        every(len(said_so), "answers"),
        detail=f"12 MP edges with 40 MiB free: {_said(over_the_floor)}; a photo's classify and edges with 2 MiB free: "
        f"{_said(full[0])}, {_said(full[1])}; /readyz then {_said(not_ready)}; freed again: {_said(healed[0])}, "
        f"/readyz {_said(healed[1])}",
    )
    assert all(answer.headers["retry-after"] for answer in answers)
    assert [r.status_code for r in healed] == [200, 200], [r.text for r in healed]
