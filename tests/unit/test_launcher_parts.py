"""The launcher's parts that need no server: the versions a restart keeps, its output when the reader leaves,
its stop signals, and naming who holds a port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from launcher.output import Output
from launcher.process import PORTS_FROM, free_ports, http_ok, listens_in_group, port_holder
from launcher.stopping import Interrupted, StopSignals
from launcher.versions import Served, pin, policy_versions
from servables.repository import CONFIG_FILE, read_config


def _model(root: Path, name: str, versions: int, extra: str = "") -> Path:
    folder = root / name
    for version in range(1, versions + 1):
        (folder / str(version)).mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(f'name: "{name}"\nbackend: "python"\n{extra}')
    return folder


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A runtime copy: ``resnet`` (all of 3 versions) linked as it is, ``decode`` rewritten (a folder of its own),
    and the ensemble ``classify`` that runs both."""
    source, copy = tmp_path / "source", tmp_path / "copy" / "models"
    copy.mkdir(parents=True)
    (copy / "resnet").symlink_to(_model(source, "resnet", 3, "version_policy { all { } }\n"))
    _model(copy, "decode", 1)
    steps = "".join(f'step {{ model_name: "{name}" model_version: -1 }}\n' for name in ("decode", "resnet"))
    _model(copy, "classify", 1, f'platform: "ensemble"\nensemble_scheduling {{\n{steps}}}\n')
    return copy


def test_policy_versions(models: Path) -> None:
    assert policy_versions(models / "resnet", read_config(models / "resnet" / CONFIG_FILE)) == {1, 2, 3}
    assert policy_versions(models / "decode", read_config(models / "decode" / CONFIG_FILE)) == {1}  # latest 1


def test_only_what_differs_from_the_configs_is_pinned(models: Path) -> None:
    served = Served()
    served.ready = {"resnet": frozenset({1}), "decode": frozenset({1}), "classify": frozenset({1})}
    assert served.differences(models) == {"resnet": {1}}


def test_a_pin_rewrites_the_copy_and_its_undo_restores_it(models: Path) -> None:
    linked_to = (models / "resnet").readlink()
    undo = pin(models, {"resnet": frozenset({1, 3}), "decode": frozenset()})
    pinned = read_config(models / "resnet" / CONFIG_FILE)
    assert list(pinned.version_policy.specific.versions) == [1, 3]
    assert not (models / "resnet").is_symlink() and (models / "resnet" / "2").is_dir()
    assert (linked_to / CONFIG_FILE).read_text().count("all") == 1  # the repository itself is untouched
    assert sorted(path.name for path in models.iterdir()) == ["resnet"]  # decode, and the ensemble that runs it
    undo()
    assert (models / "resnet").readlink() == linked_to
    assert sorted(path.name for path in models.iterdir()) == ["classify", "decode", "resnet"]


def test_a_closed_pipe_is_noticed_without_writing() -> None:
    read, write = os.pipe()
    saved = {fd: os.dup(fd) for fd in (1, 2)}  # a closed reader sends both to /dev/null: put them back after
    try:
        os.dup2(write, 2)
        output = Output()
        assert not output.reader_gone()
        os.close(read)
        assert output.reader_gone()
        output.say("nobody reads this")  # and nothing fails
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(write)


def test_json_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    output = Output()
    output.json = True
    output.open_log(tmp_path / "launcher.log")
    output.say("serving", gateway="http://127.0.0.1:8080")
    line = json.loads(capsys.readouterr().err)
    assert line["message"] == "serving" and line["gateway"] == "http://127.0.0.1:8080" and line["level"] == "info"
    assert json.loads((tmp_path / "launcher.log").read_text()) == line


def test_two_stop_signals_interrupt_then_none() -> None:
    signals = StopSignals()
    for _ in range(StopSignals.RAISED_AT_MOST):
        with pytest.raises(Interrupted, match="SIGTERM"):
            signals._handle(15, None)
    signals._handle(15, None)  # the immediate stops are under way: nothing interrupts them


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_lost_in_a_finaliser_is_raised_again() -> None:
    """A handler that runs inside a finaliser (a response the collector closes) has its exception printed and
    dropped by Python; the supervisor's ``check`` each tick raises the stop again."""
    signals = StopSignals()
    signals.check()  # nothing asked yet

    class Closed:
        def __del__(self) -> None:
            signals._handle(15, None)

    Closed()  # "Exception ignored in ...": the stop is lost here
    with pytest.raises(Interrupted, match="SIGTERM"):
        signals.check()


def test_free_ports_are_distinct_bindable_and_never_an_outgoing_connections() -> None:
    """Drawn below the kernel's ephemeral range: no client connection on the host can take one before the server
    binds it (CI saw Triton's metrics port taken so)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = free_ports(16)
    assert len(set(ports)) == 16 and all(PORTS_FROM <= port < low for port in ports)
    for port in ports:
        with contextlib.closing(socket.socket()) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_holder_is_named() -> None:
    with contextlib.closing(socket.socket()) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        assert f"pid {os.getpid()}: " in port_holder(holder.getsockname()[1])


def test_readiness_counts_only_the_servers_own_listener() -> None:
    """A probe answered on a server's port is its answer only when its process group listens there: another
    process may have taken the port between ``free_ports`` and the server's bind, and answer the probe."""
    with contextlib.closing(socket.socket()) as bound, contextlib.closing(socket.socket()) as listening:
        bound.bind(("127.0.0.1", 0))
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        ours = os.getpgid(0)
        assert listens_in_group(listening.getsockname()[1], ours)
        assert not listens_in_group(bound.getsockname()[1], ours)  # bound, not listening
        assert not listens_in_group(listening.getsockname()[1], ours + 1_000_000)  # another group's


def test_probes_never_go_through_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """An http_proxy in the environment (and no no_proxy for 127.0.0.1) must not leave make serve waiting."""
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_ports(1)[0]}")  # nobody listens there
        monkeypatch.delenv("no_proxy", raising=False)
        assert http_ok(f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass
