"""bench.process_cpu reads each thread's nanoseconds from schedstat, and puts each Triton stub under its model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from bench.process_cpu import CLIENT, STUB, CpuWindow, thread_ns, triton_stub_role

# Burns about 0.2 s of CPU in a thread started after the window opened, then in the main thread; says so, waits.
THREADED = """
import sys, threading, time

def burn(seconds):
    started = time.thread_time()
    while time.thread_time() - started < seconds:
        pass

sys.stdin.readline()
worker = threading.Thread(target=burn, args=(0.2,))
worker.start()
worker.join()
burn(0.2)
print("burnt", flush=True)
sys.stdin.read()
"""


def test_thread_ns_reads_every_thread_of_a_process() -> None:
    threads = thread_ns([os.getpid()])
    assert threads and all(ns > 0 for ns in threads.values())
    assert thread_ns([2**22 + 12345]) == {}  # beyond Linux's largest pid: gone, nothing


def test_each_thread_counts_its_own_difference() -> None:
    """A thread that lives and dies inside the window is not seen at either end: its 0.2 s are lost (documented);
    the main thread's 0.2 s count, and nothing is counted twice or goes negative."""
    with subprocess.Popen(
        [sys.executable, "-c", THREADED], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        window = CpuWindow({"server": child.pid})
        asyncio.run(window.window_opened(1))
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "burnt\n"
        asyncio.run(window.window_closed(1))
        child.stdin.close()
    seconds = window.seconds[1]
    assert set(seconds) == {CLIENT, "server"}
    assert 0.18 <= seconds["server"] < 0.35


def test_each_stub_is_counted_under_the_model_it_runs(tmp_path: Path) -> None:
    script = tmp_path / "models" / "resnet50" / "1" / "model.py"
    script.parent.mkdir(parents=True)
    script.write_text("import sys\nprint('ready', flush=True)\nsys.stdin.read()\n")
    command = [sys.executable, str(script)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as stub:
        assert stub.stdin is not None and stub.stdout is not None
        assert stub.stdout.readline() == "ready\n"  # its command line is readable once it runs
        assert triton_stub_role(stub.pid) == STUB + "resnet50"
        stub.stdin.close()
    assert triton_stub_role(os.getpid()).startswith(STUB)  # not a stub: a role all the same
