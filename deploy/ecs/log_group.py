"""The CloudWatch log group both containers write to, created by the deploy so it has a retention period
(``awslogs-create-group`` would keep logs forever and need one more permission on the execution role)."""

from __future__ import annotations

from botocore.client import BaseClient

from deploy.ecs.outcome import Change, Outcome, updated_or_unchanged


def ensure_log_group(logs: BaseClient, name: str, retention_days: int) -> Outcome:
    groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == name), None)
    if group is None:
        logs.create_log_group(logGroupName=name)
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
        return Outcome(Change.CREATED, name)
    updated = []
    if group.get("retentionInDays") != retention_days:
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
        updated.append(f"retention {retention_days} days")
    return updated_or_unchanged(name, updated)
