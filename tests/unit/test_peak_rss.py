"""The peak RSS per process that a gateway's settings imply: a term measured in-process (what a byte of JSON costs),
and where an operator reads the figure (the start-up log, /metrics). The reliability tests hold real processes to
it, their connections to its per-connection term (tests/reliability/test_peak_rss_terms.py)."""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.items.document import MAX_DEPTH, parse_object
from gateway.settings import JSON_OBJECT_BYTES, MiB, Settings


def _densest_items(size: int) -> dict[str, bytes]:
    """Item bodies of ``size`` bytes made of what costs Python the most memory per byte of JSON."""

    def items(unit: str) -> bytes:
        prefix, suffix = '{"a":[', "]}"
        return (prefix + ",".join([unit] * ((size - len(prefix) - len(suffix)) // (len(unit) + 1))) + suffix).encode()

    return {
        "lists of one element nested to the depth limit": items("[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)),
        "lists of one empty list": items("[[]]"),
        "empty objects": items("{}"),
        "objects of one key": items('{"a":0}'),
        "zeros": items("0"),
    }


def test_a_byte_of_json_parses_into_at_most_json_object_bytes() -> None:
    """Measured, not restated: the peak memory parse_object allocates for the densest bodies an item may be, per
    byte of JSON (the item and page terms of Settings.peak_rss_bytes count JSON_OBJECT_BYTES a byte)."""
    per_byte = {}
    for name, body in _densest_items(Settings().max_item_bytes).items():
        tracemalloc.start()
        try:
            parse_object(body)
            per_byte[name] = tracemalloc.get_traced_memory()[1] / len(body)
        finally:
            tracemalloc.stop()
    assert max(per_byte.values()) <= JSON_OBJECT_BYTES, per_byte


def test_the_figure_is_logged_at_start_and_exposed_as_a_gauge(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(sqlite_path=tmp_path / "items.sqlite3", max_body_bytes_in_flight=64 * MiB)
    with caplog.at_level(logging.INFO, logger="gateway"):
        app = create_app(settings)
    assert f"settings imply a peak RSS of {settings.peak_rss_bytes // MiB} MiB per process" in caplog.messages
    exposed = TestClient(app).get("/metrics").text.splitlines()
    [gauge] = [line for line in exposed if line.startswith("gateway_implied_peak_rss_bytes ")]
    assert float(gauge.split()[1]) == settings.peak_rss_bytes
