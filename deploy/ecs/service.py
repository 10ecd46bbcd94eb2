"""The ECS service: created once, updated only when what the deploy would apply differs, then waited on."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.client import BaseClient

from deploy.ecs.config import DeployConfig
from deploy.ecs.errors import DeployError
from deploy.ecs.grpc_endpoint import GRPC_PORT
from deploy.ecs.outcome import Change, Outcome
from deploy.ecs.spec import spec_digest, spec_tag, tagged_digest
from deploy.ecs.task_definition import GATEWAY, TRITON


def service_spec(
    config: DeployConfig,
    task_definition_arn: str,
    target_group_arn: str,
    container_port: int,
    grpc: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The service settings ``update_service`` can change (desiredCount is left to autoscaling). ``grpc``: the
    gRPC endpoint's target group and the tasks' security group for it, when it is on."""
    balancers = [{"targetGroupArn": target_group_arn, "containerName": GATEWAY, "containerPort": container_port}]
    groups = list(config.security_groups)
    if grpc:
        balancers.append({"targetGroupArn": grpc[0], "containerName": TRITON, "containerPort": GRPC_PORT})
        groups.append(grpc[1])
    return {
        "taskDefinition": task_definition_arn,
        "loadBalancers": balancers,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": list(config.subnets), "securityGroups": groups}},
        # Until the grace period ends, failing ALB checks do not stop a task that is still loading models.
        "healthCheckGracePeriodSeconds": config.grace_period_s,
        # A new revision that never gets healthy is rolled back; capacity never drops below the desired count.
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "minimumHealthyPercent": 100,
            "maximumPercent": 200,
        },
        "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
    }


def ensure_service(ecs: BaseClient, config: DeployConfig, spec: dict[str, Any]) -> Outcome:
    """Create the service, or update it when the spec or the running task definition differs."""
    described = ecs.describe_services(cluster=config.cluster, services=[config.name], include=["TAGS"])
    service = next((s for s in described["services"] if s["status"] != "INACTIVE"), None)
    if service is None:
        placement = (
            {"capacityProviderStrategy": [{"capacityProvider": config.capacity_provider, "weight": 1}]}
            if config.capacity_provider
            else {"launchType": "EC2"}
        )
        ecs.create_service(
            cluster=config.cluster,
            serviceName=config.name,
            desiredCount=config.desired_count,
            propagateTags="SERVICE",
            enableECSManagedTags=True,
            tags=[spec_tag(spec)],
            **placement,
            **spec,
        )
        return Outcome(Change.CREATED, f"{config.name} on {config.cluster_name}")
    if service["status"] == "DRAINING":
        raise DeployError(f"service {config.name} is being deleted; run the deploy again once it is gone")
    applied = tagged_digest(service.get("tags"))
    if service["taskDefinition"] == spec["taskDefinition"] and applied == spec_digest(spec):
        return Outcome(Change.UNCHANGED, f"{config.name} runs {_revision(spec['taskDefinition'])}")
    ecs.update_service(cluster=config.cluster, service=config.name, **spec)
    ecs.tag_resource(resourceArn=service["serviceArn"], tags=[spec_tag(spec)])
    return Outcome(Change.UPDATED, f"{config.name} rolls out {_revision(spec['taskDefinition'])}")


def wait_until_stable(
    ecs: BaseClient,
    config: DeployConfig,
    say: Callable[[str], None],
    poll_s: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll until one deployment runs the desired count, printing changes and new service events.

    Bounded by ``config.wait_timeout_s``; a failed rollout (circuit breaker) raises at once.
    """
    deadline = clock() + config.wait_timeout_s
    seen_events: set[str] | None = None  # events from before the wait are history, not progress
    last_status = ""
    while True:
        service = ecs.describe_services(cluster=config.cluster, services=[config.name])["services"][0]
        events = service.get("events", [])
        for event in reversed(events):
            if seen_events is not None and event["id"] not in seen_events:
                say(f"      event: {event['message']}")
        seen_events = {event["id"] for event in events}
        primary = next(d for d in service["deployments"] if d["status"] == "PRIMARY")
        rollout = primary.get("rolloutState", "")
        if rollout == "FAILED":
            raise DeployError(
                f"deployment failed: {primary.get('rolloutStateReason', '')} "
                "(the circuit breaker rolls the service back to the previous task definition)"
            )
        status = (
            f"{primary['runningCount']}/{primary['desiredCount']} running, "
            f"{primary['pendingCount']} pending, {len(service['deployments'])} deployment(s), "
            f"rollout {rollout or 'n/a'}"
        )
        if status != last_status:
            say(f"      {status}")
            last_status = status
        settled = len(service["deployments"]) == 1 and rollout in ("", "COMPLETED")
        if settled and primary["runningCount"] == primary["desiredCount"]:
            return
        remaining = deadline - clock()
        if remaining <= 0:
            raise DeployError(
                f"service {config.name} not stable after {config.wait_timeout_s} s; ECS keeps trying "
                "(see the service's events in the console, or run again with --no-wait)"
            )
        sleep(min(poll_s, remaining))


def _revision(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1]
