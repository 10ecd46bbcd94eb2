"""Static checks of the two Dockerfiles (no Docker engine needed): pinned bases, non-root users, a cached
dependency layer, and ports and commands that agree with the task definition template."""

from __future__ import annotations

import ast
import re
import shlex
from typing import Any

import pytest

from deploy.ecs import template
from deploy.ecs.task_definition import GATEWAY, TRITON, container
from tests.support.dockerfile import ECS, LOOPBACK_ONLY, Instruction, base_images, exec_form, global_args, parse, stages


@pytest.fixture(scope="module")
def triton() -> list[Instruction]:
    return parse(ECS / "Dockerfile.triton")


@pytest.fixture(scope="module")
def gateway() -> list[Instruction]:
    return parse(ECS / "Dockerfile.gateway")


@pytest.fixture(scope="module")
def task_template() -> dict[str, Any]:
    return template.load("task-definition.json")


@pytest.mark.parametrize("name", ["Dockerfile.triton", "Dockerfile.gateway"])
def test_base_images_are_pinned(name: str) -> None:
    images = base_images(parse(ECS / name))
    assert images
    for image in images:
        pinned_digest = re.search(r"@sha256:[0-9a-f]{64}$", image)
        pinned_version = re.fullmatch(r"[\w./-]+:\d+\.\d+[\w.-]*", image)
        assert pinned_digest or pinned_version, f"{name}: {image} is not pinned to a version or digest"


def test_triton_image_is_ngc_tritonserver(triton: list[Instruction]) -> None:
    # The lock stage is python:slim; the image that ships is NGC's server 2.51, as tested locally.
    assert base_images(triton)[-1] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert stages(triton)[-1][0].arguments == "nvcr.io/nvidia/tritonserver:24.10-py3"


def test_gateway_image_is_slim_python(gateway: list[Instruction]) -> None:
    assert all(re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", image) for image in base_images(gateway))


@pytest.mark.parametrize("name", ["Dockerfile.triton", "Dockerfile.gateway"])
def test_final_stage_runs_as_a_non_root_user(name: str) -> None:
    users = [i.arguments for i in stages(parse(ECS / name))[-1] if i.keyword == "USER"]
    assert users, f"{name}: the final stage never sets USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_gateway_exposes_the_port_the_task_definition_maps(task_template: dict[str, Any]) -> None:
    exposed = {
        int(port.split("/")[0])
        for i in parse(ECS / "Dockerfile.gateway")
        if i.keyword == "EXPOSE"
        for port in i.arguments.split()
    }
    assert exposed == {m["containerPort"] for m in container(task_template, GATEWAY)["portMappings"]}


def test_triton_exposes_the_ports_its_command_serves(triton: list[Instruction]) -> None:
    """HTTP, gRPC and metrics: the image's defaults, which the compose stack publishes (on loopback)."""
    exposed = {int(port) for i in triton if i.keyword == "EXPOSE" for port in i.arguments.split()}
    assert exposed == {8000, 8001, 8002}


def test_gateway_installs_locked_dependencies_before_copying_the_source(gateway: list[Instruction]) -> None:
    builder = stages(gateway)[0]

    def first(keyword: str, text: str) -> int:
        return next(n for n, i in enumerate(builder) if i.keyword == keyword and text in i.arguments)

    metadata, dependencies, source = (
        first("COPY", "uv.lock"),
        first("RUN", "-r requirements.txt"),
        first("COPY", "gateway"),
    )
    assert metadata < dependencies < source
    copies_before_dependencies = [i for i in builder[:dependencies] if i.keyword == "COPY"]
    assert [shlex.split(i.arguments)[:-1] for i in copies_before_dependencies] == [["pyproject.toml", "uv.lock"]]
    install = builder[dependencies].arguments
    # Exactly the lock's base dependencies: no re-resolution, every wheel checked against its recorded hash.
    assert "uv export --frozen --no-dev --no-emit-project" in install
    assert "--require-hashes --no-deps -r requirements.txt" in install
    # The project itself adds nothing from the index: its dependencies are all in already.
    assert any(i.keyword == "RUN" and i.arguments == "pip install --no-deps ." for i in builder[source:])


def test_triton_installs_its_own_lock(triton: list[Instruction]) -> None:
    """deploy/ecs/triton-env/uv.lock (Python 3.10 wheels, hashes), nothing resolved at build time."""
    lock_stage, server = stages(triton)
    copies = [shlex.split(i.arguments) for i in lock_stage if i.keyword == "COPY"]
    assert copies == [["deploy/ecs/triton-env/pyproject.toml", "deploy/ecs/triton-env/uv.lock", "./"]]
    exports = [i.arguments for i in lock_stage if i.keyword == "RUN" and "uv export" in i.arguments]
    assert exports == ["uv export --frozen --no-emit-project --output-file /requirements.txt"]
    assert [i.arguments for i in server if i.keyword == "COPY" and "--from=" in i.arguments] == [
        "--from=lock /requirements.txt /opt/tritonserve/requirements.txt"
    ]
    installs = [i.arguments for i in server if i.keyword == "RUN" and "pip" in i.arguments]
    assert installs == ["pip3 install --no-cache-dir --require-hashes --no-deps -r /opt/tritonserve/requirements.txt"]


@pytest.mark.parametrize("name", ["Dockerfile.triton", "Dockerfile.gateway"])
def test_images_use_the_makefiles_uv(name: str) -> None:
    """One uv version reads the lock everywhere (the lock format is uv's)."""
    makefile = (ECS.parents[1] / "Makefile").read_text()
    make_version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert make_version is not None
    instructions = parse(ECS / name)
    assert global_args(instructions)["UV_VERSION"] == make_version[1]
    assert any(
        i.keyword == "RUN" and "pip install" in i.arguments and '"uv==${UV_VERSION}"' in i.arguments
        for i in instructions
    )


def test_gateway_final_stage_holds_the_venv_and_no_build_tools(gateway: list[Instruction]) -> None:
    final = stages(gateway)[-1]
    assert [i.arguments for i in final if i.keyword == "COPY"] == ["--from=builder /opt/venv /opt/venv"]
    runs = " ".join(i.arguments for i in final if i.keyword == "RUN")
    assert not re.search(r"apt-get install|apk add|pip install|gcc|build-essential", runs)


def test_gateway_command_and_listen_address(gateway: list[Instruction], task_template: dict[str, Any]) -> None:
    final = stages(gateway)[-1]
    assert exec_form(next(i.arguments for i in final if i.keyword == "CMD")) == ["python", "-m", "gateway"]
    env = " ".join(i.arguments for i in final if i.keyword == "ENV")
    assert "GATEWAY_HOST=0.0.0.0" in env and "GATEWAY_PORT=8080" in env


def test_triton_default_command_is_the_task_definition_command(
    triton: list[Instruction], task_template: dict[str, Any]
) -> None:
    """Run by hand (docker run, compose), the image behaves as in the task, except that the task binds to
    loopback: Triton's ports bypass the gateway's keys and limits, so only the task's own containers reach them."""
    command = exec_form(next(i.arguments for i in triton if i.keyword == "CMD"))
    task_command = container(task_template, TRITON)["command"]
    assert [arg for arg in task_command if arg not in LOOPBACK_ONLY] == command
    assert set(LOOPBACK_ONLY) <= set(task_command)
    entrypoint = exec_form(next(i.arguments for i in triton if i.keyword == "ENTRYPOINT"))
    assert entrypoint[-1] == "/opt/tritonserve/fetch_models.py"


@pytest.mark.parametrize("name", ["Dockerfile.triton", "Dockerfile.gateway"])
def test_the_dockerignore_lets_every_copied_path_through(name: str) -> None:
    """Context is the repository root, ignored by default: each COPY source must be re-included."""
    lines = (ECS / f"{name}.dockerignore").read_text().splitlines()
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert "*" in lines
    for instruction in parse(ECS / name):
        if instruction.keyword == "COPY" and "--from=" not in instruction.arguments:
            *sources, _ = shlex.split(instruction.arguments)
            for source in sources:
                assert source.rstrip("/") in included, f"{name}: COPY {source} is excluded by the dockerignore"


def test_the_triton_entrypoint_parses_as_python_3_10() -> None:
    """fetch_models.py runs on the NGC image's Python 3.10, not on the project's."""
    ast.parse((ECS / "fetch_models.py").read_text(), feature_version=(3, 10))
