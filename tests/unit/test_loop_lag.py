"""The event-loop lag histogram sees a stall as long as the stall, and nothing when the loop is free."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from gateway.loop_lag import LoopLag


def _observations(registry: CollectorRegistry, over_s: float) -> tuple[float, float]:
    """(all observations, those over ``over_s``)."""
    count = registry.get_sample_value("gateway_event_loop_lag_seconds_count") or 0.0
    under = registry.get_sample_value("gateway_event_loop_lag_seconds_bucket", {"le": str(over_s)}) or 0.0
    return count, count - under


def test_a_blocked_loop_is_seen_and_a_free_one_is_not() -> None:
    registry = CollectorRegistry()
    lag = LoopLag(registry, interval_s=0.01)

    async def scenario() -> tuple[tuple[float, float], tuple[float, float]]:
        async with lag.watching():
            await asyncio.sleep(0.2)
            free = _observations(registry, 0.1)
            time.sleep(0.3)  # what a blocking call on the event loop does to every request
            await asyncio.sleep(0.05)
            return free, _observations(registry, 0.25)

    (free_count, free_late), (_, blocked_late) = asyncio.run(scenario())
    assert free_count >= 5 and free_late == 0
    assert blocked_late == 1
