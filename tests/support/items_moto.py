"""moto's DynamoDB over HTTP, one request at a time, on a listening socket inherited from the test process.

``python -m tests.support.items_moto --fd N``. It runs in its own process so the emulator gets a core of its own
instead of sharing the tests' GIL. It serves moto's own DynamoDB WSGI app with werkzeug's threaded server, as
``ThreadedMotoServer`` does, plus one lock: moto's backend has none. There a conditional write checks and then
writes, and a cancelled transaction puts back a copy of the whole table taken before it began, so under plain
``ThreadedMotoServer`` the 50-client counter test ended at 45 to 47 with version 51, and concurrent transactions
failed with 500s ("dictionary changed size during iteration"). Real DynamoDB makes each request atomic; the
lock gives the emulator that atomicity back, and the races under test, between requests, are untouched.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


class _QuietHandler(MotoRequestHandler):
    def log_request(self, *args: Any) -> None:
        """No line per request: the 400s (failed conditions) are what the tests provoke."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="a bound, listening TCP socket")
    args = parser.parse_args()
    app = create_backend_app("dynamodb")  # DynamoDB only: skips moto's per-request service lookup
    lock = threading.Lock()

    def one_at_a_time(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))

    server = make_server("127.0.0.1", 0, one_at_a_time, threaded=True, request_handler=_QuietHandler, fd=args.fd)
    server.serve_forever()


if __name__ == "__main__":
    main()
