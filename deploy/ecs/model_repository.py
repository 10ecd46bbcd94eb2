"""The local Triton model repository as the deploy sees it: its files, their checksums, one digest for all.

The repository is checked here, before anything is uploaded: a missing ``model.onnx`` or label file would
otherwise surface only as a Triton that never gets ready, and an ECS circuit breaker rolling back minutes
later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from deploy.ecs.errors import DeployError
from servables.repository import model_file, read_config

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RepositoryFile:
    relative: str  # posix path below the repository root, as in the S3 key
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Repository:
    root: Path
    models: tuple[str, ...]
    files: tuple[RepositoryFile, ...]
    # Folders with nothing to upload that Triton still needs, like an ensemble's empty version folder "1/".
    empty_dirs: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """Names this exact tree: its S3 prefix, so a rollback still finds its own models."""
        listing = "".join(f"{f.relative}\0{f.sha256}\n" for f in self.files)
        listing += "".join(f"{d}/\0\n" for d in self.empty_dirs)
        return hashlib.sha256(listing.encode()).hexdigest()[:16]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def scan_repository(root: Path) -> Repository:
    """Check ``root`` and checksum every file Triton will see (hidden files and folders are left out)."""
    if not root.is_dir():
        raise DeployError(f"no model repository at {root}: run `python -m export` first")
    model_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not _hidden(Path(d.name)))
    if not model_dirs:
        raise DeployError(f"{root} holds no model folder: run `python -m export` first")
    configs = {d.name: _read_config(d) for d in model_dirs}
    missing = [problem for d in model_dirs for problem in _missing_files(d, configs[d.name])]
    missing += _missing_ensemble_steps(configs)
    if missing:
        raise DeployError(
            f"the model repository {root} is incomplete ({'; '.join(missing)}): run `python -m export` first"
        )
    visible = sorted(p for p in root.rglob("*") if not _hidden(p.relative_to(root)))
    files = tuple(_describe(root, p) for p in visible if p.is_file())
    empty_dirs = tuple(
        d.relative_to(root).as_posix()
        for d in visible
        if d.is_dir() and not any(not _hidden(child.relative_to(root)) for child in d.iterdir())
    )
    return Repository(root=root, models=tuple(configs), files=files, empty_dirs=empty_dirs)


def _read_config(model_dir: Path) -> model_config_pb2.ModelConfig:
    path = model_dir / "config.pbtxt"
    if not path.is_file():
        raise DeployError(f"{model_dir} has no config.pbtxt")
    try:
        config = read_config(path)
    except text_format.ParseError as exc:
        raise DeployError(f"{path}: {exc}") from None
    if config.name and config.name != model_dir.name:
        raise DeployError(f"{path} names the model {config.name!r}; Triton needs it to match the folder")
    return config


def _missing_files(model_dir: Path, config: model_config_pb2.ModelConfig) -> list[str]:
    missing = []
    versions = [d for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()]
    needed = model_file(config)
    if needed is None:
        if not versions:  # Triton loads no version of a model without one, ensembles included
            missing.append(f"{model_dir.name}/1/ is missing")
    elif not any((v / needed).is_file() for v in versions):
        missing.append(f"{model_dir.name}/1/{needed} is missing")
    missing += [
        f"{model_dir.name}/{output.label_filename} is missing"
        for output in config.output
        if output.label_filename and not (model_dir / output.label_filename).is_file()
    ]
    return missing


def _missing_ensemble_steps(configs: dict[str, model_config_pb2.ModelConfig]) -> list[str]:
    return [
        f"{name} calls {step.model_name}, which is not in the repository"
        for name, config in configs.items()
        for step in config.ensemble_scheduling.step
        if step.model_name not in configs
    ]


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def _describe(root: Path, path: Path) -> RepositoryFile:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return RepositoryFile(
        relative=path.relative_to(root).as_posix(),
        path=path,
        size=path.stat().st_size,
        sha256=digest.hexdigest(),
    )
