"""The peak RSS per process that a gateway's settings imply: what each unit of a budget or limit adds to it, and
where an operator reads it (the start-up log, /metrics). The reliability tests hold real processes to it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.items.dynamodb import POOL_SIZE
from gateway.settings import (
    BODY_COPIES,
    CONNECTION_BYTES,
    EDGE_MAP_BYTES_PER_PIXEL,
    JSON_OBJECT_BYTES,
    PROBE_CONNECTIONS,
    KiB,
    MiB,
    Settings,
)


def test_each_unit_of_a_budget_costs_the_copies_made_of_it() -> None:
    base = Settings()

    def more(**changes: object) -> int:
        return Settings(**changes).peak_rss_bytes - base.peak_rss_bytes

    assert more(max_body_bytes_in_flight=base.max_body_bytes_in_flight + MiB) == BODY_COPIES * MiB
    assert more(max_pixels_in_flight=base.max_pixels_in_flight + 1000) == EDGE_MAP_BYTES_PER_PIXEL * 1000
    # Each open connection with a head, uvicorn's buffer and an item body parsed (the larger of that and a listing
    # page answer at the defaults).
    assert more(max_head_bytes=base.max_head_bytes + KiB) == (base.max_connections + PROBE_CONNECTIONS) * KiB
    assert more(max_connections=base.max_connections + 1) == (
        CONNECTION_BYTES + base.max_head_bytes + JSON_OBJECT_BYTES * base.max_item_bytes
    )
    # Pages are built on the store's threads: SQLite's readers, or DynamoDB's pool.
    page = JSON_OBJECT_BYTES * (base.max_page_bytes + base.max_item_bytes)
    assert more(sqlite_readers=base.sqlite_readers + 1) == page
    assert more(item_store="dynamodb") == (POOL_SIZE - base.sqlite_readers) * page


def test_the_figure_is_logged_at_start_and_exposed_as_a_gauge(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(sqlite_path=tmp_path / "items.sqlite3", max_body_bytes_in_flight=64 * MiB)
    with caplog.at_level(logging.INFO, logger="gateway"):
        app = create_app(settings)
    assert f"settings imply a peak RSS of {settings.peak_rss_bytes // MiB} MiB per process" in caplog.messages
    exposed = TestClient(app).get("/metrics").text.splitlines()
    [gauge] = [line for line in exposed if line.startswith("gateway_implied_peak_rss_bytes ")]
    assert float(gauge.split()[1]) == settings.peak_rss_bytes
