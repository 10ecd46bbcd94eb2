"""Turn the command line's PATHs (files, folders, globs) into the image files to send, in a stable order."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

# What a folder contributes; a file named on the command line is sent whatever its name (the server decides).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
EDGES_SUFFIX = ".edges.png"


def edges_path(path: Path) -> Path:
    """Where ``tritonserve edges`` writes the edge map of ``path``: beside it, ``<stem>.edges.png``."""
    return path.with_name(path.stem + EDGES_SUFFIX)


def edges_outputs(paths: list[Path]) -> tuple[dict[Path, Path], list[list[Path]]]:
    """Each input's edge map, never two to one file: inputs whose ``<stem>.edges.png`` would be the same
    (``photo.jpg``, ``photo.png``) each keep their whole name instead (``photo.jpg.edges.png``). Returns the
    outputs and the groups renamed so, to be said."""
    by_output: dict[Path, list[Path]] = {}
    for path in paths:
        by_output.setdefault(edges_path(path).resolve(), []).append(path)
    outputs, renamed = {}, []
    for sources in by_output.values():
        for path in sources:
            outputs[path] = edges_path(path) if len(sources) == 1 else path.with_name(path.name + EDGES_SUFFIX)
        if len(sources) > 1:
            renamed.append(sources)
    return outputs, renamed


def _folder_images(folder: Path) -> list[Path]:
    # Our own edge maps are skipped, so running `edges` twice on a folder does not feed it its output.
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.endswith(EDGES_SUFFIX)
    )


def expand(arguments: Iterable[str]) -> tuple[list[Path], list[str]]:
    """``(files, unmatched)``: folders walked recursively, globs expanded (``**`` too), duplicates dropped."""
    found: dict[Path, None] = {}
    unmatched: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            candidates = _folder_images(path)
        elif path.is_file():
            candidates = [path]
        elif glob.has_magic(argument):
            candidates = []
            for match in sorted(glob.glob(argument, recursive=True)):
                matched = Path(match)
                candidates += _folder_images(matched) if matched.is_dir() else [matched]
        else:
            candidates = []
        if not candidates:
            unmatched.append(argument)
        found.update(dict.fromkeys(candidates))
    return list(found), unmatched
