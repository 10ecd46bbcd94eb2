"""The README's reliability goals, each with the bound the tests assert (``tests/support/figures.py``: ``hold``).

A goal is what this service promises and the report judges (met or missed, on the machine that ran it); a bound is
several times looser and only fails a test when the mechanism behind the goal broke: a stall on the event loop, a
request that waits for a deadline instead of failing fast, a restart that never comes. Every test of one fact holds
it to the same constant here.
"""

from __future__ import annotations

from bench.goals import CPU_MEAN_BATCH
from tests.support.figures import Goal

# /healthz, probed from a process of its own, while hostile or large uploads are in flight. A walk over a hostile
# file on the event loop took over 60 s; a 12 MP photo copied on it, 0.2-0.4 s.
HEALTHZ_UNDER_LOAD = Goal("ms", at_most=100, bound=1000)
# The gateway's event-loop lag samples over 100 ms (its own histogram): none is the goal, none over 1 s the bound.
LOOP_STALLS_OVER_100_MS = Goal("stalls", at_most=0)
LOOP_STALL_BOUND_S = 1.0
# A normal photo sent beside each hostile case, to the gateway or straight to Triton; past the bound, a case held
# the process (or the decode step) for as long as the classify deadline.
PHOTO_BESIDE_HOSTILE = Goal("s", at_most=2, bound=10)
# Triton killed: the gateway's first 503 (a regression waits for the 10 s classify deadline instead), then serving
# again once Triton is back or the launcher restarted it (a regression never reconnects).
KILL_TO_503 = Goal("s", at_most=1, bound=5)
SERVING_AGAIN = Goal("s", at_most=10, bound=30)
# Concurrent classify requests share ResNet executions (the benchmark's goal at concurrency 16); a batch of one on
# average means batching is off.
MEAN_BATCH_AT_16 = Goal("images", at_least=CPU_MEAN_BATCH, bound=2)


def every(count: int, what: str) -> Goal:
    """A correctness outcome: every one of ``count`` (``what`` says what happened to each); the goal and the bound
    alike, since one short is a mechanism that broke, not a slow machine."""
    return Goal(f"of {count} {what}", at_least=count, bound=count)


def closed_at_its_timeout(timeout_s: float) -> Goal:
    """A connection closed by one of the gateway's protocol timers (head, keep-alive): within a second of the timer is
    the goal; 5 s past it, the timer never fired and something else closed it."""
    return Goal("s", at_most=timeout_s + 1, bound=timeout_s + 5)


# Issue 21's rows (each figure's name starts with its row). A body that a client has no right to send, or that is
# over its route's limit, is refused from the head: the gateway's RSS does not grow by it (before: +600 MB for a
# 100 MB body); past a quarter of the 48 MB sent, it was read.
BODY_NOT_READ = Goal("MiB", at_most=4, bound=12)
# N3: a body trickled below the pace (8 KB/s after a grace of 1 s in the test) answered 408 at the grace's end, not
# left open (before: still open at 200 s).
TRICKLE_CUT_OFF = Goal("s", at_most=2, bound=10)
# N6: tritonserver's own memory after eight files over the byte limit does not grow with their count: less than two
# 32 MiB messages kept (before: +213 MiB, a pooled gRPC request object holding each message it had parsed; past
# three, the pool is back). What is kept is malloc's: +1 to +48 MiB over 9 runs here (MALLOC_ARENA_MAX=2: +1 to +30;
# a fixed MALLOC_MMAP_THRESHOLD_ of 1 MiB: up to +80); one message's worth was the first goal, missed in 3 of 9 runs.
TRITON_KEPT_AFTER_REFUSALS = Goal("MiB", at_most=64, bound=96)
# N7, F11/F20: a Canny instance's own memory after large edge maps, complete or abandoned: ONNX Runtime's arena given
# back (before: +550-776 MiB each, for good).
CANNY_KEPT_AFTER_LARGE_RUNS = Goal("MiB", at_most=64, bound=256)
# N9: the CLI against a server that is not the gateway (endless, dripping, not JSON): a clean error within its
# --timeout (2 s in the test) and its own start (before: 2 GB in 5 s; still running at 45 s with --timeout 20).
CLI_CLEAN_ERROR = Goal("s", at_most=5, bound=30)
# F15: a store writable again: readiness says ready within a probe (before: 503 until a restart).
STORE_READY_AGAIN = Goal("s", at_most=1, bound=10)
# N14, issue 22 item 1: the stack stopped (Ctrl-C, SIGTERM, its pipe's reader gone, the launcher killed): every process
# gone and every port free within 10 s, the bound (before: never, or after 40 s).
STOPPED_WITHIN_S = 10.0
STACK_STOPPED = Goal("s", at_most=STOPPED_WITHIN_S, bound=STOPPED_WITHIN_S)
# Issue 22 item 4: a version written into the repository while serving is mirrored for Triton within the launcher's
# tick (0.25 s) and a copy (before: every 2 s).
VERSION_MIRRORED = Goal("s", at_most=1, bound=10)


def serving_after_wedged_restarts(restart_timeout_s: float, waits_s: tuple[float, ...]) -> Goal:
    """N14: Triton killed and its restarts wedged (a model load that never ends): each wedged start killed at the
    restart bound and tried again after its wait, then serving again as after any kill (before: only 503 for over
    140 s)."""
    assert SERVING_AGAIN.at_most is not None and SERVING_AGAIN.bound is not None
    spent = len(waits_s) * restart_timeout_s + sum(waits_s)
    return Goal("s", at_most=spent + SERVING_AGAIN.at_most, bound=spent + SERVING_AGAIN.bound)
