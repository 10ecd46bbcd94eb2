"""``python -m gateway``: serve the app with uvicorn, configured from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

import os
import signal
import sys
import tempfile

import uvicorn

from gateway.settings import Settings


def logging_config(level: str) -> dict:
    """uvicorn's loggers and ours, one line each, with the request id."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "gateway.observability.RequestIdFilter"}},
        "formatters": {
            "line": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "line", "filters": ["request_id"]},
        },
        "loggers": {
            "gateway": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # Our middleware logs each request with its id; uvicorn's own access log would repeat it.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


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
        log_config=logging_config(settings.log_level),
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        limit_concurrency=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
