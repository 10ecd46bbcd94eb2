"""The ECS task definition: rendered from ``templates/task-definition.json``, registered if it changed."""

from __future__ import annotations

from typing import Any

from botocore.client import BaseClient

from deploy.ecs import grpc_endpoint, template
from deploy.ecs.config import DeployConfig
from deploy.ecs.outcome import Change, Outcome
from deploy.ecs.spec import spec_digest, spec_tag, tagged_digest

TRITON = "triton"
GATEWAY = "gateway"


def render_task_definition(config: DeployConfig, account_id: str, model_repository_uri: str) -> dict[str, Any]:
    """The ``register_task_definition`` request for this deployment."""
    values = {
        "family": config.name,
        "task_cpu": str(config.task_cpu),
        "task_memory_mib": str(config.task_memory_mib),
        "task_role_arn": config.role_arn(account_id, config.task_role_name),
        "execution_role_arn": config.role_arn(account_id, config.execution_role_name),
        "triton_image": config.triton_image.uri,
        "gateway_image": config.gateway_image.uri,
        "model_repository_uri": model_repository_uri,
        "region": config.region,
        "shm_size_mib": config.shm_size_mib,
        "log_group": config.log_group,
        "gateway_workers": str(config.gateway_workers),
        "table": config.table_name,
    }
    definition = template.render(template.load("task-definition.json"), values)
    if config.api_keys_secret_arn:
        # The ECS agent reads the secret with the execution role and hands it to the gateway as a variable.
        container(definition, GATEWAY)["secrets"] = [
            {"name": "GATEWAY_API_KEYS", "valueFrom": config.api_keys_secret_arn}
        ]
    if config.grpc:
        triton, gateway = container(definition, TRITON), container(definition, GATEWAY)
        triton["command"] = grpc_endpoint.triton_command(triton["command"])
        triton["portMappings"] = [{"containerPort": grpc_endpoint.GRPC_PORT, "protocol": "tcp"}]
        key = config.grpc.key_secret_arn
        triton["secrets"] = [{"name": grpc_endpoint.KEY_VARIABLE, "valueFrom": key}]
        # The gateway calls the same gRPC port on loopback, so it needs the key as well.
        gateway.setdefault("secrets", []).append({"name": grpc_endpoint.GATEWAY_KEY_VARIABLE, "valueFrom": key})
    return definition


def container(definition: dict[str, Any], name: str) -> dict[str, Any]:
    """One container definition by name."""
    return next(c for c in definition["containerDefinitions"] if c["name"] == name)


def gateway_port(definition: dict[str, Any]) -> int:
    """The port the load balancer sends traffic to, as the template declares it."""
    return int(container(definition, GATEWAY)["portMappings"][0]["containerPort"])


def register_if_changed(ecs: BaseClient, definition: dict[str, Any]) -> tuple[str, Outcome]:
    """The ARN of a revision equal to ``definition``: the latest one if it is, else a new registration."""
    try:
        latest = ecs.describe_task_definition(taskDefinition=definition["family"], include=["TAGS"])
    except ecs.exceptions.ClientException:  # no active revision in this family yet
        latest = None
    if latest is not None and tagged_digest(latest.get("tags")) == spec_digest(definition):
        described = latest["taskDefinition"]
        return described["taskDefinitionArn"], Outcome(Change.UNCHANGED, f"revision {described['revision']}")
    registered = ecs.register_task_definition(**definition, tags=[spec_tag(definition)])["taskDefinition"]
    return registered["taskDefinitionArn"], Outcome(Change.CREATED, f"revision {registered['revision']}")
