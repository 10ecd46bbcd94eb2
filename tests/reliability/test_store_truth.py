"""What the item API says about its store is true, against a real gateway process on a real SQLite file: while
the file cannot be written, readiness says so (and says ready again once it can, with no restart), and an
``Idempotency-Key`` replayed after its item was deleted does not answer 201 with a ``Location`` that is gone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.items.sqlite import SQLiteItemStore
from tests.support.figures import hold
from tests.support.goals import STORE_READY_AGAIN, every
from tests.support.items_support import check_error, closed_port
from tests.support.stack import Gateway

pytestmark = pytest.mark.reliability


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """``path`` cannot be opened for writing by the gateway, root or not (root ignores file modes, not the
    immutable flag)."""
    flag = (["chattr", "+i"], ["chattr", "-i"]) if os.geteuid() == 0 else (["chmod", "444"], ["chmod", "644"])
    subprocess.run([*flag[0], str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run([*flag[1], str(path)], check=True)


def _items_readiness(client: httpx.Client) -> str:
    return str(client.get("/readyz").json()["components"]["items"])


def test_readiness_says_when_the_store_cannot_be_written_and_heals_without_a_restart(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    path = tmp_path / "items.sqlite3"
    seeded = SQLiteItemStore(path, max_data_bytes=1024)
    asyncio.run(seeded.put("kept", {"n": 1}))
    asyncio.run(seeded.close())
    with unwritable(path):
        gateway = gateway_factory(GATEWAY_SQLITE_PATH=str(path), GATEWAY_TRITON_URL=f"127.0.0.1:{closed_port()}")
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            check_error(client.put("/v1/items/kept", json={"n": 2}), 503, "store_unavailable")
            assert client.get("/v1/items/kept").json()["data"] == {"n": 1}  # reads still answer
            while_read_only = _items_readiness(client)
    healed_at = time.monotonic()
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        while (ready := _items_readiness(client)) != "ready" and time.monotonic() - healed_at < 30:
            time.sleep(0.1)  # readiness is polled, as a load balancer would
        ready_after_s = time.monotonic() - healed_at
        written = client.put("/v1/items/kept", json={"n": 3})
    seen = f"readiness while read-only: {while_read_only!r}; then a write: {written.status_code}"
    hold(
        "F15 a store read-only, then writable: ready again (no restart) after",
        ready_after_s,
        STORE_READY_AGAIN,
        detail=seen,
    )
    assert while_read_only.startswith("unavailable") and "written" in while_read_only, while_read_only
    assert ready == "ready" and written.status_code == 200, (ready, written.text)


def test_a_replay_after_delete_does_not_point_at_a_deleted_item(bare_gateway: Gateway) -> None:
    key = {"Idempotency-Key": "order-2041"}
    with httpx.Client(base_url=bare_gateway.url, timeout=10) as client:
        created = client.post("/v1/items", json={"sku": 2041}, headers=key)
        assert created.status_code == 201
        assert client.delete(created.headers["Location"]).status_code == 204
        replayed = client.post("/v1/items", json={"sku": 2041}, headers=key)
        location = replayed.headers.get("Location")
        followed = client.get(location).status_code if location else None
    refused = replayed.status_code == 404 and location is None
    seen = f"{replayed.status_code}, Location {location!r} -> {followed}"
    hold(
        "F21 an Idempotency-Key replayed after DELETE: 404 with no Location",
        int(refused),
        every(1, "replays"),
        detail=seen,
    )
    assert "deleted" in check_error(replayed, 404, "not_found")
