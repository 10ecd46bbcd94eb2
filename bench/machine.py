"""The machine a benchmark ran on, recorded in every report so its figures are never read out of context."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

# Distributions whose versions decide the figures; read from metadata, so nothing heavy gets imported.
_PACKAGES = (
    "numpy",
    "torch",
    "torchvision",
    "onnxruntime",
    "onnxruntime-gpu",
    "opencv-python-headless",
    "tritonclient",
    "nvidia-pytriton",
    "fastapi",
    "uvicorn",
    "httpx",
    "aiohttp",
    "psutil",
)


def _proc_field(path: str, field: str) -> str | None:
    """The first ``field: value`` line of a /proc file, or None off Linux."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == field:
            return value.strip()
    return None


def _memory_gib() -> float | None:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "131891384 kB"
    return round(int(total.split()[0]) / 2**20, 1) if total else None


def _gpus() -> list[str]:
    """One line per GPU from nvidia-smi: name, memory, driver; empty without NVIDIA tools."""
    if shutil.which("nvidia-smi") is None:
        return []
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        output = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in output.splitlines() if line.strip()]


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_info() -> dict[str, object]:
    """CPU model, cores, memory, GPUs and library versions of this process's machine."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "gpus": _gpus(),
        "versions": _versions(),
    }
