"""The gateway's own CPU per request, by process: ``python -m tests.support.gateway_cpu``.

Starts a real Triton on the test repository and one gateway per source tree given (this checkout, and with
``--baseline DIR`` another tree, e.g. ``git archive main gateway servables imaging | tar -x -C DIR``), then sends
the same requests to each in turn, interleaved round by round, and reads each gateway's CPU time from
``/proc/<pid>/task/*/schedstat`` around them: CPU time, not wall time, so other work on a shared host moves the
figures little. Prints CPU-ms per request for every image, concurrency and tree, per round and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from launcher.process import Service, http_ok, on_free_ports
from launcher.triton import Ports, TritonServer
from tests.support.stack import ROOT, TEST_REPOSITORY

PHONE_SIZE = (4032, 3024)
PHONE_QUALITY = 92


def images() -> dict[str, bytes]:
    """A 60 KB ImageNet-size photograph and a 3.3 MB phone photo (the same photograph upscaled with a camera's
    grain, quality 92), as the benchmark makes them."""
    from bench.inputs import camera_sized, photographs

    phone = cv2.imencode(".jpg", camera_sized("coffee", PHONE_SIZE), [cv2.IMWRITE_JPEG_QUALITY, PHONE_QUALITY])[1]
    return {"imagenet": photographs(("coffee",))["coffee"], "phone": phone.tobytes()}


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total


@dataclass
class Gateway:
    name: str
    url: str
    service: Service

    @property
    def pid(self) -> int:
        assert self.service.process is not None
        return self.service.process.pid


@contextmanager
def gateway(name: str, tree: Path, triton_url: str, folder: Path) -> Iterator[Gateway]:
    """``python -m gateway`` run from ``tree`` (its packages first on ``sys.path``) on a free port."""

    def start(ports: list[int]) -> Gateway:
        url = f"http://127.0.0.1:{ports[0]}"
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "GATEWAY_PORT": str(ports[0]),
            "GATEWAY_TRITON_URL": triton_url,
            "GATEWAY_SQLITE_PATH": str(folder / f"{name}.sqlite3"),
        }
        command = [sys.executable, "-m", "gateway"]
        service = Service(
            name, command, folder / f"{name}.log", lambda: http_ok(f"{url}/healthz"), env, tree, ports=ports[:1]
        )
        service.start(60)
        return Gateway(name, url, service)

    started = on_free_ports(1, start)
    try:
        yield started
    finally:
        started.service.stop(30)


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    body = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"answered {status.decode()}: {body[:300]!r}")


async def load(url: str, path: str, body: bytes, requests: int, concurrency: int) -> None:
    """``requests`` POSTs of ``body`` over ``concurrency`` keep-alive connections."""
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    left = requests

    async def worker() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while left > 0:
                left -= 1
                await _one(reader, writer, request)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def measure(target: Gateway, path: str, body: bytes, requests: int, concurrency: int) -> float:
    """CPU-ms of the gateway per request, over ``requests`` sent after a short warm-up."""
    asyncio.run(load(target.url, path, body, 2 * concurrency, concurrency))
    before = cpu_ns(target.pid)
    asyncio.run(load(target.url, path, body, requests, concurrency))
    return (cpu_ns(target.pid) - before) / requests / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="another source tree to measure beside this checkout")
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement (phone: a quarter)")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated levels")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--path", default="/v1/classify")
    parser.add_argument("--image", action="append", choices=("imagenet", "phone"), help="default: both")
    args = parser.parse_args()
    bodies = {name: data for name, data in images().items() if name in (args.image or ("imagenet", "phone"))}
    levels = [int(level) for level in args.concurrency.split(",")]
    trees = {"new": ROOT} | ({"old": args.baseline.resolve()} if args.baseline else {})
    folder = Path(tempfile.mkdtemp(prefix="gateway-cpu-"))
    with ExitStack() as stack:
        triton = on_free_ports(
            3, lambda ports: TritonServer(TEST_REPOSITORY, Ports(*ports), log_path=folder / "triton.log").start()
        )
        stack.callback(triton.stop)
        gateways = [stack.enter_context(gateway(name, tree, triton.grpc_url, folder)) for name, tree in trees.items()]
        figures: dict[tuple[str, int, str], list[float]] = {}
        for round_ in range(args.rounds):
            order = gateways if round_ % 2 == 0 else gateways[::-1]
            for image, body in bodies.items():
                requests = args.requests if image == "imagenet" else max(args.requests // 4, 16)
                for level in levels:
                    for target in order:
                        value = measure(target, args.path, body, requests, level)
                        figures.setdefault((image, level, target.name), []).append(value)
                        print(f"round {round_ + 1} {image:8} c={level:<3} {target.name}: {value:.2f} CPU-ms/request",
                              flush=True)  # fmt: skip
        print(f"\n{'image':8} {'c':>3} " + " ".join(f"{g.name + ' (median, range)':>28}" for g in gateways))
        for image in bodies:
            for level in levels:
                cells = []
                for target in gateways:
                    values = figures[(image, level, target.name)]
                    cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
                print(f"{image:8} {level:>3} " + " ".join(f"{cell:>28}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
