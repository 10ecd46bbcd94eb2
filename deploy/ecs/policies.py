"""The IAM documents of the two task roles, rendered from ``templates/iam/`` for one deployment.

Least privilege: the task role reads only the model prefix and does CRUD on the one table; the execution
role pulls only the two image repositories, writes only this service's log group, and reads the API-key
secret and the gRPC endpoint's key only when they are configured.
"""

from __future__ import annotations

from typing import Any

from deploy.ecs import template
from deploy.ecs.config import DeployConfig


def _values(config: DeployConfig, account_id: str) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "partition": config.partition,
        "region": config.region,
        "bucket": config.bucket,
        "model_prefix": config.prefix,
        "table_arn": config.table_arn(account_id),
        "log_group": config.log_group,
        "ecr_repository_arns": sorted(
            {image.repository_arn(config.partition) for image in (config.triton_image, config.gateway_image)}
        ),
    }


def trust_policy(config: DeployConfig, account_id: str) -> dict[str, Any]:
    """Who may assume either role: ECS tasks of this account and region, nobody else."""
    return template.render(template.load("iam/ecs-tasks-trust-policy.json"), _values(config, account_id))


def task_role_policy(config: DeployConfig, account_id: str) -> dict[str, Any]:
    """What the containers themselves may do."""
    return template.render(template.load("iam/task-role-policy.json"), _values(config, account_id))


def execution_role_policy(config: DeployConfig, account_id: str) -> dict[str, Any]:
    """What the ECS agent may do to start the task: pull images, create log streams, read secrets."""
    policy = template.render(template.load("iam/execution-role-policy.json"), _values(config, account_id))
    secrets = {
        "ReadApiKeysSecret": config.api_keys_secret_arn,
        "ReadGrpcKeySecret": config.grpc.key_secret_arn if config.grpc else None,
    }
    for sid, arn in secrets.items():
        if arn:
            policy["Statement"].append(
                {"Sid": sid, "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}
            )
    return policy
