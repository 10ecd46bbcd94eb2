"""uv.lock is the install: it holds every dependency pyproject.toml declares, it installs on the images'
platform (Linux x86_64, CPython 3.11), `make install` and both Dockerfiles read it, and this venv is the lock."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version
from uv import find_uv_bin

ROOT = Path(__file__).resolve().parents[2]
# python:3.11.13-slim-bookworm, the gateway image's base: CPython 3.11 on glibc 2.36, x86_64 (the ECS task's).
IMAGE_ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.13",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
IMAGE_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
LOCKED_LINE = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?: ; (?P<marker>.+?))?(?: \\)?$")


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@cache
def lock() -> dict[str, Any]:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def locked_packages() -> dict[str, list[dict[str, Any]]]:
    """Lock entries by name (a name can have several versions, one per resolution fork)."""
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in lock()["package"]:
        packages.setdefault(package["name"], []).append(package)
    return packages


def uv(*args: str) -> str:
    return subprocess.run([find_uv_bin(), *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def exported(*args: str, environment: dict[str, str] | None = None) -> dict[str, str]:
    """``uv export`` of the lock (no resolution), as {name: version} for the packages ``environment`` installs."""
    text = uv("export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header", "--no-annotate", *args)
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = LOCKED_LINE.match(line.strip())
        if match and (match["marker"] is None or Marker(match["marker"]).evaluate(environment)):
            pins[canonicalize_name(match["name"])] = match["version"]
    return pins


def declared() -> set[tuple[str, str, str, frozenset[str]]]:
    """(group, name, specifier, extras) for every dependency pyproject.toml declares: '' is the base set."""
    project = pyproject()["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {
        (group, canonicalize_name(r.name), str(r.specifier), frozenset(r.extras))
        for group, requirements in groups.items()
        for r in map(Requirement, requirements)
    }


def recorded() -> set[tuple[str, str, str, frozenset[str]]]:
    """The same, as uv.lock recorded the project's requirements when it last resolved."""
    (project,) = locked_packages()[pyproject()["project"]["name"]]
    result: set[tuple[str, str, str, frozenset[str]]] = set()
    for requirement in project["metadata"]["requires-dist"]:
        extra = re.search(r"extra == '([^']+)'", requirement.get("marker", ""))
        result.add(
            (
                extra[1] if extra else "",
                canonicalize_name(requirement["name"]),
                str(SpecifierSet(requirement.get("specifier", ""))),
                frozenset(requirement.get("extras", ())),
            )
        )
    return result


def test_every_declared_dependency_is_locked_as_declared() -> None:
    """A dependency added to pyproject.toml without `make lock` fails here (and `make install` refuses it)."""
    missing, stale = declared() - recorded(), recorded() - declared()
    assert not missing and not stale, f"run `make lock`: not in uv.lock {sorted(missing)}, only in it {sorted(stale)}"


def test_uv_agrees_that_the_lock_is_current() -> None:
    """uv's own check, from the lock and pyproject.toml alone (offline: it resolves nothing)."""
    uv("lock", "--check", "--offline")


def test_the_lock_pins_numpy_below_2() -> None:
    """The Triton python-backend stub in nvidia-pytriton returns empty tensors with numpy 2 (see pyproject)."""
    assert all(Version(p["version"]).major < 2 for p in locked_packages()["numpy"])
    assert Version(exported("--all-extras", environment=IMAGE_ENVIRONMENT)["numpy"]).major < 2


def test_every_locked_package_has_a_wheel_for_linux_x86_64_cpython_3_11() -> None:
    """A fresh install on the images' platform, every extra included, needs no compiler and no fallback."""
    supported: set[Tag] = {
        *cpython_tags((3, 11), platforms=IMAGE_PLATFORMS),
        *compatible_tags((3, 11), "cp311", platforms=IMAGE_PLATFORMS),
    }
    pins = exported("--all-extras", "--all-groups", environment=IMAGE_ENVIRONMENT)
    assert {"torch", "torchvision", "nvidia-pytriton", "onnxruntime", "fastapi", "boto3"} <= pins.keys()
    without_wheel = []
    for name, version in pins.items():
        (package,) = [p for p in locked_packages()[name] if p["version"] == version]
        tags = {
            tag
            for wheel in package.get("wheels", ())
            for tag in parse_wheel_filename(wheel["url"].rsplit("/", 1)[1])[3]
        }
        if not tags & supported:
            without_wheel.append(f"{name}=={version}")
    assert not without_wheel


def test_this_environment_is_the_lock() -> None:
    """What `make install` leaves: every package the test extra needs, at the locked version (run it if not)."""
    pins = exported("--extra", "test")
    wrong = {
        name: (version, importlib.metadata.version(name))
        for name, version in pins.items()
        if Version(importlib.metadata.version(name)) != Version(version)
    }
    assert not wrong, f"installed versions differ from uv.lock (locked, installed): {wrong}"


TRITON_ENV = ROOT / "deploy" / "ecs" / "triton-env"


def test_the_triton_images_lock_is_current_and_holds_python_3_10_wheels() -> None:
    """Dockerfile.triton installs deploy/ecs/triton-env's lock into NGC's Python 3.10, outside the root lock's 3.11+:
    a wheel for CPython 3.10 on manylinux x86_64 for each package, numpy < 2 (the stub) and OpenCV below 4.12."""
    subprocess.run([find_uv_bin(), "lock", "--check", "--offline"], cwd=TRITON_ENV, check=True, capture_output=True)
    packages = tomllib.loads((TRITON_ENV / "uv.lock").read_text())["package"]
    versions = {p["name"]: Version(p["version"]) for p in packages}
    assert versions["numpy"].major < 2 and versions["opencv-python-headless"] < Version("4.12")
    assert {"boto3", "pillow", "nvidia-nvimgcodec-cu12", "cupy-cuda12x"} <= versions.keys()
    supported: set[Tag] = {
        *cpython_tags((3, 10), platforms=IMAGE_PLATFORMS),
        *compatible_tags((3, 10), "cp310", platforms=IMAGE_PLATFORMS),
    }
    without_wheel = [
        p["name"]
        for p in packages
        if "wheels" in p  # the project itself has none
        and not {tag for w in p["wheels"] for tag in parse_wheel_filename(w["url"].rsplit("/", 1)[1])[3]} & supported
    ]
    assert not without_wheel


@pytest.fixture(scope="module")
def make_install(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What `make install` would run on a fresh clone (a venv that does not exist yet), without running it."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    command = ["make", "--no-print-directory", "-n", "install", f"VENV={venv}"]
    return subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def test_make_install_syncs_the_venv_to_the_lock(make_install: str) -> None:
    """What `make install` runs on a fresh clone, against what it must produce: uv sync --locked with every extra a
    CPU host needs (all of pyproject.toml's but the GPU one), through the uv this venv holds."""
    assert "python3 -m venv" in make_install
    sync = next(line for line in make_install.splitlines() if " sync " in line)
    assert "--locked" in sync.split()
    extras = {part.split()[0] for part in sync.split("--extra ")[1:]}
    assert extras == set(pyproject()["project"]["optional-dependencies"]) - {"gpu"}
    assert f'"uv=={importlib.metadata.version("uv")}"' in make_install
    assert "pip install -e" not in make_install and "uv pip install" not in make_install
