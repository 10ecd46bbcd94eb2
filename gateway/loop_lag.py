"""How late the event loop gets to what is due: the number that shows whether anything holds up the process.

Every request of a gateway process shares one event loop; work that holds it (a large copy, a walk over a
hostile file, too little CPU) delays every other request, ``/healthz`` included. A task that sleeps for a fixed
interval and measures how late it wakes sees every such stall longer than the interval, at negligible cost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, Histogram

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class LoopLag:
    def __init__(self, registry: CollectorRegistry, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.lag = Histogram(
            "gateway_event_loop_lag_seconds",
            f"how late the event loop woke a task due every {interval_s:g} s (every request waits as long)",
            buckets=LAG_BUCKETS,
            registry=registry,
        )

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Measure while the block runs (the app's lifespan)."""
        task = asyncio.get_running_loop().create_task(self._watch())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.lag.observe(max(0.0, loop.time() - due))
