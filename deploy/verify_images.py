"""``make verify-images``: the model repository as the deploy ships it, run in the images' own environments, here.

There is no Docker engine where this project is built, so the images are checked through what they are made of
(``deploy.image_envs``): their Python, their locked packages and the files they run.

1. The Triton image's environment: a Python 3.10 venv with exactly ``deploy/ecs/triton-env``'s lock. Every module
   the repository's python code (the decode models and the ``imaging`` package beside them) and the image's
   entrypoint import must resolve there, the GPU path's included.
2. The deploy's upload code puts the repository into S3 (moto's, on loopback) and ``fetch_models.py``, the image's
   entrypoint, run by that venv's Python, copies it into a folder: the same files must come back.
3. The local ``tritonserver`` serves that folder. Its python-backend models run on a Python 3.10 stub in that
   venv; the ONNX models keep the local runtime's rewrite (PyPI's server has no onnxruntime backend), so they run
   ONNX Runtime in the project's environment.
4. ``classify`` and ``edges`` over gRPC must answer as the embedded stack does on the same files: the same top-5,
   the same edge maps, the same error codes for hostile files.
5. The gateway image's environment (the root lock's base dependencies, the project built from only the folders
   ``Dockerfile.gateway`` copies) runs ``python -m gateway`` in front of that Triton and serves a classification.

A missing package or project folder fails the step that needs it, naming the module, the package and the image.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.utils import InferenceServerException

from deploy.ecs.model_repository import scan_repository
from deploy.ecs.s3_upload import ensure_bucket, repository_uri, upload_repository
from deploy.image_envs import (
    GATEWAY_IMAGE,
    ROOT,
    TRITON_IMAGE,
    Env,
    ImageCheckFailed,
    build_env,
    find_python,
    give_stub_its_python,
    install_project,
    lacks,
    local_names,
    locked_requirements,
    missing_imports,
    missing_module_in,
    stage_copied_sources,
)
from imaging import ImageError
from launcher.process import DIRECT, Service, ServiceError, http_ok, on_free_ports
from launcher.triton import Ports, TritonServer
from servables import names
from servables.repository import CONFIG_FILE, read_repository

Say = Callable[[str], None]
ENTRYPOINT = ROOT / "deploy" / "ecs" / "fetch_models.py"
REGION = "us-east-1"
BUCKET = "verify-images"
TOP_K = 5
SCORE_TOLERANCE = 1e-4  # the same graph on the same pixels; ONNX Runtime's threads may sum in another order


@dataclass
class Report:
    """What each step found, for the summary and the tests."""

    steps: list[str] = field(default_factory=list)
    decode_stubs: int = 0  # python-backend stubs seen running Python 3.10 in the Triton image's venv
    gpu_decoder_jpegs: int = 0  # JPEGs the GPU decoder's code decoded as the CPU path does
    compared: int = 0  # answers compared with the embedded stack's
    refusals: dict[str, str] = field(default_factory=dict)  # sample -> error code, both stacks alike
    gateway_answer: dict[str, object] = field(default_factory=dict)


def python_sources(repository: Path) -> dict[Path, set[str]]:
    """Every python file the repository's python-backend models run, with what their stub's sys.path provides."""
    sources: dict[Path, set[str]] = {}
    for name, config in read_repository(repository).items():
        if config.backend != "python":
            continue
        for version in (p for p in (repository / name).iterdir() if p.is_dir() and p.name.isdigit()):
            local = local_names(version) | local_names(version.parent)  # the stub appends both (pb_stub.cc)
            sources |= {path: local for path in version.rglob("*.py") if "__pycache__" not in path.parts}
    return sources


def check_triton_imports(env: Env, repository: Path) -> int:
    """Step 1's check: the repository's python code and the entrypoint find every module they import."""
    sources = python_sources(repository)
    sources[ENTRYPOINT] = set()
    problems = missing_imports(env, sources, ROOT if repository.is_relative_to(ROOT) else repository.parent)
    if problems:
        raise ImageCheckFailed("\n".join(problems))
    return len(sources)


def deploy_and_fetch(repository: Path, env: Env, target: Path, say: Say) -> int:
    """Step 2: the deploy's upload into moto's S3, then the image's entrypoint copies it into ``target``."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per S3 request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        keys = {"aws_access_key_id": "verify-images", "aws_secret_access_key": "verify-images"}
        s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint, **keys)
        scanned = scan_repository(repository)
        ensure_bucket(s3, BUCKET, REGION)
        upload_repository(s3, scanned, BUCKET, "models", lambda line: None)
        uri = repository_uri(BUCKET, "models", scanned)
        shutil.rmtree(target, ignore_errors=True)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MODEL_REPOSITORY_URI": uri,
            "MODEL_REPOSITORY_DIR": str(target),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": keys["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": keys["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": REGION,
        }
        # -I: the venv's packages only, not this checkout (its cwd) nor PYTHONPATH.
        done = subprocess.run([env.python, "-I", ENTRYPOINT], env=environment, capture_output=True, text=True)
    finally:
        moto.stop()
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        module = missing_module_in(output)
        raise ImageCheckFailed(lacks(env.image, module, "fetch_models.py") if module else output)
    say(f"      {output}")
    fetched = scan_repository(target)
    if fetched.digest != scanned.digest:
        raise ImageCheckFailed(f"{target} is not what was uploaded ({fetched.digest} != {scanned.digest})")
    return len(fetched.files)


_GPU_CONTRACT = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])  # the decode model's version folder, as its stub sees it
from imaging import ImageError, Limits, decode, read_header
from imaging.decode import decodable
from imaging.gpu import GpuDecoder
files = []
for path in sys.argv[3:]:  # what the decode step hands the GPU decoder: JPEGs past every rule
    data = open(path, "rb").read()
    try:
        header = read_header(data, Limits())
        if header.format == "JPEG":
            files.append((decodable(data, header), header))
    except ImageError:
        continue
decoder, worst = GpuDecoder.with_cpu_backend(), 0.0
for min_side in (0, int(sys.argv[2])):
    for (data, header), pixels in zip(files, decoder.decode(files, min_side)):
        expected = decode(data, Limits(), min_side, header)[np.newaxis]
        if pixels is None or pixels.shape != expected.shape:
            sys.exit(f"{header}: {None if pixels is None else pixels.shape}, the CPU path {expected.shape}")
        worst = max(worst, float(np.abs(pixels.astype(np.int16) - expected).mean()))
print(json.dumps({"jpegs": len(files), "worst": worst}))
"""
GPU_TOLERANCE = 1.0  # mean uint8 levels between a block mean and libjpeg's DCT-scaled decode (0.2-0.45 measured)


def check_gpu_decoder(env: Env, repository: Path, samples: dict[str, bytes], work: Path) -> tuple[int, float]:
    """The GPU decoder's own code as shipped (nvImageCodec on its CPU backend, numpy standing in for CuPy), in the
    image's packages: the CPU path's shapes, and pixels within ``GPU_TOLERANCE`` at the classifier's scale."""
    config = read_repository(repository)[names.DECODE_REDUCED]
    folder = work / "samples"
    folder.mkdir(exist_ok=True)
    paths = []
    for number, data in enumerate(samples.values()):
        paths.append(folder / f"{number}.bin")
        paths[-1].write_bytes(data)
    version = repository / names.DECODE_REDUCED / "1"
    min_side = config.parameters["min_side"].string_value
    done = subprocess.run([env.python, "-I", "-c", _GPU_CONTRACT, str(version), min_side, *map(str, paths)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        module = missing_module_in(done.stderr)
        raise ImageCheckFailed(lacks(env.image, module, "imaging/gpu.py") if module else done.stderr.strip())
    result = json.loads(done.stdout.splitlines()[-1])
    if result["worst"] > GPU_TOLERANCE:
        raise ImageCheckFailed(f"the GPU decoder's pixels differ from the CPU path's by {result['worst']:.2f} levels")
    return result["jpegs"], result["worst"]


def python_backend_stub(version: str) -> Path:
    import pytriton

    stub = Path(pytriton.__file__).parent / "tritonserver" / "python_backend_stubs" / version
    if not (stub / "triton_python_backend_stub").is_file():
        raise ImageCheckFailed(f"nvidia-pytriton ships no python backend stub for Python {version}")
    return stub / "triton_python_backend_stub"


def run_in_image_env(repository: Path, env: Env) -> int:
    """Point each python-backend model at the image's venv and a stub of its Python (a stub in the model's folder
    replaces the backend's, stub_launcher.cc), as the image's one Python runs them all; returns their instances."""
    stub = python_backend_stub(env.image.python)
    give_stub_its_python(env)
    instances = 0
    for name, config in read_repository(repository).items():
        if config.backend != "python":
            continue
        config.parameters["EXECUTION_ENV_PATH"].string_value = str(env.root)
        (repository / name / CONFIG_FILE).write_text(text_format.MessageToString(config))
        shutil.copy2(stub, repository / name / stub.name)
        instances += sum(group.count or 1 for group in config.instance_group) or 1
    return instances


@contextlib.contextmanager
def outside_the_checkout(work: Path) -> Iterator[None]:
    """Servers started here see none of this checkout: a stub's sys.path starts with its working directory, and
    the server passes PYTHONPATH on, either of which would find the project's ``imaging`` instead of the copy the
    repository carries."""
    saved = os.environ.pop("PYTHONPATH", None)
    try:
        with contextlib.chdir(work):
            yield
    finally:
        if saved is not None:
            os.environ["PYTHONPATH"] = saved


def start_triton(repository: Path, log: Path) -> TritonServer:
    def start(ports: list[int]) -> TritonServer:
        # Unfused, as the deploy ships it: each python-backend model runs its own code in the image's environment.
        return TritonServer(repository, Ports(*ports), log_path=log, fuse=False, batch_delay=True).start()

    try:
        return on_free_ports(3, start)
    except ServiceError as exc:
        module = missing_module_in(str(exc)) or missing_module_in(log.read_text(errors="replace"))
        if module:
            raise ImageCheckFailed(lacks(TRITON_IMAGE, module, "loading the python-backend models")) from None
        raise ImageCheckFailed(f"Triton did not start in the image's environment:\n{exc}") from None


def stubs_in(server: TritonServer, env: Env) -> int:
    """How many of the server's stubs run the image's Python with the image's packages (their memory maps say)."""
    count = 0
    for pid in server.stub_pids():
        with contextlib.suppress(OSError):
            maps = Path(f"/proc/{pid}/maps").read_text()
            if f"libpython{env.image.python}" in maps and str(env.root) in maps:
                # The server's own libraries (nvidia_pytriton.libs) are shared; the project's packages must not be.
                foreign = {line.split()[-1] for line in maps.splitlines() if f"{sys.prefix}/lib/python" in line}
                foreign = {path for path in foreign if "/nvidia_pytriton.libs/" not in path}
                if foreign and sys.prefix != sys.base_prefix:
                    raise ImageCheckFailed(f"stub {pid} runs the image's Python but loaded {sorted(foreign)[0]}")
                count += 1
    return count


Answer = tuple[str, object]  # ("ok", what came back) or ("refused", the error code)


def answers(url: str, samples: dict[str, bytes]) -> dict[tuple[str, str], Answer]:
    """Each sample through ``classify`` (Triton's top-5) and ``edges`` (the edge map's shape and digest)."""
    client = grpcclient.InferenceServerClient(url)
    found: dict[tuple[str, str], Answer] = {}
    for name, data in samples.items():
        image = grpcclient.InferInput(names.IMAGE, [1, len(data)], "UINT8")
        image.set_data_from_numpy(np.frombuffer(data, np.uint8)[np.newaxis])
        for model in (names.CLASSIFY, names.EDGES):
            output = grpcclient.InferRequestedOutput(
                names.PROBABILITIES if model == names.CLASSIFY else names.EDGE_MAP,
                **({"class_count": TOP_K} if model == names.CLASSIFY else {}),
            )
            try:
                result = client.infer(model, [image], outputs=[output], client_timeout=120)
            except InferenceServerException as exc:
                problem = ImageError.from_message(exc.message() or "")
                found[name, model] = ("refused", problem.problem.value if problem else f"{exc.status()}: {exc}")
                continue
            if model == names.CLASSIFY:
                top = [entry.decode().split(":", 2) for entry in result.as_numpy(names.PROBABILITIES).reshape(-1)]
                found[name, model] = ("ok", [(int(index), float(score)) for score, index, _ in top])
            else:
                edges = result.as_numpy(names.EDGE_MAP)
                found[name, model] = ("ok", (edges.shape, hashlib.sha256(edges.tobytes()).hexdigest()[:16]))
    client.close()
    return found


def _same(model: str, expected: Answer, got: Answer) -> bool:
    if expected[0] != got[0]:
        return False
    if expected[0] == "refused" or model == names.EDGES:
        return expected[1] == got[1]
    ranked = [expected[1], got[1]]  # classify: the same classes in the same order, the same scores
    indices = [[index for index, _ in top] for top in ranked]  # type: ignore[attr-defined]
    scores = [[score for _, score in top] for top in ranked]  # type: ignore[attr-defined]
    return indices[0] == indices[1] and np.allclose(scores[0], scores[1], rtol=0, atol=SCORE_TOLERANCE)


def differences(reference: dict[tuple[str, str], Answer], image: dict[tuple[str, str], Answer]) -> list[str]:
    return [
        f"{name} via {model}: the embedded stack {expected}, the Triton image {image[name, model]}"
        for (name, model), expected in reference.items()
        if not _same(model, expected, image[name, model])
    ]


def build_gateway_env(work: Path, requirements: dict[str, str]) -> Env:
    """The gateway image's venv: its locked packages, then the project built from what Dockerfile.gateway copies."""
    env = build_env(GATEWAY_IMAGE, work / "gateway-env", find_python(GATEWAY_IMAGE.python), requirements)
    install_project(env, stage_copied_sources(GATEWAY_IMAGE, work / "gateway-context"))
    return env


def gateway_classifies(env: Env, triton_url: str, photo: bytes, work: Path) -> dict[str, object]:
    """Step 5: ``python -m gateway`` from the gateway image's venv, in front of ``triton_url``, classifies ``photo``."""
    log = work / "gateway.log"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_TRITON_URL": triton_url,
        "GATEWAY_SQLITE_PATH": str(work / "items.sqlite3"),
    }

    def start(ports: list[int]) -> tuple[Service, int]:
        probe = f"http://127.0.0.1:{ports[0]}/readyz"
        service = Service("gateway (its image's venv)", [str(env.python), "-I", "-m", "gateway"], log,
                          lambda: http_ok(probe, 1), {**environment, "GATEWAY_PORT": str(ports[0])}, work,
                          ports=ports[:1])  # fmt: skip
        return service.start(120), ports[0]

    try:
        service, port = on_free_ports(1, start)
    except ServiceError as exc:
        module = missing_module_in(str(exc)) or missing_module_in(log.read_text(errors="replace"))
        if module:
            raise ImageCheckFailed(lacks(GATEWAY_IMAGE, module, "python -m gateway")) from None
        raise ImageCheckFailed(f"the gateway did not start in its image's environment:\n{exc}") from None
    try:
        url = f"http://127.0.0.1:{port}/v1/classify?top_k={TOP_K}"
        request = urllib.request.Request(url, data=photo, headers={"Content-Type": "image/jpeg"})
        with DIRECT.open(request, timeout=60) as response:  # loopback: never through a proxy the environment names
            answer: dict[str, object] = json.loads(response.read())
    finally:
        service.stop()
    return answer


def verify(
    repository: Path,
    samples: dict[str, bytes],
    reference_url: str,
    work: Path,
    say: Say = print,
    triton_requirements: dict[str, str] | None = None,
    gateway_requirements: dict[str, str] | None = None,
) -> Report:
    """Steps 1 to 5 against ``repository``; ``reference_url`` is the embedded stack's Triton on the same one."""
    report = Report()
    clock = time.monotonic()

    def done(step: str) -> None:
        nonlocal clock
        line = f"{step} ({time.monotonic() - clock:.1f} s)"
        report.steps.append(line)
        say(line)
        clock = time.monotonic()

    work.mkdir(parents=True, exist_ok=True)
    requirements = triton_requirements or locked_requirements(TRITON_IMAGE)
    env = build_env(TRITON_IMAGE, work / "triton-env", find_python(TRITON_IMAGE.python), requirements)
    files = check_triton_imports(env, repository)
    done(f"[1/5] {TRITON_IMAGE.describe()}: Python {TRITON_IMAGE.python} venv with its {len(requirements)} locked "
         f"packages; the {files} python files it runs import nothing it lacks")  # fmt: skip
    fetched = work / "models"
    count = deploy_and_fetch(repository, env, fetched, say)
    done(f"[2/5] deploy upload to S3 (moto) and fetch_models.py on Python {TRITON_IMAGE.python}: {count} files back, "
         "the digest the deploy uploaded")  # fmt: skip
    jpegs, worst = check_gpu_decoder(env, fetched, samples, work)
    instances = run_in_image_env(fetched, env)
    with outside_the_checkout(work):
        server = start_triton(fetched, work / "triton.log")
    try:
        report.decode_stubs = stubs_in(server, env)
        report.gpu_decoder_jpegs = jpegs
        if report.decode_stubs != instances:
            raise ImageCheckFailed(
                f"{report.decode_stubs} of the {instances} python-backend instances run in {TRITON_IMAGE.describe()}'s "
                "environment"
            )
        done(f"[3/5] every model loaded; the {instances} python-backend instances on Python {TRITON_IMAGE.python} "
             "stubs in that venv (the ONNX models run ONNX Runtime in the project's environment: the PyPI "
             "tritonserver has no onnxruntime backend); the GPU decoder's code, on nvImageCodec's CPU backend, "
             f"gives the CPU path's pixels on {jpegs} JPEGs (mean difference at most {worst:.2f} levels)")  # fmt: skip
        expected, got = answers(reference_url, samples), answers(server.grpc_url, samples)
        wrong = differences(expected, got)
        if wrong:
            raise ImageCheckFailed("the Triton image answers differently:\n  " + "\n  ".join(wrong))
        report.compared = len(got)
        report.refusals = {name: str(value) for (name, _), (kind, value) in got.items() if kind == "refused"}
        done(f"[4/5] {len(samples)} files through classify and edges: the embedded stack's answers, "
             f"{len(report.refusals)} refused with its error codes")  # fmt: skip
        gateway_env = build_gateway_env(work, gateway_requirements or locked_requirements(GATEWAY_IMAGE))
        photo = next(data for name, data in samples.items() if got[name, names.CLASSIFY][0] == "ok")
        report.gateway_answer = gateway_classifies(gateway_env, server.grpc_url, photo, work)
        done(f"[5/5] {GATEWAY_IMAGE.describe()}: python -m gateway from its venv classified a photo through that "
             "Triton")  # fmt: skip
    finally:
        server.stop()
    return report


def builtin_samples() -> dict[str, bytes]:
    """Real photographs (scikit-image's), one at a camera's size, one turned by EXIF, one as PNG, and files the
    rules refuse."""
    import io

    import cv2
    from PIL import Image

    from bench.inputs import camera_photographs, photographs

    samples = photographs(("astronaut", "coffee", "chelsea"))
    # A camera-size photo: the classifier's decode reduces it (1/4 here), on the GPU path too.
    samples["rocket, 2048x1536"] = camera_photographs((2048, 1536), ("rocket",))["rocket"]
    rotated = Image.open(io.BytesIO(samples["chelsea"]))
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored sideways, shown upright
    buffer = io.BytesIO()
    rotated.save(buffer, "JPEG", exif=exif)
    samples["chelsea, EXIF orientation 6"] = buffer.getvalue()
    coffee = cv2.imdecode(np.frombuffer(samples["coffee"], np.uint8), cv2.IMREAD_COLOR)
    samples["coffee as PNG"] = cv2.imencode(".png", coffee)[1].tobytes()
    samples["truncated JPEG"] = samples["astronaut"][: len(samples["astronaut"]) // 2]
    samples["not an image"] = b"<!doctype html><title>not an image</title>"
    samples["4x4 pixels"] = cv2.imencode(".png", coffee[:4, :4])[1].tobytes()
    frames = [Image.fromarray(coffee[:64, :64, ::-1]), Image.fromarray(coffee[64:128, :64, ::-1])]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    samples["animated GIF"] = buffer.getvalue()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.verify_images", description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"), help="what the deploy ships")
    parser.add_argument("--work", type=Path, help="where the venvs and copies go (default: a temporary folder)")
    args = parser.parse_args(argv)
    say = print
    repository = args.model_repository.resolve()
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="verify-images-")))
        work = work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        say(f"reference: the embedded stack (make serve's runtime) on {repository}")
        try:
            reference = on_free_ports(
                3, lambda ports: TritonServer(repository, Ports(*ports), log_path=work / "embedded.log").start()
            )  # noqa: E501
        except ServiceError as exc:
            say(f"error: the embedded stack did not start on {repository}: {exc}")
            return 1
        stack.callback(reference.stop)
        try:
            report = verify(repository, builtin_samples(), reference.grpc_url, work, say)
        except ImageCheckFailed as exc:
            say(f"\nverify-images FAILED:\n{exc}")
            return 1
    say(f"\nverify-images passed: {len(report.steps)} steps; the gateway answered "
        f"{json.dumps(report.gateway_answer.get('predictions', [])[:1])}")  # type: ignore[index]  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
