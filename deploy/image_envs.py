"""The production images' Python environments, built here from the locks their Dockerfiles install.

No Docker engine runs where this project is developed or tested, so each image's packages are installed into a
virtualenv of the image's Python, exactly as the Dockerfile installs them (the same lock, ``--require-hashes
--no-deps``), and nothing else: no project on ``sys.path``, no test or bench extras.

- The Triton image (``deploy/ecs/Dockerfile.triton``): NGC's ``tritonserver:24.10-py3``, Python 3.10, plus
  ``deploy/ecs/triton-env``'s lock. Its python-backend models and its entrypoint run there.
- The gateway image (``deploy/ecs/Dockerfile.gateway``): ``python:3.11``, the root lock's base dependencies, and
  the project built from the folders the Dockerfile copies.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from uv import find_uv_bin

from deploy.dockerfile import copied_sources, parse, stages

ROOT = Path(__file__).resolve().parent.parent
ECS = ROOT / "deploy" / "ecs"
_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
# What the python backend itself gives every model: its utilities (a file beside the stub) and the stub's module.
_BACKEND_MODULES = {"triton_python_backend_utils", "c_python_backend_utils"}
_MISSING = """
import importlib.util, json, sys
missing = []
for module, names in json.loads(sys.argv[1]):
    try:
        spec = importlib.util.find_spec(module)
    except ImportError:
        spec = None
    if spec is None:
        missing.append(module)
    elif spec.origin is None and names:  # a namespace package ("nvidia"): what is imported is its parts
        missing += [f"{module}.{name}" for name in names if importlib.util.find_spec(f"{module}.{name}") is None]
print(json.dumps({"missing": missing, "stdlib": sorted(sys.stdlib_module_names)}))
"""


class ImageCheckFailed(RuntimeError):
    """An image lacks what it runs; the message names the module, the package and the image."""


@dataclass(frozen=True)
class Image:
    """One production image: where its Dockerfile and its lock are, and the Python it runs."""

    name: str
    dockerfile: Path
    lock_project: Path  # the folder whose pyproject.toml and uv.lock the Dockerfile exports
    export_args: tuple[str, ...]  # `uv export` arguments of the Dockerfile's lock stage, after --frozen
    python: str  # major.minor

    def describe(self) -> str:
        return f"the {self.name} image ({self.dockerfile.relative_to(ROOT)})"

    def lock_files(self) -> str:
        return f"{(self.lock_project / 'pyproject.toml').relative_to(ROOT)} (then `make lock`)"


TRITON_IMAGE = Image("Triton", ECS / "Dockerfile.triton", ECS / "triton-env", ("--no-emit-project",), "3.10")
GATEWAY_IMAGE = Image("gateway", ECS / "Dockerfile.gateway", ROOT, ("--no-dev", "--no-emit-project"), "3.11")


@dataclass(frozen=True)
class Env:
    """A virtualenv holding exactly one image's packages."""

    image: Image
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


def uv(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run([find_uv_bin(), *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageCheckFailed(f"uv {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout


def locked_requirements(image: Image) -> dict[str, str]:
    """The image's requirements as its Dockerfile exports them, hashes included: {package: its lines}."""
    text = uv("export", "--frozen", "--no-header", "--no-annotate", *image.export_args, cwd=image.lock_project)
    blocks: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name = re.split(r"[=<>;\[ ]", line, maxsplit=1)[0].lower()
            blocks[name] = line
        elif name and line.strip():
            blocks[name] += "\n" + line
    return blocks


def find_python(version: str) -> Path:
    """An interpreter of ``version`` on this machine: ``python<version>`` on PATH, else pyenv's."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p / "bin" / f"python{version}") for p in sorted(pyenv.glob(f"{version}.*"), reverse=True)]
    for candidate in filter(None, candidates):
        check = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)  # fmt: skip
        if check.returncode == 0 and check.stdout.strip() == version:
            return Path(candidate)
    raise ImageCheckFailed(
        f"no Python {version} on this machine (the image runs it): install one (e.g. `pyenv install {version}`) "
        f"or pass --python{version.replace('.', '')}"
    )


def build_env(image: Image, target: Path, python: Path, requirements: dict[str, str]) -> Env:
    """A fresh virtualenv of ``python`` with exactly ``requirements`` (hash-checked, no dependency resolved)."""
    shutil.rmtree(target, ignore_errors=True)
    uv("venv", "--quiet", "--python", str(python), str(target))
    listed = target.with_name(f"{target.name}-requirements.txt")
    listed.write_text("\n".join(requirements.values()) + "\n")
    env = Env(image, target)
    uv("pip", "install", "--quiet", "--python", str(env.python), "--require-hashes", "--no-deps", "-r", str(listed))
    return env


def give_stub_its_python(env: Env) -> None:
    """The python backend starts a model's stub with ``<env>/lib`` first on LD_LIBRARY_PATH (stub_launcher.cc),
    where a conda-packed environment keeps ``libpython3.X.so``: a venv gets a link to its interpreter's."""
    query = "import sysconfig, os; print(os.path.join(sysconfig.get_config_var('LIBDIR'), sysconfig.get_config_var('INSTSONAME')))"  # noqa: E501
    library = Path(subprocess.run([env.python, "-c", query], capture_output=True, text=True, check=True).stdout.strip())
    if not library.is_file():
        raise ImageCheckFailed(f"{env.python} has no shared libpython ({library}): the python backend's stub needs one")
    link = env.root / "lib" / library.name
    link.unlink(missing_ok=True)
    link.symlink_to(library)


def _imports(path: Path) -> Iterable[tuple[str, list[str]]]:
    """(module, names imported from it) for every absolute import in ``path``, at any depth (lazy ones too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]


def local_names(folder: Path) -> set[str]:
    """What a folder on the stub's sys.path provides itself: its modules and packages."""
    return {p.stem for p in folder.glob("*.py")} | {p.parent.name for p in folder.glob("*/__init__.py")}


def missing_imports(env: Env, sources: dict[Path, set[str]], shown_from: Path) -> list[str]:
    """Each third-party module that a file imports and ``env`` lacks, with the package that would provide it.

    ``sources`` maps each file to the top-level names its own folders provide (vendored code, the file's siblings).
    """
    wanted: dict[tuple[str, tuple[str, ...]], list[Path]] = {}
    for path, local in sources.items():
        for module, names in _imports(path):
            if module.split(".")[0] not in local | _BACKEND_MODULES:
                wanted.setdefault((module, tuple(names)), []).append(path)
    asked = json.dumps([[module, list(names)] for module, names in wanted])
    done = subprocess.run([env.python, "-I", "-c", _MISSING, asked], capture_output=True, text=True, cwd=env.root)
    if done.returncode != 0:
        raise ImageCheckFailed(f"{env.python} could not look its modules up:\n{done.stderr.strip()}")
    answer = json.loads(done.stdout)
    stdlib = set(answer["stdlib"])
    problems = []
    for missing in answer["missing"]:
        if missing.split(".")[0] in stdlib:
            continue
        users = sorted({str(p.relative_to(shown_from)) for (m, _), paths in wanted.items() for p in paths
                        if missing == m or missing.startswith(f"{m}.")})  # fmt: skip
        problems.append(lacks(env.image, missing, f"imported by {', '.join(users)}"))
    return problems


def lacks(image: Image, module: str, where: str) -> str:
    """The one sentence a missing module gets: the image, the module, the package, what to do."""
    top = module.split(".")[0]
    if (ROOT / top / "__init__.py").is_file():
        return (
            f"{image.describe()} lacks `{module}` ({where}): it is this project's own package; "
            f"COPY {top}/ in {image.dockerfile.name} and let it through {image.dockerfile.name}.dockerignore"
        )
    packages = importlib.metadata.packages_distributions().get(top, [])
    package = f"package {', '.join(sorted(set(packages)))}" if packages else "no package installed here provides it"
    return f"{image.describe()} lacks `{module}` ({where}; {package}): add it to {image.lock_files()}"


def missing_module_in(text: str) -> str | None:
    """The module a traceback or a Triton log says could not be imported, if any."""
    found = _NO_MODULE.search(text)
    return found[1] if found else None


def stage_copied_sources(image: Image, target: Path) -> Path:
    """The build context as the image's first stage sees it: only what its COPY instructions take."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for source in copied_sources(stages(parse(image.dockerfile))[0]):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, target / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target / source)
    return target


def install_project(env: Env, staged: Path) -> None:
    """``pip install --no-deps .`` of the staged sources, as Dockerfile.gateway's last build step."""
    uv("pip", "install", "--quiet", "--python", str(env.python), "--no-deps", str(staged))
