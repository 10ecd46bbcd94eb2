"""``GATEWAY_LOG_FORMAT=json``: the real gateway process logs one JSON object per line, each with its request id,
as log pipelines (CloudWatch Logs Insights, Loki, ...) expect."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.support.stack import Gateway


def test_json_lines_with_the_request_id(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory(GATEWAY_LOG_FORMAT="json", GATEWAY_TRITON_URL="127.0.0.1:1")
    answer = httpx.get(f"{gateway.url}/v1/items/missing", headers={"x-request-id": "find-me"}, timeout=10)
    assert answer.status_code == 404
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.strip()]  # every line is JSON
    assert {"time", "level", "logger", "request_id", "message"} <= set(lines[0])
    [access] = [line for line in lines if line["request_id"] == "find-me"]
    assert access["logger"] == "gateway.access" and access["message"].startswith("GET /v1/items/missing 404")
