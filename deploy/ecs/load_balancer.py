"""The gateway behind an existing Application Load Balancer: a target group and one rule on a listener.

The load balancer, its listener (and certificate) are the user's: they are usually shared and long-lived,
so the deploy only adds what belongs to this service.
"""

from __future__ import annotations

from typing import Any

from botocore.client import BaseClient

from deploy.ecs.errors import DeployError
from deploy.ecs.outcome import Change, Outcome, updated_or_unchanged
from deploy.ecs.spec import contains

# /readyz answers 503 until Triton, the models and the item store are ready: the ALB routes only then.
HEALTH_CHECK: dict[str, Any] = {
    "HealthCheckProtocol": "HTTP",
    "HealthCheckPath": "/readyz",
    "HealthCheckIntervalSeconds": 15,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 3,
    "Matcher": {"HttpCode": "200"},
}
# Seconds a deregistered task keeps its in-flight requests before ECS stops it (the ALB default is 300).
DEREGISTRATION_DELAY_S = 30


def listener_load_balancer(elbv2: BaseClient, listener_arn: str) -> tuple[str, str]:
    """The ARN and VPC of the load balancer that owns the listener."""
    try:
        listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    except elbv2.exceptions.ListenerNotFoundException:
        raise DeployError(f"no listener {listener_arn}: pass the ARN of an existing ALB listener") from None
    balancer = elbv2.describe_load_balancers(LoadBalancerArns=[listener["LoadBalancerArn"]])["LoadBalancers"][0]
    return balancer["LoadBalancerArn"], balancer["VpcId"]


def ensure_target_group(elbv2: BaseClient, name: str, vpc_id: str, port: int) -> tuple[str, Outcome]:
    """An ``ip`` target group (awsvpc tasks register by address) checking ``/readyz``."""
    try:
        group = elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]
    except elbv2.exceptions.TargetGroupNotFoundException:
        group = elbv2.create_target_group(
            Name=name, Protocol="HTTP", Port=port, VpcId=vpc_id, TargetType="ip", **HEALTH_CHECK
        )["TargetGroups"][0]
        _set_deregistration_delay(elbv2, group["TargetGroupArn"])
        return group["TargetGroupArn"], Outcome(Change.CREATED, name)
    arn = group["TargetGroupArn"]
    if group["VpcId"] != vpc_id or group["Port"] != port or group["TargetType"] != "ip":
        raise DeployError(
            f"target group {name} exists with another VPC, port or target type: delete it or choose another --name"
        )
    updated = []
    if not contains(group, HEALTH_CHECK):
        elbv2.modify_target_group(TargetGroupArn=arn, **HEALTH_CHECK)
        updated.append("health check")
    attributes = elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
    if {
        "Key": "deregistration_delay.timeout_seconds",
        "Value": str(DEREGISTRATION_DELAY_S),
    } not in attributes:
        _set_deregistration_delay(elbv2, arn)
        updated.append("deregistration delay")
    return arn, updated_or_unchanged(name, updated)


def ensure_listener_rule(
    elbv2: BaseClient, listener_arn: str, target_group_arn: str, priority: int, path_pattern: str
) -> Outcome:
    """One rule forwarding ``path_pattern`` to the target group at ``priority``."""
    conditions = [{"Field": "path-pattern", "PathPatternConfig": {"Values": [path_pattern]}}]
    rules = [
        rule
        for page in elbv2.get_paginator("describe_rules").paginate(ListenerArn=listener_arn)
        for rule in page["Rules"]
    ]
    rule = next((r for r in rules if _forwards_to(r, target_group_arn)), None)
    if rule is None:
        elbv2.create_rule(
            ListenerArn=listener_arn,
            Priority=priority,
            Conditions=conditions,
            Actions=[{"Type": "forward", "TargetGroupArn": target_group_arn}],
        )
        return Outcome(Change.CREATED, f"priority {priority}, {path_pattern}")
    updated = []
    if not contains(rule["Conditions"], conditions):
        elbv2.modify_rule(RuleArn=rule["RuleArn"], Conditions=conditions)
        updated.append(f"path {path_pattern}")
    if rule["Priority"] != str(priority):
        elbv2.set_rule_priorities(RulePriorities=[{"RuleArn": rule["RuleArn"], "Priority": priority}])
        updated.append(f"priority {priority}")
    return updated_or_unchanged(f"priority {priority}, {path_pattern}", updated)


def resource_label(load_balancer_arn: str, target_group_arn: str) -> str:
    """``app/<lb>/<id>/targetgroup/<tg>/<id>``: how target tracking names the request-count metric."""
    return f"{load_balancer_arn.split(':loadbalancer/', 1)[1]}/{target_group_arn.rsplit(':', 1)[1]}"


def _forwards_to(rule: dict[str, Any], target_group_arn: str) -> bool:
    for action in rule.get("Actions", []):
        if action.get("TargetGroupArn") == target_group_arn:
            return True
        groups = action.get("ForwardConfig", {}).get("TargetGroups", [])
        if any(group["TargetGroupArn"] == target_group_arn for group in groups):
            return True
    return False


def _set_deregistration_delay(elbv2: BaseClient, arn: str) -> None:
    elbv2.modify_target_group_attributes(
        TargetGroupArn=arn,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(DEREGISTRATION_DELAY_S)}],
    )
