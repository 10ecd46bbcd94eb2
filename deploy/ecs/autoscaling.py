"""Target tracking on ALB requests per target: more tasks (and, with a capacity provider, more GPU
instances) when each task gets more requests per minute than the target, fewer when traffic falls."""

from __future__ import annotations

from typing import Any

from botocore.client import BaseClient

from deploy.ecs.config import DeployConfig
from deploy.ecs.outcome import Change, Outcome, updated_or_unchanged
from deploy.ecs.spec import contains

NAMESPACE = "ecs"
DIMENSION = "ecs:service:DesiredCount"


def policy_configuration(config: DeployConfig, resource_label: str) -> dict[str, Any]:
    """Track ``config.requests_per_target`` requests per task per minute, counted by the ALB."""
    return {
        "TargetValue": float(config.requests_per_target),
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "ALBRequestCountPerTarget",
            "ResourceLabel": resource_label,
        },
        # A new task needs minutes (image pull, model load): scale out early, scale in slowly.
        "ScaleOutCooldown": 60,
        "ScaleInCooldown": 300,
        "DisableScaleIn": False,
    }


def ensure_scaling(autoscaling: BaseClient, config: DeployConfig, resource_label: str) -> Outcome:
    """Register the service as a scalable target and put the policy, each only if it differs."""
    resource_id = f"service/{config.cluster_name}/{config.name}"
    target = {"ServiceNamespace": NAMESPACE, "ResourceId": resource_id, "ScalableDimension": DIMENSION}
    bounds = {"MinCapacity": config.min_count, "MaxCapacity": config.max_count}
    existing = autoscaling.describe_scalable_targets(
        ServiceNamespace=NAMESPACE, ResourceIds=[resource_id], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    span = f"{config.min_count}..{config.max_count} tasks"
    target_rate = f"target {config.requests_per_target} requests per task per minute"
    updated = []
    if not existing or not contains(existing[0], bounds):
        autoscaling.register_scalable_target(**target, **bounds)
        updated.append(span)
    desired = policy_configuration(config, resource_label)
    policies = autoscaling.describe_scaling_policies(PolicyNames=[config.scaling_policy_name], **target)
    current = policies["ScalingPolicies"]
    if not current or not contains(current[0].get("TargetTrackingScalingPolicyConfiguration"), desired):
        autoscaling.put_scaling_policy(
            PolicyName=config.scaling_policy_name,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration=desired,
            **target,
        )
        updated.append(target_rate)
    if not existing:
        return Outcome(Change.CREATED, f"{span}, {target_rate}")
    return updated_or_unchanged(span, updated)
