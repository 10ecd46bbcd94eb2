"""How the launcher is told to stop, and how it stops whatever it was doing at that moment.

Ctrl-C (SIGINT, sent to the whole foreground group: ``make``, the launcher, ``tee``), SIGTERM (``kill``,
``timeout``, ECS), SIGHUP (the terminal closed) and the output's reader going away all mean "stop the stack".
The first raises ``Interrupted`` wherever the launcher is (starting Triton, waiting out a restart's backoff,
supervising), so the stops in its ``finally`` run at once; a second one during those stops makes them immediate
(SIGKILL); any more are ignored, so nothing interrupts the immediate stops.

An exception raised by a signal handler is lost when the handler happens to run inside a finaliser (a response or
socket closed by the garbage collector: Python prints "Exception ignored in" and goes on), so the request is also
kept: ``check`` raises it again, and the supervisor calls it every tick.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A request to stop (a BaseException, as KeyboardInterrupt is: no ``except Exception`` swallows it)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class StopSignals:
    """The handler for ``SIGNALS``: raises ``Interrupted`` for the first two, then ignores them."""

    RAISED_AT_MOST = 2

    def __init__(self) -> None:
        self.received = 0
        self.why: str | None = None  # the first stop asked for

    def install(self) -> None:
        for signum in SIGNALS:
            signal.signal(signum, self._handle)

    def ignore_more(self) -> None:
        """From now on every signal is ignored (the stack is stopped: nothing is left to hurry)."""
        self.received = max(self.received, self.RAISED_AT_MOST)

    def check(self) -> None:
        """Raises ``Interrupted`` if a stop was asked for: the handler's own exception may have been lost."""
        if self.why is not None:
            raise Interrupted(self.why)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received += 1
        self.why = self.why or signal.Signals(signum).name
        if self.received <= self.RAISED_AT_MOST:
            raise Interrupted(signal.Signals(signum).name)
