"""``python -m gateway``: serve the app with uvicorn, configured from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

import os
import signal
import sys
import tempfile

import uvicorn

from gateway.logs import logging_config
from gateway.settings import Settings


def main() -> int:
    settings = Settings()
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete; a graceful stop is a success.
    signal.signal(signal.SIGTERM, lambda *_: None)
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several worker processes: /metrics must add up all of them.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_config(settings.log_level, settings.log_format),
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        limit_concurrency=None,
        http="gateway.protocol:BoundedHttpToolsProtocol",  # by name: worker processes import it too
        timeout_keep_alive=settings.keep_alive_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
