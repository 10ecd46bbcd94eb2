"""Tracing is optional: with no endpoint configured, the app never loads OpenTelemetry's SDK (traced for real:
tests/integration/test_tracing.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.stack import ROOT


def test_no_endpoint_no_opentelemetry() -> None:
    """Off by default, at no cost: the app is built and serves without loading OpenTelemetry's SDK or exporter
    (its API may come in through other libraries; it does nothing without an SDK)."""
    script = (
        "import sys; from fastapi.testclient import TestClient; from gateway.app import create_app; "
        "client = TestClient(create_app()); assert client.get('/healthz').status_code == 200; "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
