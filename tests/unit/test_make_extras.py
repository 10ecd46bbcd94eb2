"""What each make target installs (read from `make -n`, nothing installed): serving only what it needs, the tests
and the benchmark adding theirs, and one venv keeping what was installed before."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import ROOT

SERVE = ["export", "triton"]
EVERYTHING = ["bench", "export", "otel", "test", "triton"]


def planned(venv: Path, *goals: str, **variables: str) -> str:
    """What `make` would run for ``goals`` with this VENV and these variables."""
    settings = [f"VENV={venv}", *(f"{name}={value}" for name, value in variables.items())]
    command = ["make", "--no-print-directory", "-n", *goals, *settings]
    return subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def synced(plan: str) -> list[str] | None:
    """The extras `uv sync` installs in ``plan``, or None when it installs nothing."""
    line = next((line for line in plan.splitlines() if " sync --locked " in line), None)
    return None if line is None else sorted(part.split()[0] for part in line.split("--extra ")[1:])


def venv_with(tmp_path: Path, extras: list[str]) -> Path:
    """A venv as `make` leaves it: uv in it, and the stamp naming its extras, newer than the lock."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "uv").touch()
    stamp = venv / f".installed-{'-'.join(extras)}"
    stamp.touch()
    newer = max((ROOT / "uv.lock").stat().st_mtime, (ROOT / "pyproject.toml").stat().st_mtime) + 60
    os.utime(stamp, (newer, newer))
    return venv


@pytest.mark.parametrize(("goal", "extras"), [("serve", SERVE), ("bench", ["bench", *SERVE]), ("test", EVERYTHING)])
def test_each_command_installs_what_it_needs(tmp_path: Path, goal: str, extras: list[str]) -> None:
    assert synced(planned(tmp_path / "fresh", goal)) == sorted(extras)


def test_serve_keeps_what_the_tests_installed(tmp_path: Path) -> None:
    assert synced(planned(venv_with(tmp_path, EVERYTHING), "serve")) is None


def test_the_tests_add_to_what_serve_installed(tmp_path: Path) -> None:
    assert synced(planned(venv_with(tmp_path, SERVE), "test")) == EVERYTHING


def test_extras_adds_more(tmp_path: Path) -> None:
    assert synced(planned(tmp_path / "fresh", "serve", EXTRAS="gpu")) == sorted([*SERVE, "gpu"])


def test_the_dry_run_exports_what_it_shows(tmp_path: Path) -> None:
    plan = planned(venv_with(tmp_path, SERVE), "deploy-dry-run", REPOSITORY=str(tmp_path / "repository"))
    export = plan.index("-m export --model resnet50")
    assert plan.index("-m deploy.ecs --dry-run", export) > export
