"""The unit tier starts no server and needs no export (``make test-unit``, under a minute): a test here that asks for a
server or the exported repository, or starts a Triton, a gateway or moto, fails and says where it belongs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# The session fixtures (tests/conftest.py) that start a server or need `python -m export`'s repository.
SERVER_FIXTURES = {"test_repository", "second_version", "triton", "gated", "gateway", "bare_gateway", "gateway_factory"}
MOVE = "it belongs in tests/integration (or tests/reliability): the unit tier starts no server and needs no export"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fails a test that asks for one of the session's server fixtures (a module's own fixture of the same name, such
    as a parsed Dockerfile called ``triton``, is fine)."""
    here = Path(__file__).parent.relative_to(item.config.rootpath).as_posix()
    resolved = getattr(item, "_fixtureinfo", None)
    definitions = resolved.name2fixturedefs if resolved else {}
    asked = {
        name for name in SERVER_FIXTURES if name in definitions and not definitions[name][-1].baseid.startswith(here)
    }
    if asked:
        pytest.fail(f"{item.nodeid} asks for {', '.join(sorted(asked))}: {MOVE}", pytrace=False)


@pytest.fixture(autouse=True)
def no_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Starting a Triton or a gateway (both run as a launcher Service) or moto's server fails the test."""
    from moto.server import ThreadedMotoServer

    from launcher.process import Service

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"{type(self).__name__}.start() in a unit test: {MOVE}")

    monkeypatch.setattr(Service, "start", refuse)
    monkeypatch.setattr(ThreadedMotoServer, "start", refuse)
    yield
