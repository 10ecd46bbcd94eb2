"""The local container stack (deploy/compose), checked without a Docker engine: the compose specification's
own JSON schema, images and paths that exist, and ports, health checks and commands that agree with the ECS
task definition, so the stack runs the containers production runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator

from deploy.ecs import template
from deploy.ecs.task_definition import GATEWAY, TRITON, container
from tests.support.dockerfile import LOOPBACK_ONLY, exec_form, parse

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
DURATION = re.compile(r"^(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((COMPOSE / name).read_text())
    assert isinstance(document, dict)
    return document


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of mappings (`-f a -f b`), enough for an override that only adds keys."""
    result = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if both_maps else value
    return result


def seconds(duration: str) -> int:
    match = DURATION.match(duration)
    assert match and duration, f"not a duration compose reads: {duration!r}"
    return int(match["m"] or 0) * 60 + int(match["s"] or 0)


def published(service: dict[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port), from "ADDRESS:HOST:CONTAINER" entries."""
    ports = {}
    for entry in service.get("ports", ()):
        address, host, target = entry.split(":")
        ports[int(target)] = (address, int(host))
    return ports


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return load("compose.yaml")


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return template.load("task-definition.json")


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    """The compose-spec schema as check-jsonschema ships it (vendored from compose-spec/compose-spec)."""
    schema = get_builtin_schema("vendor.compose-spec")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"]])
def test_the_files_follow_the_compose_specification(files: list[str], validator: Draft202012Validator) -> None:
    document: dict[str, Any] = {}
    for name in files:
        validator.validate(load(name))  # each file on its own, as `docker compose config` reads it
        document = merged(document, load(name))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors


def test_the_schema_rejects_what_compose_rejects(validator: Draft202012Validator, stack: dict[str, Any]) -> None:
    """The schema is strict enough to catch a typo in a service's keys (the check is not vacuous)."""
    broken = merged(stack, {"services": {"gateway": {"healthcheck": {"intervall": "15s"}}}})
    assert not validator.is_valid(broken)


def test_triton_is_built_from_the_ecs_dockerfile_without_the_s3_copy(stack: dict[str, Any]) -> None:
    """The image the task runs (the decode models' packages in it), not bare NGC, which cannot load them."""
    triton = stack["services"]["triton"]
    assert triton["build"] == {"context": "../..", "dockerfile": "deploy/ecs/Dockerfile.triton"}
    entrypoint = exec_form(
        next(i.arguments for i in parse(ROOT / "deploy/ecs/Dockerfile.triton") if i.keyword == "ENTRYPOINT")
    )
    assert triton["entrypoint"] == entrypoint[:1]  # NVIDIA's entrypoint, then straight to the command


def test_the_gateway_is_built_from_the_ecs_dockerfile(stack: dict[str, Any]) -> None:
    build = stack["services"]["gateway"]["build"]
    context = (COMPOSE / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]) == ROOT / "deploy/ecs/Dockerfile.gateway"
    assert (context / f"{build['dockerfile']}.dockerignore").is_file()  # BuildKit's per-Dockerfile ignore file


def test_every_other_image_is_pinned(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        if "build" in service:
            continue
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+[\w.-]*", service["image"]), f"{name}: {service['image']} unpinned"


def test_every_bind_mount_source_exists(stack: dict[str, Any]) -> None:
    sources = [
        volume["source"]
        for service in stack["services"].values()
        for volume in service.get("volumes", ())
        if volume["type"] == "bind"
    ]
    assert "../../model_repository" in sources
    for source in sources:
        assert (COMPOSE / source).exists(), f"{source} (relative to deploy/compose) does not exist"


def test_triton_serves_the_model_repository_read_only(stack: dict[str, Any]) -> None:
    triton = stack["services"]["triton"]
    (models,) = [v for v in triton["volumes"] if v["source"] == "../../model_repository"]
    assert models["read_only"] is True
    assert f"--model-repository={models['target']}" in triton["command"]
    assert (COMPOSE / models["source"]).resolve() == ROOT / "model_repository"  # where `make models` exports


def test_triton_runs_the_task_definitions_command_without_the_loopback_binds(
    stack: dict[str, Any], task: dict[str, Any]
) -> None:
    """Here the gateway is another container, so Triton listens on the container's network and compose
    publishes it on the host's loopback only; the rest is the ECS command and the image's default command."""
    command = stack["services"]["triton"]["command"]
    assert command == [arg for arg in container(task, TRITON)["command"] if arg not in LOOPBACK_ONLY]
    triton_cmd = next(i.arguments for i in parse(ROOT / "deploy/ecs/Dockerfile.triton") if i.keyword == "CMD")
    assert command == exec_form(triton_cmd)


def test_triton_publishes_http_grpc_and_metrics_on_loopback_only(stack: dict[str, Any]) -> None:
    """Triton bypasses the gateway's keys and limits: nothing beyond this host may reach it."""
    exposed = {
        int(port)
        for i in parse(ROOT / "deploy/ecs/Dockerfile.triton")
        if i.keyword == "EXPOSE"
        for port in i.arguments.split()
    }
    ports = published(stack["services"]["triton"])
    assert set(ports) == exposed == {8000, 8001, 8002}
    assert all(address == "127.0.0.1" for address, _ in ports.values())


def test_every_port_is_published_on_loopback(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        for entry in service.get("ports", ()):
            assert entry.startswith("127.0.0.1:"), f"{name} publishes {entry} beyond this host"


def test_the_gateway_listens_where_the_task_definition_says(stack: dict[str, Any], task: dict[str, Any]) -> None:
    gateway, ecs = stack["services"]["gateway"], container(task, GATEWAY)
    ecs_env = {e["name"]: e["value"] for e in ecs["environment"]}
    env = gateway["environment"]
    assert set(published(gateway)) == {m["containerPort"] for m in ecs["portMappings"]} == {int(env["GATEWAY_PORT"])}
    for name in ("GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_SHUTDOWN_TIMEOUT_S"):
        assert env[name] == ecs_env[name]
    # Same Triton port; the host is the compose service's name instead of the task's shared localhost.
    assert env["GATEWAY_TRITON_URL"] == "triton:" + ecs_env["GATEWAY_TRITON_URL"].rsplit(":", 1)[1]


@pytest.mark.parametrize("name", [TRITON, GATEWAY])
def test_health_checks_are_the_task_definitions(name: str, stack: dict[str, Any], task: dict[str, Any]) -> None:
    check, ecs = stack["services"][name]["healthcheck"], container(task, name)["healthCheck"]
    assert check["test"] == ecs["command"]
    assert seconds(check["interval"]) == ecs["interval"]
    assert seconds(check["timeout"]) == ecs["timeout"]
    assert check["retries"] == ecs["retries"]
    assert seconds(check["start_period"]) == ecs["startPeriod"]


@pytest.mark.parametrize("name", [TRITON, GATEWAY])
def test_stop_and_init_as_in_the_task(name: str, stack: dict[str, Any], task: dict[str, Any]) -> None:
    service, ecs = stack["services"][name], container(task, name)
    assert seconds(service["stop_grace_period"]) == ecs["stopTimeout"]
    assert service["init"] is ecs["linuxParameters"]["initProcessEnabled"] is True
    limits = {u["name"]: u["softLimit"] for u in ecs["ulimits"]}
    assert service["ulimits"] == limits


def test_the_gateway_waits_for_a_healthy_triton(stack: dict[str, Any], task: dict[str, Any]) -> None:
    assert container(task, GATEWAY)["dependsOn"] == [{"containerName": TRITON, "condition": "HEALTHY"}]
    assert stack["services"]["gateway"]["depends_on"] == {"triton": {"condition": "service_healthy"}}


def test_triton_gets_the_tasks_default_shared_memory(stack: dict[str, Any]) -> None:
    from deploy.ecs.config import DeployConfig

    shm = re.fullmatch(r"(\d+)gb", stack["services"]["triton"]["shm_size"])
    assert shm and int(shm[1]) * 1024 == DeployConfig.__dataclass_fields__["shm_size_mib"].default


def test_the_gpu_override_only_reserves_one_nvidia_gpu_for_triton() -> None:
    override = load("compose.gpu.yaml")
    assert list(override["services"]) == [TRITON]
    assert override["services"][TRITON] == {
        "deploy": {
            "resources": {"reservations": {"devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}
        }
    }


def test_monitoring_is_opt_in(stack: dict[str, Any]) -> None:
    """`up` alone starts the service; Prometheus and Grafana come with --profile monitoring, Jaeger with tracing."""
    profiled = {name: service["profiles"] for name, service in stack["services"].items() if "profiles" in service}
    assert profiled == {"prometheus": ["monitoring"], "grafana": ["monitoring"], "jaeger": ["tracing"]}


def test_prometheus_scrapes_the_gateway_and_tritons_metrics_port(stack: dict[str, Any]) -> None:
    config = load("prometheus.yml")
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    gateway_port = int(stack["services"]["gateway"]["environment"]["GATEWAY_PORT"])
    assert targets == {"gateway": [f"gateway:{gateway_port}"], "triton": ["triton:8002"]}
    assert all(job["metrics_path"] == "/metrics" for job in config["scrape_configs"])


def test_grafana_provisions_prometheus_and_the_dashboard(stack: dict[str, Any]) -> None:
    grafana = stack["services"]["grafana"]
    mounts = {v["target"]: COMPOSE / v["source"] for v in grafana["volumes"]}
    provisioning = mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "tritonserve.yaml").read_text())["providers"]
    dashboards = [target for target in mounts if target.startswith(provider["options"]["path"] + "/")]
    assert [mounts[target].resolve() for target in dashboards] == [ROOT / "deploy" / "grafana" / "dashboard.json"]
