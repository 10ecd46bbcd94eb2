"""Find a ``tritonserver``, give it a repository it can run, start it on chosen ports, stop it cleanly.

Two installs are known: the NGC layout (``/opt/tritonserver``, with the native onnxruntime backend) and the
binary inside PyPI's ``nvidia-pytriton`` wheel (python backend only). Either way Triton runs a runtime copy of
the repository (``servables.runtime``) fitted to the install.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.process import WATCHDOG, Service, ServiceError, http_ok, taken_ports
from launcher.versions import pin
from launcher.watchdog import delete
from servables.repository import CONFIG_FILE
from servables.runtime import MissingModelFile, materialise, refresh

NGC_ROOT = Path("/opt/tritonserver")
SHARED_MEMORY = Path("/dev/shm")
_ERROR_LINE = re.compile(r"^E\d{4} |UNAVAILABLE|^error:")
_CPU_ONLY_NOISE = re.compile(r"CudaDriverHelper|CUDA|DCGM|NVML")  # logged on every start without a GPU


# Triton could not be found, started, or made ready; the message says why (one error for every server).
TritonError = ServiceError


def _worth_showing(line: str) -> bool:
    """Failed models, bind errors: not the CUDA warnings every start without a GPU logs."""
    return bool(_ERROR_LINE.search(line)) and not _CPU_ONLY_NOISE.search(line)


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


@dataclass(frozen=True)
class Install:
    """Where a tritonserver lives, its backends, and the libraries it needs on LD_LIBRARY_PATH."""

    binary: Path
    backends: Path
    library_paths: tuple[Path, ...] = ()
    caches: Path | None = None  # the response cache implementations (caches/local)

    @property
    def has_onnxruntime(self) -> bool:
        return (self.backends / "onnxruntime").is_dir()


def find_install(cache: Path) -> Install:
    """The NGC layout when present, else the wheel's binary with a python backend assembled in ``cache``."""
    if (NGC_ROOT / "bin" / "tritonserver").is_file():
        return Install(NGC_ROOT / "bin" / "tritonserver", NGC_ROOT / "backends", caches=NGC_ROOT / "caches")
    try:
        import pytriton
    except ImportError:
        raise TritonError(
            "no tritonserver found: neither /opt/tritonserver nor the nvidia-pytriton wheel "
            "(install it with `pip install -e '.[triton]'` or `make install`)"
        ) from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    if not (stub / "triton_python_backend_stub").is_file():
        raise TritonError(f"nvidia-pytriton ships no python backend stub for Python {stub.name}")
    # The python backend looks for its stub beside libtriton_python.so: assemble that folder once.
    python_backend = cache / "backends" / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for source in [*(root / "backends" / "python").iterdir(), stub / "triton_python_backend_stub"]:
        link = python_backend / source.name
        if link.is_symlink() and link.readlink() != source:  # another environment's (maybe deleted) install
            link.unlink()
        if not link.is_symlink():
            link.symlink_to(source)
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    libraries = (libs, Path(sysconfig.get_config_var("LIBDIR")))
    return Install(root / "bin" / "tritonserver", cache / "backends", libraries, root / "caches")


def _gpu_present() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()


class TritonServer:
    """A running ``tritonserver`` process; use as a context manager or call ``start``/``stop``."""

    def __init__(
        self,
        repository: Path,
        ports: Ports = Ports(),
        address: str = "127.0.0.1",
        exit_timeout_s: int = 30,
        startup_timeout_s: float = 300.0,
        log_path: Path | None = None,
        cache: Path | None = None,
        explicit_model_control: bool = True,
        extra_args: tuple[str, ...] = (),
        response_cache_bytes: int = 0,
        fuse: bool | None = None,
        batch_delay: bool | None = None,
    ) -> None:
        self.repository = Path(repository)
        self.ports = ports
        self.address = address
        self.exit_timeout_s = exit_timeout_s
        self.startup_timeout_s = startup_timeout_s
        # One per environment: its python backend links into this environment's nvidia-pytriton install.
        environment = hashlib.sha256(sys.prefix.encode()).hexdigest()[:8]
        self.cache = cache or Path(tempfile.gettempdir()) / f"tritonserve-{os.getuid()}-{environment}"
        self.log_path = log_path
        # Everything loads at start either way; explicit control also lets the load/unload API add and drop model
        # versions while Triton serves (Triton's "none" mode refuses those calls).
        self.explicit_model_control = explicit_model_control
        # Server flags a deployment or the launcher adds (--grpc-restricted-protocol, as the ECS task's opt-in gRPC
        # endpoint; the launcher's trace settings).
        self.extra_args = tuple(extra_args)
        # Models whose versions must differ from their configs' policy at the next start (launcher.versions).
        self.versions: dict[str, frozenset[int]] = {}
        # Triton's response cache (local, LRU, this many bytes; 0: off): servables.runtime says which models use it.
        self.response_cache_bytes = response_cache_bytes
        # Decode and preprocessing as one model on a CPU host (None: where no GPU is present; servables.runtime).
        self.fuse = not _gpu_present() if fuse is None else fuse
        # The configs' batching delays (None: where a GPU is present; on a CPU host none, servables.runtime).
        self.batch_delay = _gpu_present() if batch_delay is None else batch_delay
        self.service: Service | None = None
        self._workdir: Path | None = None
        self._runtime: dict[str, Any] = {}  # materialise()'s arguments beside the paths
        self._shm_prefix = f"tritonserve-{uuid.uuid4().hex[:12]}-"  # never empty: stop() removes what it matches

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.service.process if self.service else None

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.ports.metrics}/metrics"

    def command(self, install: Install, repository: Path) -> list[str]:
        gpu = _gpu_present()
        return [
            str(install.binary),
            f"--model-repository={repository}",
            f"--backend-directory={install.backends}",
            f"--http-address={self.address}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={self.address}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-address={self.address}",
            f"--metrics-port={self.ports.metrics}",
            f"--allow-gpu-metrics={str(gpu).lower()}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            "--log-verbose=0",
            # Its own name for the python backend's shared-memory regions, so stop() can remove what a killed
            # Triton leaves in /dev/shm (1-2 MB per stub, memory that is never given back otherwise).
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            # No pooled gRPC request objects: each keeps the largest message it ever parsed (Triton's own memory
            # 11 -> 964 MiB, for good, after files of 100 and 300 MB sent straight to it; 11 -> 178 MiB without the
            # pool). Allocating one per request costs nothing measurable.
            "--grpc-infer-allocation-pool-size=0",
            *(["--model-control-mode=explicit", "--load-model=*"] if self.explicit_model_control else []),
            *([] if gpu else ["--pinned-memory-pool-byte-size=0"]),
            *self.extra_args,
            *(
                [f"--cache-directory={install.caches}", f"--cache-config=local,size={self.response_cache_bytes}"]
                if self.response_cache_bytes
                else []
            ),
        ]

    def start(self) -> TritonServer:
        ports = {"Triton HTTP": self.ports.http, "Triton gRPC": self.ports.grpc, "Triton metrics": self.ports.metrics}
        if taken := taken_ports(ports, self.address):
            raise TritonError(f"{', '.join(taken)} already in use on {self.address}")
        install = find_install(self.cache)
        self._workdir = Path(tempfile.mkdtemp(prefix="triton-runtime-"))
        for leftover in self._leftovers():  # what stop() removes, removed by the watchdog should we die first
            WATCHDOG.delete_if_orphaned(leftover)
        python_env = sys.prefix if sys.prefix != sys.base_prefix else None
        self._runtime = {
            "native_onnxruntime": install.has_onnxruntime,
            "python_env": python_env,
            "fuse": self.fuse,
            "cache": self.response_cache_bytes > 0,
            "batch_delay": self.batch_delay,
        }
        try:
            repository = materialise(self.repository, self._workdir / "models", **self._runtime)
        except MissingModelFile as exc:
            raise TritonError(str(exc)) from None
        unpin = pin(repository, self.versions)
        # Outside the work dir, which stop() removes: the log must outlive a failed start.
        log_path = self.log_path or self.cache / f"tritonserver-{self.ports.grpc}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*map(str, install.library_paths), *filter(None, [env.get("LD_LIBRARY_PATH")])]
        )
        self.log_path = log_path
        command = self.command(install, repository)
        # Ready once it listens on all three ports itself: Triton answers ready on HTTP before it binds metrics,
        # and exits if another process took that port in between.
        self.service = Service(
            "tritonserver", command, log_path, self.is_ready, env, important=_worth_showing, ports=list(ports.values())
        )
        try:
            self.service.start(self.startup_timeout_s)
        except BaseException:
            self.stop(0)  # the work dir and shared memory of a start that failed (on_free_ports may try again)
            raise
        unpin()  # Triton has read the configs: later loads see each model's own policy
        return self

    def refresh_repository(self) -> list[Path]:
        """After a version or a model was exported into (or a version removed from) the repository: mirror it into
        the runtime copy, where models rewritten for this install live, before asking Triton to load it. Returns
        what changed."""
        if self._workdir is None:
            raise TritonError("tritonserver is not running")
        try:
            models = self._workdir / "models"
            known = {path.name for path in models.iterdir()}
            materialise(self.repository, models, **self._runtime)  # models exported since, e.g. a new classifier
            added = sorted(path / CONFIG_FILE for path in models.iterdir() if path.name not in known)
            return added + refresh(self.repository, models)
        except MissingModelFile as exc:
            raise TritonError(str(exc)) from None

    def is_ready(self) -> bool:
        return http_ok(f"{self.http_url}/v2/health/ready", timeout_s=1)

    def log_tail(self, lines: int = 15) -> str:
        """The log's error lines (failed models, bind errors), else its last lines: what a user needs."""
        return self.service.log_tail(lines) if self.service else "(no log)"

    def stub_pids(self) -> set[int]:
        """The python-backend stub processes Triton runs (one per model instance here): a stub that dies leaves
        its model answering errors while Triton still says ready, so the launcher watches them."""
        if not self.process:
            return set()
        parent = str(self.process.pid)
        stubs = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                name, rest = stat.read_text().rsplit(")", 1)
                state, ppid = rest.split()[:2]
                if name.endswith("(triton_python_b") and ppid == parent and state != "Z":  # a dead one is a zombie
                    stubs.add(int(stat.parent.name))
        return stubs

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then wait ``timeout_s`` (default: Triton's own exit timeout plus slack) before SIGKILL; returns
        the exit code. A Triton with a dead stub never finishes its graceful stop: restart it with a short one."""
        code = self.service.stop(self.exit_timeout_s + 5 if timeout_s is None else timeout_s) if self.service else None
        if self._workdir is not None:  # started: what it leaves, deleted here rather than by the watchdog
            for leftover in self._leftovers():
                delete(leftover)
                WATCHDOG.forget(leftover)
            self._workdir = None
        return code

    def _leftovers(self) -> list[str]:
        """What a stopped Triton leaves: its stubs' shared-memory regions and this start's runtime repository."""
        return [f"{SHARED_MEMORY}/{self._shm_prefix}*", str(self._workdir)]

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
