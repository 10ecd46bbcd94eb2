"""The local runtime's copy of a repository: what a ``tritonserver`` without an onnxruntime backend can run.

The committed configs say ``backend: "onnxruntime"`` (what the NGC image runs). The ``tritonserver`` in PyPI's
``nvidia-pytriton`` has only the python backend, so each onnxruntime model becomes a python-backend model that
runs the same ``model.onnx`` with ONNX Runtime (``python_models/onnx_runner.py``), every other field kept
(batching, queue policy, ensembles, labels). In a virtualenv, python-backend models are pointed at it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from google.protobuf import text_format

from servables.repository import CONFIG_FILE, ONNX_FILE, PYTHON_FILE, read_config, read_repository

ONNX_RUNNER = Path(__file__).with_name("python_models") / "onnx_runner.py"


class MissingModelFile(FileNotFoundError):
    """A version folder lacks the file its backend runs: the repository was not exported."""


def materialise(repository: Path, target: Path, native_onnxruntime: bool, python_env: str | None) -> Path:
    """Links to ``repository`` under ``target``, with configs rewritten where the server at hand needs it. Models
    already there stay as they are (``refresh`` follows their versions): run again, it adds models exported since."""
    target.mkdir(parents=True, exist_ok=True)
    for name, config in read_repository(repository).items():
        if (target / name).exists():
            continue
        source = repository / name
        run_onnx_in_python = config.backend == "onnxruntime" and not native_onnxruntime
        if config.backend != "python" and not run_onnx_in_python:
            (target / name).symlink_to(source.resolve(), target_is_directory=True)
            continue
        folder = target / name
        folder.mkdir()
        for entry in source.iterdir():
            if entry.is_dir() and entry.name.isdigit():
                _version(entry, folder / entry.name, run_onnx_in_python)
            elif entry.name != CONFIG_FILE:
                (folder / entry.name).symlink_to(entry.resolve())
        config.backend = "python"
        # The stub must see the virtualenv's packages (PYTHONPATH is not passed through); a model that names its
        # own environment keeps it (deploy/verify_images.py runs the decode models in the Triton image's).
        if python_env and "EXECUTION_ENV_PATH" not in config.parameters:
            config.parameters["EXECUTION_ENV_PATH"].string_value = python_env
        (folder / CONFIG_FILE).write_text(text_format.MessageToString(config))
    return target


def _version(source: Path, target: Path, run_onnx_in_python: bool) -> None:
    needed = ONNX_FILE if run_onnx_in_python else PYTHON_FILE
    if not (source / needed).is_file():
        raise MissingModelFile(f"{source / needed} is missing: run `python -m export` first")
    if not run_onnx_in_python:
        target.symlink_to(source.resolve(), target_is_directory=True)
        return
    target.mkdir()
    (target / ONNX_FILE).symlink_to((source / ONNX_FILE).resolve())
    shutil.copyfile(ONNX_RUNNER, target / PYTHON_FILE)


def refresh(repository: Path, target: Path) -> list[Path]:
    """Bring the rewritten models' version folders in line with ``repository`` after it changed (a version
    exported or removed), so Triton's load API finds what the repository holds; linked models see it already."""
    changed = []
    for folder in sorted(p for p in target.iterdir() if p.is_dir() and not p.is_symlink()):
        source = repository / folder.name
        if not (source / CONFIG_FILE).is_file():
            continue
        run_onnx_in_python = read_config(source / CONFIG_FILE).backend == "onnxruntime"
        wanted = _versions(source)
        present = _versions(folder)
        for version in sorted(wanted - present):
            _version(source / version, folder / version, run_onnx_in_python)
            changed.append(folder / version)
        for version in sorted(present - wanted):
            path = folder / version
            if path.is_symlink():
                path.unlink()
            else:
                shutil.rmtree(path)
            changed.append(path)
    return changed


def _versions(folder: Path) -> set[str]:
    return {entry.name for entry in folder.iterdir() if entry.is_dir() and entry.name.isdigit()}
