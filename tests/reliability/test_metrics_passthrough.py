"""``/metrics/triton`` under scrape floods and a stalled upstream, against a real gateway process: the pass-through
shares one client and one upstream fetch at a time, is bounded in time, and never stalls the event loop, so
``/healthz`` (probed from a process of its own) keeps answering."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from launcher.triton import TritonServer
from tests.support.figures import PeakRss, hold, record
from tests.support.goals import HEALTHZ_UNDER_LOAD
from tests.support.items_support import closed_port
from tests.support.probe import Probe
from tests.support.stack import Gateway

pytestmark = pytest.mark.reliability

SCRAPERS = 300
ADDRESSES = 10  # scrapers come from ten loopback addresses, so no per-client connection limit turns them away


async def _scrape_all(url: str) -> Counter[int | str]:
    async def scrape(client: httpx.AsyncClient) -> int | str:
        try:
            return (await client.get(url)).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    clients = [
        httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address=f"127.0.1.{n + 1}"),
            timeout=60,
            limits=httpx.Limits(max_connections=SCRAPERS // ADDRESSES),
        )
        for n in range(ADDRESSES)
    ]
    try:
        answers = await asyncio.gather(*(scrape(clients[n % ADDRESSES]) for n in range(SCRAPERS)))
    finally:
        for client in clients:
            await client.aclose()
    return Counter(answers)


def _flood(gateway: Gateway, path: str = "/metrics/triton") -> tuple[Counter[int | str], float, str]:
    """300 concurrent GETs of ``path`` with /healthz probed meanwhile: the answers, /healthz's worst latency, and
    what else was seen (the answers, the gateway's RSS growth) as a figure's detail."""
    assert gateway.process is not None
    with PeakRss(gateway.process.pid) as peak, Probe(f"{gateway.url}/healthz") as probe:
        before = peak.mib
        statuses = asyncio.run(_scrape_all(f"{gateway.url}{path}"))
    return statuses, probe.worst_ms, f"answers {dict(statuses)}; gateway RSS +{peak.mib - before:.0f} MiB"


def test_three_hundred_concurrent_scrapes_do_not_stall_healthz(
    gateway_factory: Callable[..., Gateway], triton: TritonServer
) -> None:
    gateway = gateway_factory(GATEWAY_TRITON_URL=triton.grpc_url, GATEWAY_TRITON_METRICS_URL=triton.metrics_url)
    # What any burst of 300 requests costs here, for comparison (a measurement): 300 at once of the cheapest route.
    _, alone_ms, seen = _flood(gateway, "/healthz")
    record(
        "N8 for comparison: /healthz worst during 300 concurrent GET /healthz", round(alone_ms), unit="ms", detail=seen
    )
    statuses, worst_ms, seen = _flood(gateway)
    # Past the bound (ten times the goal): a stall (6.6 s before), not this machine's noise.
    hold("N8 /healthz worst during 300 concurrent /metrics/triton scrapes", worst_ms, HEALTHZ_UNDER_LOAD, detail=seen)
    assert statuses == Counter({200: SCRAPERS}), statuses


@pytest.fixture
def stalled_upstream() -> Iterator[str]:
    """A metrics URL whose server takes connections into its backlog and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/metrics"


def test_a_stalled_upstream_times_out_and_does_not_stall_healthz(
    gateway_factory: Callable[..., Gateway], stalled_upstream: str
) -> None:
    gateway = gateway_factory(
        GATEWAY_TRITON_URL=f"127.0.0.1:{closed_port()}",
        GATEWAY_TRITON_METRICS_URL=stalled_upstream,
        GATEWAY_TRITON_METRICS_TIMEOUT_S="2",
    )
    statuses, worst_ms, seen = _flood(gateway)
    hold(
        "N8 /healthz worst during 300 concurrent scrapes of a stalled upstream (2 s timeout)",
        worst_ms,
        HEALTHZ_UNDER_LOAD,
        detail=seen,
    )
    assert statuses == Counter({503: SCRAPERS}), statuses
