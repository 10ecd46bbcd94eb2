"""The benchmark's REST clients against a real loopback server: a level with more clients than the gateway takes
from one address (128) connects from several loopback addresses, each under ``CLIENTS_PER_ADDRESS``, and every
request is answered; a level of one address's worth, or a remote server, connects as the system chooses."""

from __future__ import annotations

import asyncio
import math
import socket
from collections import Counter

from aiohttp import web

from bench.scenarios import CLIENTS_PER_ADDRESS, PER_ADDRESS_CAP, HttpClients, call
from gateway.settings import Settings

CLIENTS = 200  # over the gateway's 128 per address


async def _serve_until_all_connected(clients: int) -> tuple[Counter[str], list[bytes]]:
    """Every request is held until ``clients`` are in flight at once, so each has a connection of its own."""
    arrived = asyncio.Event()
    waiting = 0
    addresses: Counter[str] = Counter()

    async def hold(request: web.Request) -> web.Response:
        nonlocal waiting
        waiting += 1
        if waiting == clients:
            arrived.set()
        await asyncio.wait_for(arrived.wait(), timeout=30)
        return web.Response(text=request.remote or "")

    app = web.Application()
    app.router.add_get("/held", hold)
    runner = web.AppRunner(app)
    await runner.setup()
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    await web.SockSite(runner, listening).start()
    try:
        async with HttpClients(f"http://127.0.0.1:{port}", clients) as client:
            answers = await asyncio.gather(*(call(client, "GET", "/held") for _ in range(clients)))
    finally:
        await runner.cleanup()
    addresses.update(answer.decode() for answer in answers)
    return addresses, answers


def test_a_level_over_one_address_s_share_connects_from_several_loopback_addresses() -> None:
    assert CLIENTS_PER_ADDRESS < PER_ADDRESS_CAP == Settings.model_fields["max_connections_per_client"].default
    addresses, answers = asyncio.run(_serve_until_all_connected(CLIENTS))
    assert len(answers) == CLIENTS
    assert sorted(addresses) == [f"127.0.0.{n}" for n in range(1, math.ceil(CLIENTS / CLIENTS_PER_ADDRESS) + 1)]
    assert max(addresses.values()) <= CLIENTS_PER_ADDRESS


def test_one_address_s_worth_connects_as_the_system_chooses() -> None:
    addresses, _ = asyncio.run(_serve_until_all_connected(CLIENTS_PER_ADDRESS))
    assert addresses == Counter({"127.0.0.1": CLIENTS_PER_ADDRESS})


def test_a_remote_server_is_reached_from_the_system_s_address_whatever_the_level() -> None:
    async def sessions() -> int:
        async with HttpClients("http://192.0.2.1:8080", 1000) as client:
            return len(client.sessions)

    assert asyncio.run(sessions()) == 1
