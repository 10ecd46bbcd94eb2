"""Server processes, one way for everyone: start with a log, wait until ready, watch, stop in order.

The launcher (``make serve``), the benchmark and the tests all run Triton, the gateway and the peers through
``Service``: each child gets its own session (a Ctrl-C reaches only the parent, which stops them in order) and
its own log file, readiness is a probe that answers, never a sleep, and a child that dies while starting fails
at once with its log's tail. A watchdog process (``launcher/watchdog.py``) stops every child still running when
the parent dies without stopping them (killed, crashed): no server outlives the process that started it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
PORTS_FROM = 20_000  # free_ports draws from here up: below, the ports people's own services use (8000s, 9000s)
ROOT = Path(__file__).resolve().parent.parent  # where children run: ``python -m gateway`` and friends resolve here
T = TypeVar("T")
# A server that never became ready has no requests to finish: it gets this long after SIGTERM, then SIGKILL.
UNREADY_STOP_S = 2.0


class ServiceError(RuntimeError):
    """A server process exited or never became ready; the message carries its log's tail."""


class PortTaken(ServiceError):
    """The server could not bind its port (another process has it): retry on other ports, or name it."""


_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range, where it picks the ports of outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """Distinct ports free now, held open together while chosen. They are drawn at random from below the kernel's
    ephemeral range, which no outgoing connection is given, so between this call and our server's bind only
    another chooser can take one: servers that fail so raise ``PortTaken``, and ``on_free_ports`` retries. Where
    that range leaves no room, the kernel chooses."""
    below = range(PORTS_FROM, _ephemeral_low())
    candidates = random.sample(below, min(len(below), 8 * count)) if len(below) >= 1000 else []
    sockets: list[socket.socket] = []
    try:
        for port in candidates:
            if len(sockets) == count:
                break
            sock = socket.socket()
            sockets.append(sock)
            try:
                sock.bind((host, port))
            except OSError:
                sockets.pop().close()
        while len(sockets) < count:
            sockets.append(socket.socket())
            sockets[-1].bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def taken_ports(ports: dict[str, int], host: str = LOOPBACK) -> list[str]:
    """``"name port (held by ...)"`` for each port some other process holds: checked before anything starts."""
    return [f"{name} {port} ({port_holder(port)})" for name, port in ports.items() if not port_is_free(port, host)]


def _socket_inodes(port: int, listening: bool = False) -> set[str]:
    """The ``socket:[inode]`` links of the TCP sockets bound to ``port`` on this host (only those that listen)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                bound = int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0"
                if bound and (not listening or fields[3] == _TCP_LISTEN):
                    inodes.add(f"socket:[{fields[9]}]")
    return inodes


def _holders(inodes: set[str]) -> set[int]:
    """The processes (of this user, as far as /proc tells) with one of ``inodes`` open."""
    pids = set()
    if inodes:
        for fd in Path("/proc").glob("[0-9]*/fd/*"):
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    pids.add(int(fd.parent.parent.name))
    return pids


def port_holder(port: int) -> str:
    """Who holds a TCP port, as far as /proc tells this user: ``held by pid 123: python -m launcher ...``."""
    holders = []
    for pid in _holders(_socket_inodes(port)):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            holders.append(f"pid {pid}: {command.strip()[:120]}")
    if not holders:
        return "held by a process of another user, or just released"
    return "held by " + "; ".join(sorted(set(holders)))


def listens_in_group(port: int, group: int) -> bool:
    """Whether a process of process group ``group`` listens on ``port``: a probe answered on a port a server was
    given is its answer only then (another process may have taken the port first, and answer for it)."""
    for pid in _holders(_socket_inodes(port, listening=True)):
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == group:
                return True
    return False


def on_free_ports(count: int, start: Callable[[list[int]], T], attempts: int = 3) -> T:
    """``start(ports)`` on fresh free ports, again on others if a port was taken in between (bounded)."""
    for attempt in range(attempts):
        try:
            return start(free_ports(count))
        except PortTaken:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# Our servers are on this host: never through an HTTP proxy the environment names (http_proxy without a no_proxy for
# 127.0.0.1 would leave every probe unanswered), and not through urllib's global opener, which keeps the proxies
# the environment had on its first use.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """Whether ``url`` answers 200 now."""
    with contextlib.suppress(OSError), DIRECT.open(url, timeout=timeout_s) as answer:
        return bool(answer.status == 200)
    return False


class _Watchdog:
    """This process's watchdog (``launcher/watchdog.py``), started with the first server: a pipe that each server
    registers its process group on before it runs, and that closes when this process dies, however it dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0  # the pid that started it: a forked child must not share its parent's

    def fd(self) -> int:
        with self._lock:
            if self._fd is None or self._owner != os.getpid():
                read, write = os.pipe()  # both close-on-exec: only the watchdog gets the read end, as its stdin
                # It ends after we do (its stdin closes then): never waited for.
                self._process = subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("watchdog.py"))],
                    stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
                os.close(read)
                self._fd, self._owner = write, os.getpid()
            return self._fd

    def registering(self) -> Callable[[], None]:
        """What a server's child process runs before ``exec``: it puts its own group on the list, so no moment
        exists when it runs unlisted. Runs after fork: an ``os.write`` and nothing that takes a lock."""
        fd = self.fd()

        def register() -> None:
            with contextlib.suppress(OSError):  # no watchdog (it was killed): start anyway
                os.write(fd, b"+%d\n" % os.getpid())

        return register

    def delete_if_orphaned(self, pattern: str) -> None:
        """Have the watchdog delete what matches ``pattern`` (an absolute glob) should this process die before it
        forgets it: what a server leaves behind that its owner removes on stopping it."""
        fd = self.fd()
        with contextlib.suppress(OSError):  # no watchdog (it was killed): nothing else to do
            os.write(fd, b"+%s\n" % os.fsencode(pattern))

    def forget(self, entry: int | str) -> None:
        """A group stopped, or a pattern its owner has deleted itself."""
        line = b"-%d\n" % entry if isinstance(entry, int) else b"-%s\n" % os.fsencode(entry)
        with self._lock:
            if self._fd is not None and self._owner == os.getpid():
                with contextlib.suppress(OSError):
                    os.write(self._fd, line)


WATCHDOG = _Watchdog()


class Service:
    """A server subprocess in its own session with its log in a file, ready when ``probe`` says so."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        probe: Callable[[], bool],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        important: Callable[[str], bool] | None = None,
        ports: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.probe = probe
        self.env = env
        self.cwd = cwd
        self.important = important  # the log lines worth showing when it fails (else its last lines)
        self.ports = tuple(ports)  # the ports it was given: ready only once it listens on each of them itself
        self.url = ""  # where it serves HTTP, for those that do
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def http(
        cls, name: str, command: list[str], log_path: Path, url: str, ready_path: str, env: dict[str, str] | None = None
    ) -> Service:
        """An HTTP server at ``url``, ready when ``url + ready_path`` answers 200."""
        ports = () if (port := urlsplit(url).port) is None else (port,)
        service = cls(name, command, log_path, lambda: http_ok(url + ready_path), env, ROOT, ports=ports)
        service.url = url
        return service

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def start(self, timeout_s: float | None = None) -> Service:
        """Start it; with ``timeout_s``, also wait until ready (and stop it again if it never gets there)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches the parent only; it stops us in order
                preexec_fn=WATCHDOG.registering(),  # and if the parent dies without stopping us, the watchdog does
            )  # fmt: skip
        if timeout_s is not None:
            try:
                self.wait_ready(timeout_s)
            except BaseException:  # not ready in time, or the parent was interrupted while it waited
                self.stop(UNREADY_STOP_S)
                raise
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float) -> None:
        """Poll the probe until it answers; fail at once if the process dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = self.log_tail()
                error = PortTaken if "already in use" in tail.lower() else ServiceError
                raise error(f"{self.name} exited with code {self.process.returncode}:\n{tail}")
            if self.probe() and all(listens_in_group(port, self.process.pid) for port in self.ports):
                return  # its own answer: it runs in a session (and process group) of its own
            time.sleep(0.1)  # the polling interval, not a guess at readiness
        raise ServiceError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The log's last ``lines`` (of the important ones, when there are any), and where the whole log is."""
        text = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        picked = [line for line in text if self.important(line)] if self.important else []
        return "\n".join((picked or text)[-lines:]) + f"\n(full log: {self.log_path})"

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit code, or None if it never ran. Then whatever the
        process left behind in its session (worker processes, stubs) is killed: nothing outlives a stop."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the process alone: its own graceful shutdown runs its children
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session's group (start_new_session)
        WATCHDOG.forget(self.process.pid)
        return self.process.returncode

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
