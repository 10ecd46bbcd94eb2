"""N9: ``tritonserve`` against servers that answer as the gateway never would: one that sends without end, one that
drips a byte a second, one whose answer is not JSON. The client reads an answer as it streams, up to what a real
one can be, within ``--timeout`` for the whole call: each ends with that file's clean error, never a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support import not_the_gateway
from tests.support.figures import hold
from tests.support.goals import CLI_CLEAN_ERROR
from tests.support.not_the_gateway import Hostile, tritonserve

pytestmark = pytest.mark.reliability
hostile, photos_here = not_the_gateway.hostile, not_the_gateway.photos_here


@pytest.mark.parametrize(
    ("hostile", "code", "message"),
    [
        ("endless", "answer_too_large", "the answer is over 1,048,576 bytes"),
        ("drip", "timeout", "no whole answer within 2 s (--timeout)"),
        ("not json", "invalid_answer", "the answer is not JSON"),
    ],
    indirect=["hostile"],
)
def test_a_server_that_is_not_the_gateway_gets_a_clean_error(
    hostile: Hostile, photos_here: Path, code: str, message: str
) -> None:
    photo = str(next(photos_here.glob("*.jpg")))
    started = time.monotonic()
    run = tritonserve("classify", photo, "--url", hostile.url, "--timeout", "2", "--format", "json", timeout=60)
    seconds = time.monotonic() - started
    assert run.returncode == 1 and "Traceback" not in run.stderr
    [result] = json.loads(run.stdout)
    assert result["error"]["code"] == code and message in result["error"]["message"]
    # Past the bound, the call hung (the drip alone would take 1000 s).
    hold(
        f"N9 the CLI against a server answering {hostile.mode!r}: a clean error after",
        seconds,
        CLI_CLEAN_ERROR,
        detail=f"{code}: {result['error']['message']}",
    )
