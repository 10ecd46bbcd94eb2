"""The model versions the operator chose, kept across Triton restarts.

Triton starts on the models' configs (``--load-model=*``): for the ResNet, every version folder. An operator who
unloaded version 2 (a rollback) must not find it served again because Triton died and was restarted. So while
Triton runs, the supervisor reads which versions are ready (Triton's repository index, about once a second), and
a restarted Triton starts on a runtime copy whose configs name exactly those versions (a ``specific`` version
policy); a model unloaded whole stays out of the start, with any ensemble that runs it. Once Triton is ready, the
copy's configs are put back, so a later load through the admin routes reads each model's own policy again.
"""

from __future__ import annotations

import functools
import json
import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from launcher.process import DIRECT
from servables.repository import CONFIG_FILE, read_config, read_repository

_SETTLED = {"READY", "UNAVAILABLE"}  # LOADING and UNLOADING are on their way to one of these


def index(http_url: str, timeout_s: float = 1.0) -> list[dict[str, str]]:
    """Triton's repository index: one entry per model version it knows (with its state), or per model."""
    request = urllib.request.Request(f"{http_url}/v2/repository/index", data=b"{}", method="POST")
    with DIRECT.open(request, timeout=timeout_s) as answer:
        entries: list[dict[str, str]] = json.loads(answer.read())
    return entries


def describe(versions: frozenset[int]) -> str:
    if not versions:
        return "nothing (unloaded)"
    return ("version " if len(versions) == 1 else "versions ") + ", ".join(map(str, sorted(versions)))


class Served:
    """Each model's ready versions as last seen settled: what a restarted Triton must serve again."""

    def __init__(self) -> None:
        self.ready: dict[str, frozenset[int]] = {}

    def observe(self, http_url: str) -> list[str]:
        """Read Triton's index; returns a line for each model whose ready versions changed since the last look.
        A model with a version still loading or unloading keeps its last settled set until it settles."""
        try:
            entries = index(http_url)
        except (OSError, ValueError):  # Triton restarting, or busy: the last look stands
            return []
        states: dict[str, list[tuple[str, str]]] = {}
        for entry in entries:
            states.setdefault(entry["name"], []).append((str(entry.get("version", "")), entry.get("state", "")))
        changed = []
        for name, versions in states.items():
            if not all(state in _SETTLED for _, state in versions):
                continue
            ready = frozenset(int(version) for version, state in versions if state == "READY" and version.isdigit())
            if name in self.ready and self.ready[name] != ready:
                changed.append(f"{name} serves {describe(ready)}")
            self.ready[name] = ready
        return changed

    def differences(self, models: Path) -> dict[str, frozenset[int]]:
        """The models whose ready versions differ from what their config in ``models`` would load."""
        pinned = {}
        for name, ready in self.ready.items():
            config_path = models / name / CONFIG_FILE
            if config_path.is_file() and ready != policy_versions(models / name, read_config(config_path)):
                pinned[name] = ready
        return pinned


def policy_versions(folder: Path, config: model_config_pb2.ModelConfig) -> frozenset[int]:
    """The versions Triton loads from ``folder`` under the config's version policy (latest 1 when none is set)."""
    present = sorted(int(entry.name) for entry in folder.iterdir() if entry.is_dir() and entry.name.isdigit())
    policy = config.version_policy.WhichOneof("policy_choice")
    if policy == "all":
        return frozenset(present)
    if policy == "specific":
        return frozenset(present) & frozenset(config.version_policy.specific.versions)
    return frozenset(present[-(config.version_policy.latest.num_versions or 1) :])


def pin(models: Path, pinned: dict[str, frozenset[int]]) -> Callable[[], None]:
    """Rewrite the runtime copy ``models`` so that a Triton started on it serves ``pinned``; returns the undo,
    to run once that Triton is ready (it has read the configs by then)."""
    if not pinned:
        return lambda: None
    undo: list[Callable[[], object]] = []
    left_out = {name for name, versions in pinned.items() if not versions}
    for name, config in read_repository(models).items():  # an ensemble whose step is left out could not load
        if {step.model_name for step in config.ensemble_scheduling.step} & left_out:
            left_out.add(name)
    aside = models.parent / "left-out"
    for name in sorted(left_out & {path.name for path in models.iterdir()}):
        aside.mkdir(exist_ok=True)
        (models / name).rename(aside / name)
        undo.append(functools.partial((aside / name).rename, models / name))
    for name, versions in pinned.items():
        folder = models / name
        if name in left_out or not (folder / CONFIG_FILE).is_file():
            continue
        config = read_config(folder / CONFIG_FILE)
        config.version_policy.specific.versions[:] = sorted(versions)  # replaces whichever policy it had
        if folder.is_symlink():  # a model the runtime copy links to as it is: a folder of its own, for now
            source = folder.readlink()
            folder.unlink()
            folder.mkdir()
            for entry in source.iterdir():
                if entry.name != CONFIG_FILE:
                    (folder / entry.name).symlink_to(entry)
            undo.append(functools.partial(_relink, folder, source))
        else:
            undo.append(functools.partial((folder / CONFIG_FILE).write_text, (folder / CONFIG_FILE).read_text()))
        (folder / CONFIG_FILE).write_text(text_format.MessageToString(config))

    def restore() -> None:
        for step in reversed(undo):
            step()

    return restore


def _relink(folder: Path, source: Path) -> None:
    shutil.rmtree(folder)
    folder.symlink_to(source, target_is_directory=True)
