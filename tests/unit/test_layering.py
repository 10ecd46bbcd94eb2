"""Imports run one way: image rules are the ground, the repository package stands on them, the processes on both."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each package may import from this project (beside itself). The decode step ships imaging into Triton's
# own Python, so imaging stays free of everything else here.
ALLOWED = {
    "imaging": set(),
    "servables": {"imaging"},
}
PROJECT = {"imaging", "servables", "gateway", "export", "launcher", "bench", "deploy", "client", "gpu_kit", "tests"}


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_what_lies_below_it(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = _imported(path) - ALLOWED[package] - {package}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
