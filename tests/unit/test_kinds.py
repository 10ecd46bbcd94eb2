"""The gateway's model kinds: its inference routes and readiness come from the contract modules in
``gateway/kinds``, so another kind is one more module there (and its export), nothing else in the gateway."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import gateway.kinds
from gateway.app import create_app
from gateway.kinds import kinds
from gateway.routes import images
from gateway.settings import Settings
from tests.support.fake_triton import FakeTriton

ANOTHER_KIND = """
from fastapi import APIRouter

from gateway.deps import InferenceDep
from gateway.inference import PROBE_IMAGE, Output, encoded
from gateway.kinds import Kind

router = APIRouter(prefix="/v1", tags=["inference"])


@router.post("/detect")
async def detect(inference: InferenceDep) -> dict:
    return {"boxes": []}


async def probe(inference, model):
    return await inference.infer(model, {"IMAGE": encoded(PROBE_IMAGE)}, [Output("BOXES")], 1.0)


KIND = Kind("detection", router, lambda settings: "detect", probe, lambda config, settings: {"route": "/v1/detect"})
"""


@pytest.fixture
def with_another_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``detection.py`` beside the package's own contract modules, as if it had been added to it."""
    (tmp_path / "detection.py").write_text(ANOTHER_KIND)
    monkeypatch.setattr(gateway.kinds, "__path__", [*gateway.kinds.__path__, str(tmp_path)])
    kinds.cache_clear()
    importlib.reload(images)
    yield
    monkeypatch.undo()
    sys.modules.pop("gateway.kinds.detection", None)
    kinds.cache_clear()
    importlib.reload(images)


def test_the_kinds_are_the_contract_modules() -> None:
    assert [kind.name for kind in kinds()] == ["classification", "edges"]


@pytest.mark.usefixtures("with_another_kind")
def test_another_kind_brings_its_routes_and_readiness(tmp_path: Path) -> None:
    fake = FakeTriton()
    settings = Settings(sqlite_path=tmp_path / "items.sqlite3")
    with TestClient(create_app(settings, triton_client=lambda _: fake)) as client:
        assert {"/v1/detect", "/v1/classify", "/v1/edges"} <= set(client.get("/openapi.json").json()["paths"])
        assert client.post("/v1/detect").json() == {"boxes": []}
        assert client.get("/readyz").json()["components"] == {
            "triton": "ready", "classify": "ready", "detect": "ready", "edges": "ready", "items": "ready",
        }  # fmt: skip
    assert {model for model, _ in fake.sent} == {"classify", "detect", "edges"}  # each kind's probe ran
