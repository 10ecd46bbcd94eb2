"""``python -m deploy.ecs`` where it must not call AWS (a dry run, a repository without its ONNX files), the model
fetch's path checks, and the wait for a rollout on a scripted ECS: no AWS and no server (against moto's server:
tests/integration/test_deploy_command.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.ecs import fetch_models
from deploy.ecs.cli import main
from deploy.ecs.errors import DeployError
from deploy.ecs.model_repository import scan_repository
from deploy.ecs.service import wait_until_stable
from tests.support.deploy_inputs import (
    BUCKET,
    OFFLINE_INFRASTRUCTURE,
    deploy_args,
    deploy_config,
    offline_aws_env,
    write_repository,
)
from tests.support.stack import ROOT


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offline_aws_env(monkeypatch, tmp_path)


def test_dry_run_prints_the_plan_and_calls_no_aws(
    aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on: any AWS call would fail
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # and there are no credentials to sign one with
    repository = write_repository(tmp_path / "model_repository")
    args = deploy_args(OFFLINE_INFRASTRUCTURE, repository, "--endpoint-url", closed, "--dry-run")
    result = subprocess.run(
        [sys.executable, "-m", "deploy.ecs", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Plan (dry run: nothing is sent to AWS)")
    assert "[11/11] autoscaling 1..4 tasks" in out
    digest = scan_repository(repository).digest
    assert f"s3://{BUCKET}/models/{digest}" in out
    assert "arn:aws:iam::<account-id>:role/tritonserve-task" in out


def test_deploy_refuses_a_repository_without_onnx_files(aws_env: None, tmp_path: Path, capsys: Any) -> None:
    repository = write_repository(tmp_path / "model_repository")
    (repository / "resnet50" / "1" / "model.onnx").unlink()
    assert main(deploy_args(OFFLINE_INFRASTRUCTURE, repository, "--dry-run")) == 1
    err = capsys.readouterr().err
    assert "resnet50/1/model.onnx is missing" in err and "python -m export" in err


class ListingOnlyS3:
    """Lists the given keys; downloading anything fails the test."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get_paginator(self, _: str) -> ListingOnlyS3:
        return self

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return [{"Contents": [{"Key": key} for key in self.keys]}]

    def download_file(self, *_: Any) -> None:
        pytest.fail("nothing may be downloaded")


@pytest.mark.parametrize("key", ["models/abc/../../etc/cron.d/x", "models/abc//etc/passwd"])
def test_fetch_writes_nothing_outside_the_destination(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refusing to write"):
        fetch_models.fetch(ListingOnlyS3([key]), f"s3://{BUCKET}/models/abc", tmp_path)


def test_fetch_without_a_repository_uri_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_REPOSITORY_URI", raising=False)
    with pytest.raises(SystemExit, match="MODEL_REPOSITORY_URI is not set"):
        fetch_models.main(["tritonserver"])


class ScriptedEcs:
    """Answers describe_services with one rollout state, forever: enough to drive the wait loop."""

    def __init__(self, rollout: str, running: int) -> None:
        self.rollout, self.running = rollout, running

    def describe_services(self, **_: Any) -> dict[str, Any]:
        deployment = {
            "status": "PRIMARY",
            "rolloutState": self.rollout,
            "rolloutStateReason": "tasks failed to start",
            "runningCount": self.running,
            "desiredCount": 1,
            "pendingCount": 1 - self.running,
        }
        return {"services": [{"deployments": [deployment], "events": []}]}


def test_waiting_is_bounded_by_the_timeout() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(DeployError, match="not stable after 100 s"):
        wait_until_stable(
            ScriptedEcs("IN_PROGRESS", 0),
            deploy_config(wait_timeout_s=100),
            lambda _: None,
            clock=lambda: now[0],
            sleep=sleep,
        )
    assert sum(sleeps) == 100 and max(sleeps) == 15


def test_waiting_stops_at_a_failed_rollout() -> None:
    def must_not_sleep(seconds: float) -> None:
        pytest.fail(f"slept {seconds} s after the rollout failed")

    with pytest.raises(DeployError, match="tasks failed to start.*rolls the service back"):
        wait_until_stable(
            ScriptedEcs("FAILED", 0), deploy_config(wait_timeout_s=100), lambda _: None, sleep=must_not_sleep
        )
