"""Static checks of the two Dockerfiles (no Docker engine needed): pinned bases, non-root users, a cached
dependency layer, and ports and commands that agree with the task definition template."""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.ecs import template
from deploy.ecs.task_definition import GATEWAY, TRITON, container

ECS = Path(__file__).resolve().parents[1] / "deploy" / "ecs"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def parse(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM (global ARGs before the first FROM are left out)."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def base_images(instructions: list[Instruction]) -> list[str]:
    """FROM images with global ARG defaults substituted; references to earlier stages left out."""
    defaults = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, value = instruction.arguments.partition("=")
            defaults[name] = value
    images, stage_names = [], set()
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], words[0])
            if image not in stage_names:
                images.append(image)
            if len(words) == 3 and words[1].upper() == "AS":
                stage_names.add(words[2])
    return images


def exec_form(arguments: str) -> list[str]:
    return json.loads(arguments)


@pytest.fixture(scope="module")
def triton() -> list[Instruction]:
    return parse(ECS / "Dockerfile.triton")


@pytest.fixture(scope="module")
def gateway() -> list[Instruction]:
    return parse(ECS / "Dockerfile.gateway")


@pytest.fixture(scope="module")
def task_template() -> dict:
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
    assert base_images(triton) == ["nvcr.io/nvidia/tritonserver:24.10-py3"]  # server 2.51, as tested locally


def test_gateway_image_is_slim_python(gateway: list[Instruction]) -> None:
    assert all(re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", image) for image in base_images(gateway))


@pytest.mark.parametrize("name", ["Dockerfile.triton", "Dockerfile.gateway"])
def test_final_stage_runs_as_a_non_root_user(name: str) -> None:
    users = [i.arguments for i in stages(parse(ECS / name))[-1] if i.keyword == "USER"]
    assert users, f"{name}: the final stage never sets USER"
    assert users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize(("name", "container_name"), [("Dockerfile.triton", TRITON), ("Dockerfile.gateway", GATEWAY)])
def test_exposed_ports_match_the_task_definition(name: str, container_name: str, task_template: dict) -> None:
    exposed = {
        int(port.split("/")[0]) for i in parse(ECS / name) if i.keyword == "EXPOSE" for port in i.arguments.split()
    }
    mapped = {m["containerPort"] for m in container(task_template, container_name)["portMappings"]}
    assert exposed == mapped


def test_gateway_installs_dependencies_before_copying_the_source(gateway: list[Instruction]) -> None:
    builder = stages(gateway)[0]

    def first(keyword: str, text: str) -> int:
        return next(n for n, i in enumerate(builder) if i.keyword == keyword and text in i.arguments)

    metadata, dependencies, source = (
        first("COPY", "pyproject.toml"),
        first("RUN", "-r requirements.txt"),
        first("COPY", "gateway"),
    )
    assert metadata < dependencies < source
    copies_before_dependencies = [i for i in builder[:dependencies] if i.keyword == "COPY"]
    assert [i.arguments.split()[0] for i in copies_before_dependencies] == ["pyproject.toml"]


def test_gateway_final_stage_holds_the_venv_and_no_build_tools(gateway: list[Instruction]) -> None:
    final = stages(gateway)[-1]
    assert [i.arguments for i in final if i.keyword == "COPY"] == ["--from=builder /opt/venv /opt/venv"]
    runs = " ".join(i.arguments for i in final if i.keyword == "RUN")
    assert not re.search(r"apt-get install|apk add|pip install|gcc|build-essential", runs)


def test_gateway_command_and_listen_address(gateway: list[Instruction], task_template: dict) -> None:
    final = stages(gateway)[-1]
    assert exec_form(next(i.arguments for i in final if i.keyword == "CMD")) == ["python", "-m", "gateway"]
    env = " ".join(i.arguments for i in final if i.keyword == "ENV")
    assert "GATEWAY_HOST=0.0.0.0" in env and "GATEWAY_PORT=8080" in env


def test_triton_default_command_is_the_task_definition_command(triton: list[Instruction], task_template: dict) -> None:
    """Run by hand (docker run), the image behaves as it does in the task."""
    command = exec_form(next(i.arguments for i in triton if i.keyword == "CMD"))
    assert command == container(task_template, TRITON)["command"]
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
