"""Runs ON the borrowed GPU host (or here, on the CPU, as the tests do): set up, serve, measure, report.

Two stages in two interpreters. ``setup`` (the host's ``python3``: numpy 2, torch, no tritonclient) unpacks the
kit, makes the stub's environment (a venv over the host's packages with the kit's wheels first: numpy < 2, which
the python-backend stub needs, and tritonclient) and checks it imports; ``bench`` then runs in that venv: writes
the model repository, starts the kit's ``tritonserver`` through ``launcher.triton``, checks every variant's
answers, runs the load levels and writes ``report.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

from gpu_kit.build import RUNTIME, WHEELS

_VERSION_AND_LIBDIR = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2], sysconfig.get_config_var('LIBDIR'))"
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
PREFLIGHT = (
    "import sys, numpy, cv2, torch, torchvision, PIL, tritonclient.grpc, export.network, imaging, gpu_kit.measure; "
    "print('stub env: python', sys.version.split()[0], 'numpy', numpy.__version__, 'cv2', cv2.__version__, "
    "'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m gpu_kit.device", description=__doc__.splitlines()[0])
    parser.add_argument("--kit", type=Path, default=Path("build/gpu-kit"), help="the folder gpu_kit.build made")
    parser.add_argument("--out", type=Path, required=True, help="where report.json, report.md and logs go")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-kit"), help="scratch: runtime, venv, models")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--levels", default="1,16,64", help="concurrency levels, comma-separated")
    parser.add_argument("--window", type=float, default=4.0, help="seconds measured per level")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per level")
    parser.add_argument("--phone-photos", type=int, default=4, help="12 MP photographs made (0: none)")
    parser.add_argument("--cpu", action="store_true", help="CPU instances only (the fallback; what tests run)")
    parser.add_argument(
        "--stub-env", choices=("kit", "current"), default="kit",
        help="kit: a venv over this Python with the kit's wheels first; current: this interpreter's environment",
    )  # fmt: skip
    parser.add_argument("--stage", choices=("setup", "bench"), default="setup", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def unpack(kit: Path, work: Path) -> Path:
    """The runtime's ``site`` folder (a trimmed nvidia-pytriton), unpacked once."""
    site = work / "site"
    if not site.is_dir():
        with tarfile.open(kit / RUNTIME) as archive:
            archive.extractall(work, filter="tar")  # keeps the binaries' modes; the archive is our own
    return site


def make_env(kit: Path, work: Path) -> Path:
    """A venv whose own site-packages (the kit's wheels) come first and this interpreter's packages after."""
    env = work / "env"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        wheels = sorted(str(path) for path in (kit / WHEELS).glob("*.whl"))
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile", *wheels],
            check=True,
        )  # fmt: skip
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # After the venv's own packages: the host's (torch, cv2, PIL...) and this repository (imaging, gpu_kit...).
    host = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "gpu_kit_host.pth").write_text("\n".join([*sorted(host), str(REPOSITORY_ROOT)]) + "\n")
    return python


def missing_libraries(site: Path, python: Path) -> list[str]:
    """What the stub cannot load (libpython3.X.so on LIBDIR is the usual one): said before Triton fails on it."""
    version = subprocess.run(
        [str(python), "-c", _VERSION_AND_LIBDIR],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    stub = site / "pytriton" / "tritonserver" / "python_backend_stubs" / version[0] / "triton_python_backend_stub"
    if not stub.is_file():
        return [f"no stub for Python {version[0]} in the kit"]
    env = {**os.environ, "LD_LIBRARY_PATH": f"{site / 'nvidia_pytriton.libs'}:{version[1]}"}
    ldd = subprocess.run(["ldd", str(stub)], env=env, capture_output=True, text=True).stdout
    return [line.strip() for line in ldd.splitlines() if "not found" in line]


def setup(args: argparse.Namespace) -> None:
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi", "-L"], check=False)
    site = unpack(args.kit, args.work)
    python = Path(sys.executable) if args.stub_env == "current" else make_env(args.kit, args.work)
    missing = missing_libraries(site, python)
    if missing:
        raise SystemExit(f"the python-backend stub cannot start: {missing}")
    subprocess.run([str(python), "-c", PREFLIGHT], cwd=REPOSITORY_ROOT, check=True)
    argv = [str(python), "-m", "gpu_kit.device", *sys.argv[1:], "--stage", "bench"]
    os.chdir(REPOSITORY_ROOT)
    os.execv(argv[0], argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage == "setup":
        setup(args)
        return 0
    from gpu_kit import measure

    sys.path.insert(0, str(args.work / "site"))  # the kit's tritonserver, found as launcher.triton finds the wheel
    return measure.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
