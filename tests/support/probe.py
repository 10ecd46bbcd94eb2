"""``Probe(url)``: GET ``url`` every 10 ms from a process of its own while a block runs, so that what it measures
is the server's delay, not the test's own event loop (busy sending uploads) nor its GIL.

``python -m tests.probe URL`` is that process: it probes on one kept-alive connection until its standard input
closes, then prints each answer's latency (ms) as a JSON list.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


class Probe:
    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_ms: list[float] = []
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Probe:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.probe", self.url],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._process.stdout is not None and self._process.stdout.readline() == "probing\n"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        out, _ = self._process.communicate(timeout=60)
        self.latencies_ms = json.loads(out)

    @property
    def worst_ms(self) -> float:
        return max(self.latencies_ms)


def main(url: str) -> None:
    waiting = threading.Thread(target=sys.stdin.read, daemon=True)
    waiting.start()
    latencies = []
    with httpx.Client(timeout=60) as client:
        client.get(url).raise_for_status()
        print("probing", flush=True)
        while waiting.is_alive():
            started = time.perf_counter()
            client.get(url).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
    print(json.dumps(latencies), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
