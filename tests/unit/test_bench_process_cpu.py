"""bench.process_cpu: CPU seconds over a window, attributed to the process tree that spent them."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from bench.process_cpu import CLIENT, CpuWindow, cpu_s

# Burns about 0.3 s of CPU, says so, then waits for its stdin to close (so it never outlives the test).
BURNER = """
import sys, time
started = time.process_time()
while time.process_time() - started < 0.3:
    pass
print("burnt", flush=True)
sys.stdin.read()
"""
# The burner runs as a grandchild: CPU time is counted for the whole tree under a role's pid.
PARENT = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1]])"


def test_a_grandchilds_cpu_time_goes_to_its_role_not_to_the_client() -> None:
    command = [sys.executable, "-c", PARENT, BURNER]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdin is not None and parent.stdout is not None
        window = CpuWindow({"server": parent.pid})
        asyncio.run(window.window_opened(1))
        assert parent.stdout.readline() == "burnt\n"
        asyncio.run(window.window_closed(1))
        parent.stdin.close()  # both processes exit
    seconds = window.seconds[1]
    assert set(seconds) == {CLIENT, "server"}
    assert 0.25 <= seconds["server"] < 5
    assert seconds[CLIENT] < seconds["server"]  # this process only waited


def test_a_process_that_is_gone_counts_nothing() -> None:
    assert cpu_s(2**22 + 12345) == 0.0  # beyond Linux's largest pid


def test_children_apart_go_to_their_own_role() -> None:
    """Triton apart from its python-backend stubs: the root alone under its role, descendants under another."""
    command = [sys.executable, "-c", PARENT, BURNER]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdin is not None and parent.stdout is not None
        window = CpuWindow({"server": parent.pid}, children_apart={"server": "server children"})
        asyncio.run(window.window_opened(1))
        assert parent.stdout.readline() == "burnt\n"
        asyncio.run(window.window_closed(1))
        parent.stdin.close()
    seconds = window.seconds[1]
    assert set(seconds) == {CLIENT, "server", "server children"}
    assert 0.25 <= seconds["server children"] < 5  # the grandchild burnt it
    assert seconds["server"] < 0.1  # the parent only waited
