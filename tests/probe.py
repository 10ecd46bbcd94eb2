"""``python -m tests.probe URL``: GET ``URL`` every 10 ms on one kept-alive connection until standard input
closes, then print each answer's latency (ms) as a JSON list. A process of its own, so what it measures is the
server's delay, not the test's own event loop busy sending uploads."""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx


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
