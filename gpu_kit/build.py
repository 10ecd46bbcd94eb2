"""Build the kit into a folder (``build/gpu-kit``): ``triton.tar.xz`` plus the wheels, each part at most 64 MB.

The runtime keeps the ``nvidia-pytriton`` wheel's own layout (``site/pytriton/tritonserver`` beside
``site/nvidia_pytriton.libs``), so the binaries' RPATHs resolve and ``launcher.triton.find_install`` finds it
as it finds the wheel; of the wheel's 145 MB only what ``ldd`` says the server, the python backend and the stubs
load travels (not the bundled libpython 3.13, DCGM's extras or the caches).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PART_LIMIT = 64 * 1000 * 1000  # what one device call ships, counting the repository beside it (MiB there)
TREE_LIMIT = 64 * 1024 * 1024
RUNTIME = "triton.tar.xz"
MANIFEST = "manifest.json"
WHEELS = "wheels"
# Stubs packed: the device's Python, and the builder's so the same kit runs here (tests/test_gpu_kit.py).
DEVICE_PYTHON = "3.12"
# What the device lacks (no tritonclient) or has in a version the stub cannot use (numpy 2: empty tensors;
# ml-dtypes >= 0.6 needs numpy 2; tritonclient's generated gRPC code checks grpcio's version).
WHEEL_PINS = (
    "numpy==1.26.4",
    "tritonclient==2.73.0",
    "protobuf==6.33.6",
    "python-rapidjson==1.25",
    "ml-dtypes==0.5.4",
    "grpcio==1.85.3",
)
# The production GPU decoder's packages the hosts lack (they have CuPy and CUDA 13): a kit of their own, since the
# Triton kit and these together pass what one call ships (``gpu_kit/decoder.py`` measures with them).
DECODER_PINS = ("nvidia-nvimgcodec-cu13==0.9.0.20", "nvidia-nvjpeg==13.3.2.43")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
_LDD_LINE = re.compile(r"^\s*(\S+) => (\S+) \(")


@dataclass(frozen=True)
class Wheel:
    """The pytriton wheel's parts, as installed."""

    root: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # .../site-packages/nvidia_pytriton.libs


def installed_wheel() -> Wheel:
    import pytriton

    package = Path(pytriton.__file__).parent
    return Wheel(package / "tritonserver", package.parent / "nvidia_pytriton.libs")


def _stub(wheel: Wheel, version: str) -> Path:
    return wheel.root / "python_backend_stubs" / version / "triton_python_backend_stub"


def library_closure(binaries: list[Path], libs: Path) -> list[Path]:
    """The wheel's bundled libraries that ``binaries`` load, directly or not (the system's own stay behind)."""
    env = {**os.environ, "LD_LIBRARY_PATH": str(libs)}
    needed: set[Path] = set()
    for binary in binaries:
        output = subprocess.run(["ldd", str(binary)], env=env, capture_output=True, text=True, check=True).stdout
        for line in output.splitlines():
            match = _LDD_LINE.match(line)
            if match and Path(match[2]).resolve().parent == libs.resolve():
                needed.add(libs / match[1])
    return sorted(needed)


def pack_runtime(wheel: Wheel, pythons: list[str], target: Path) -> Path:
    """``triton.tar.xz``: the server, the python backend, one stub per Python and their library closure."""
    stubs = [_stub(wheel, version) for version in pythons]
    missing = [str(stub) for stub in stubs if not stub.is_file()]
    if missing:
        raise FileNotFoundError(f"nvidia-pytriton has no stub {missing}")
    backend = wheel.root / "backends" / "python"
    binaries = [wheel.root / "bin" / "tritonserver", backend / "libtriton_python.so", *stubs]
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        server = site / "pytriton" / "tritonserver"
        (server / "bin").mkdir(parents=True)
        shutil.copy2(binaries[0], server / "bin")
        shutil.copytree(backend, server / "backends" / "python")
        for version, stub in zip(pythons, stubs, strict=True):
            (server / "python_backend_stubs" / version).mkdir(parents=True)
            shutil.copy2(stub, server / "python_backend_stubs" / version)
        (site / "pytriton" / "__init__.py").write_text(
            '"""Trimmed nvidia-pytriton runtime (gpu_kit.build): the wheel\'s layout, its tritonserver alone."""\n'
        )
        (site / "nvidia_pytriton.libs").mkdir()
        for library in library_closure(binaries, wheel.libs):
            shutil.copy2(library, site / "nvidia_pytriton.libs")
        archive = target / RUNTIME
        partial = archive.with_suffix(".part")
        # xz with every core: the 80 MB closure packs to about 25 MB; the device unpacks it with Python's lzma.
        subprocess.run(["tar", "-C", tmp, "-I", "xz -T0 -6", "-cf", str(partial), "site"], check=True)
        partial.replace(archive)  # an interrupted build leaves no truncated runtime to be taken for a whole one
    return archive


def download_wheels(target: Path, pins: tuple[str, ...] = WHEEL_PINS, python: str = DEVICE_PYTHON) -> list[Path]:
    """cp312 manylinux wheels from PyPI, no dependencies resolved: each one is named in ``pins``."""
    folder = target / WHEELS
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", python, "--implementation", "cp", *platforms, "--dest", str(folder), *pins],
        check=True,
    )  # fmt: skip
    return sorted(folder.glob("*.whl"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tracked_bytes(repository: Path) -> int:
    """What the device call ships besides the kit: the repository's tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repository, capture_output=True, check=True,
    ).stdout  # fmt: skip
    paths = (repository / name for name in listed.decode().split("\0") if name)
    return sum(path.stat().st_size for path in paths if path.is_file())


def write_manifest(target: Path, pythons: list[str], repository: Path) -> dict[str, Any]:
    """Every part with its size and hash; refuses a kit that would not travel in one call."""
    parts = [*filter(Path.is_file, [target / RUNTIME]), *sorted((target / WHEELS).glob("*.whl"))]
    entries: list[dict[str, Any]] = [
        {"path": str(part.relative_to(target)), "bytes": part.stat().st_size, "sha256": _sha256(part)} for part in parts
    ]
    too_big = [entry["path"] for entry in entries if entry["bytes"] > PART_LIMIT]
    kit_bytes = sum(entry["bytes"] for entry in entries)
    tree = tracked_bytes(repository)
    manifest = {"pythons": pythons, "parts": entries, "kit_bytes": kit_bytes, "tree_bytes": kit_bytes + tree}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if too_big:
        raise ValueError(f"parts over {PART_LIMIT / 1e6:.0f} MB: {too_big}")
    if kit_bytes + tree > TREE_LIMIT:
        raise ValueError(f"kit ({kit_bytes / 2**20:.1f} MiB) + repository ({tree / 2**20:.1f} MiB) exceed 64 MiB")
    return manifest


def operator_steps(target: Path, repository: Path, tree_mib: float, decoder: bool = False) -> str:
    """What to do with the kit on a GPU host, as a person copies it: ``make gpu-kit`` ends with this."""
    kit = target.resolve().relative_to(repository.resolve())
    script, out = ("gpu_kit.decoder", "gpu-decoder-report") if decoder else ("gpu_kit.device", "gpu-report")
    return "\n".join([
        "To run it on a GPU host (an NVIDIA driver and python3 with torch; no network needed):",
        f"  here:  tar -cf tritonserve-gpu.tar $(git ls-files) {kit}    # the checkout and the kit, {tree_mib:.1f} MiB",
        "  there: mkdir tritonserve && tar -xf tritonserve-gpu.tar -C tritonserve && cd tritonserve",
        f"         PYTHONUNBUFFERED=1 python3 -m {script} --kit {kit} --out {out}",
        f"  then bring {out}/ back (report.md, report.json{'' if decoder else ', triton.log'}) and commit it under "
        f"docs/bench/<gpu>/{'decoder/' if decoder else ''}",
    ])  # fmt: skip


def build(target: Path, repository: Path, pythons: list[str], decoder: bool = False) -> dict[str, Any]:
    target.mkdir(parents=True, exist_ok=True)
    pins = DECODER_PINS if decoder else WHEEL_PINS
    if not decoder and not (target / RUNTIME).is_file():
        pack_runtime(installed_wheel(), pythons, target)
    if {pin.split("==")[0].replace("-", "_") for pin in pins} - {
        wheel.name.split("-")[0].lower() for wheel in (target / WHEELS).glob("*.whl")
    }:
        download_wheels(target, pins)
    return write_manifest(target, pythons, repository)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_kit.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/gpu-kit"), help="the kit's folder (git-ignored)")
    parser.add_argument("--repository", type=Path, default=Path("."), help="the checkout the device call ships")
    parser.add_argument("--decoder", action="store_true", help="the GPU decoder's kit (gpu_kit/decoder.py) instead")
    args = parser.parse_args(argv)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    manifest = build(args.out, args.repository, sorted({DEVICE_PYTHON, here}), args.decoder)
    for part in manifest["parts"]:
        print(f"  {part['bytes'] / 1e6:7.1f} MB  {part['path']}")
    kit, tree = manifest["kit_bytes"] / 2**20, manifest["tree_bytes"] / 2**20
    print(f"  kit {kit:.1f} MiB; with the repository {tree:.1f} MiB of the 64 MiB one call ships")
    print("\n" + operator_steps(args.out, args.repository, tree, args.decoder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
