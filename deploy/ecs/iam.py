"""The two task roles, each with one inline policy, created or brought back to the rendered documents."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from botocore.client import BaseClient

from deploy.ecs.outcome import Change, Outcome, updated_or_unchanged


def ensure_role(
    iam: BaseClient, name: str, trust_policy: dict[str, Any], policy_name: str, policy: dict[str, Any]
) -> Outcome:
    """Create the role or update what differs: its trust policy and its inline policy ``policy_name``."""
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust_policy),
            Description="tritonserve ECS task (deploy/ecs)",
        )
        iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
        return Outcome(Change.CREATED, name)
    updated = []
    if _document(role["AssumeRolePolicyDocument"]) != trust_policy:
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust_policy))
        updated.append("trust policy")
    if _inline_policy(iam, name, policy_name) != policy:
        iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
        updated.append(f"policy {policy_name}")
    return updated_or_unchanged(name, updated)


def _inline_policy(iam: BaseClient, role: str, policy_name: str) -> dict[str, Any] | None:
    try:
        return _document(iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"])
    except iam.exceptions.NoSuchEntityException:
        return None


def _document(document: str | dict[str, Any]) -> dict[str, Any]:
    """IAM returns documents URL-encoded; boto3 usually decodes them already."""
    return document if isinstance(document, dict) else json.loads(unquote(document))
