"""The documents the deploy renders: the task definition (checked against botocore's own ECS model and
the invariants the service relies on) and the IAM policies (least privilege)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from deploy.ecs import policies
from deploy.ecs.config import DeployConfig, EcrImage
from deploy.ecs.errors import DeployError
from deploy.ecs.spec import spec_tag
from deploy.ecs.task_definition import GATEWAY, TRITON, container, render_task_definition
from tests.support.dockerfile import LOOPBACK_ONLY

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "eu-west-1"
MODEL_URI = "s3://models-bucket/models/0123456789abcdef"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:tritonserve/api-keys-AbCdEf"


@pytest.fixture
def config() -> DeployConfig:
    return DeployConfig(
        name="tritonserve",
        region=REGION,
        cluster="gpu",
        subnets=("subnet-1", "subnet-2"),
        security_groups=("sg-1",),
        listener_arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/public/1/2",
        bucket="models-bucket",
        triton_image=EcrImage.parse(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tritonserve-triton:24.10-1"),
        gateway_image=EcrImage.parse(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tritonserve-gateway:0.1.0"),
    )


@pytest.fixture
def definition(config: DeployConfig) -> dict[str, Any]:
    return render_task_definition(config, ACCOUNT, MODEL_URI)


def _environment(container_definition: dict[str, Any]) -> dict[str, str]:
    return {pair["name"]: pair["value"] for pair in container_definition["environment"]}


@pytest.mark.parametrize("secret", [None, SECRET])
def test_task_definition_passes_botocore_validation(config: DeployConfig, secret: str | None) -> None:
    definition = render_task_definition(replace(config, api_keys_secret_arn=secret), ACCOUNT, MODEL_URI)
    request = {**definition, "tags": [spec_tag(definition)]}  # exactly what register_if_changed sends
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


def test_every_placeholder_is_filled(definition: dict[str, Any]) -> None:
    assert "${" not in json.dumps(definition)
    assert definition["family"] == "tritonserve"
    assert definition["executionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/tritonserve-execution"


def test_gpu_task_on_ec2_with_awsvpc(definition: dict[str, Any]) -> None:
    assert definition["requiresCompatibilities"] == ["EC2"]  # Fargate has no GPUs
    assert definition["networkMode"] == "awsvpc"
    assert container(definition, TRITON)["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert "resourceRequirements" not in container(definition, GATEWAY)


def test_triton_listens_inside_the_task_only_and_the_gateway_reaches_it_on_localhost(
    definition: dict[str, Any],
) -> None:
    """Triton's ports bypass the gateway's keys and limits: loopback only, whatever the security groups say."""
    triton, gateway = container(definition, TRITON), container(definition, GATEWAY)
    assert "portMappings" not in triton
    assert set(LOOPBACK_ONLY) <= set(triton["command"])
    # awsvpc: the containers of one task share a network namespace, so the gateway dials localhost.
    assert _environment(gateway)["GATEWAY_TRITON_URL"] == "127.0.0.1:8001"
    assert [m["containerPort"] for m in gateway["portMappings"]] == [int(_environment(gateway)["GATEWAY_PORT"])]
    assert _environment(gateway)["GATEWAY_HOST"] == "0.0.0.0"


def test_health_checks_probe_readiness(definition: dict[str, Any]) -> None:
    triton, gateway = container(definition, TRITON), container(definition, GATEWAY)
    assert triton["healthCheck"]["command"][0] == "CMD"
    assert "http://127.0.0.1:8000/v2/health/ready" in triton["healthCheck"]["command"][-1]
    assert "http://127.0.0.1:8080/readyz" in gateway["healthCheck"]["command"][-1]
    for check in (triton["healthCheck"], gateway["healthCheck"]):
        assert check["timeout"] < check["interval"]
        assert check["startPeriod"] <= 300  # the ECS maximum


def test_gateway_starts_once_triton_is_healthy(definition: dict[str, Any]) -> None:
    assert container(definition, GATEWAY)["dependsOn"] == [{"containerName": TRITON, "condition": "HEALTHY"}]
    assert all(c["essential"] for c in definition["containerDefinitions"])


def test_grace_period_covers_both_start_periods(config: DeployConfig, definition: dict[str, Any]) -> None:
    """The gateway starts only after Triton is healthy, so ALB checks can fail for both start periods."""
    start = sum(container(definition, name)["healthCheck"]["startPeriod"] for name in (TRITON, GATEWAY))
    assert config.grace_period_s >= start


def test_stop_timeouts_outlast_the_graceful_shutdowns(definition: dict[str, Any]) -> None:
    triton, gateway = container(definition, TRITON), container(definition, GATEWAY)
    [exit_timeout] = [
        int(flag[1]) for arg in triton["command"] if (flag := re.fullmatch(r"--exit-timeout-secs=(\d+)", arg))
    ]
    shutdown_timeout = float(_environment(gateway)["GATEWAY_SHUTDOWN_TIMEOUT_S"])
    assert triton["stopTimeout"] > exit_timeout
    assert gateway["stopTimeout"] > shutdown_timeout
    # ECS stops the dependent gateway first; Triton must not be cut short while it drains.
    assert triton["stopTimeout"] > shutdown_timeout


def test_triton_gets_shared_memory_and_file_descriptors(config: DeployConfig, definition: dict[str, Any]) -> None:
    triton = container(definition, TRITON)
    # Docker's default /dev/shm is 64 MiB; the python backend passes tensors through it.
    assert triton["linuxParameters"]["sharedMemorySize"] == config.shm_size_mib >= 1024
    for name in (TRITON, GATEWAY):
        limits = {u["name"]: u for u in container(definition, name)["ulimits"]}
        assert limits["nofile"]["softLimit"] >= 65536 and limits["nofile"]["hardLimit"] >= 65536
        assert container(definition, name)["linuxParameters"]["initProcessEnabled"] is True  # SIGTERM forwarded


def test_both_containers_log_to_the_service_log_group(config: DeployConfig, definition: dict[str, Any]) -> None:
    for name in (TRITON, GATEWAY):
        logging = container(definition, name)["logConfiguration"]
        assert logging["logDriver"] == "awslogs"
        assert logging["options"]["awslogs-group"] == config.log_group
        assert logging["options"]["awslogs-region"] == REGION
        assert logging["options"]["awslogs-stream-prefix"] == name


def test_environment_names_the_models_the_table_and_the_region(definition: dict[str, Any]) -> None:
    triton, gateway = (
        _environment(container(definition, TRITON)),
        _environment(container(definition, GATEWAY)),
    )
    assert triton["MODEL_REPOSITORY_URI"] == MODEL_URI
    assert triton["AWS_REGION"] == triton["AWS_DEFAULT_REGION"] == REGION
    assert gateway["GATEWAY_ITEM_STORE"] == "dynamodb"
    assert gateway["GATEWAY_DYNAMODB_TABLE"] == "tritonserve-items"
    assert gateway["GATEWAY_AWS_REGION"] == REGION
    assert "GATEWAY_API_KEYS" not in gateway  # never in plain text


def test_api_keys_come_from_secrets_manager_when_configured(config: DeployConfig) -> None:
    with_secret = replace(config, api_keys_secret_arn=SECRET)
    gateway = container(render_task_definition(with_secret, ACCOUNT, MODEL_URI), GATEWAY)
    assert gateway["secrets"] == [{"name": "GATEWAY_API_KEYS", "valueFrom": SECRET}]
    statements = policies.execution_role_policy(with_secret, ACCOUNT)["Statement"]
    assert {"Action": "secretsmanager:GetSecretValue", "Resource": SECRET}.items() <= statements[-1].items()
    without = policies.execution_role_policy(config, ACCOUNT)["Statement"]
    assert not any("secretsmanager" in json.dumps(s) for s in without)


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_task_role_reads_only_the_model_prefix_and_writes_only_the_table(config: DeployConfig) -> None:
    statements = {s["Sid"]: s for s in policies.task_role_policy(config, ACCOUNT)["Statement"]}
    assert all(s["Effect"] == "Allow" and s["Resource"] != "*" for s in statements.values())
    assert _actions(statements["ReadModelRepository"]) == ["s3:GetObject"]
    assert statements["ReadModelRepository"]["Resource"] == "arn:aws:s3:::models-bucket/models/*"
    listing = statements["ListModelRepository"]
    assert _actions(listing) == ["s3:ListBucket"] and listing["Resource"] == "arn:aws:s3:::models-bucket"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["models/*"]}}
    crud = statements["ItemsCrud"]
    assert crud["Resource"] == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/tritonserve-items"
    assert all(action.startswith("dynamodb:") and "*" not in action for action in _actions(crud))
    assert not {"dynamodb:DeleteTable", "dynamodb:CreateTable", "dynamodb:UpdateTable"} & set(_actions(crud))
    everything = json.dumps(policies.task_role_policy(config, ACCOUNT))
    assert "s3:PutObject" not in everything and "s3:DeleteObject" not in everything


def test_execution_role_pulls_only_the_two_repositories_and_writes_only_the_log_group(
    config: DeployConfig,
) -> None:
    statements = {s["Sid"]: s for s in policies.execution_role_policy(config, ACCOUNT)["Statement"]}
    # GetAuthorizationToken cannot be scoped to a repository: the one wildcard resource, and its only action.
    wildcards = [sid for sid, s in statements.items() if s["Resource"] == "*"]
    assert wildcards == ["EcrLogin"] and _actions(statements["EcrLogin"]) == ["ecr:GetAuthorizationToken"]
    assert statements["EcrPullTheTwoImages"]["Resource"] == [
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/tritonserve-gateway",
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/tritonserve-triton",
    ]
    assert statements["WriteTaskLogs"]["Resource"] == (f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/tritonserve:*")


def test_only_ecs_tasks_of_this_account_assume_the_roles(config: DeployConfig) -> None:
    (statement,) = policies.trust_policy(config, ACCOUNT)["Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}


def test_arns_follow_the_partition_of_the_region(config: DeployConfig) -> None:
    china = replace(
        config,
        region="cn-north-1",
        triton_image=EcrImage.parse(f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn/tritonserve-triton:1"),
    )
    assert china.table_arn(ACCOUNT).startswith("arn:aws-cn:dynamodb:cn-north-1:")
    assert render_task_definition(china, ACCOUNT, MODEL_URI)["taskRoleArn"].startswith("arn:aws-cn:iam::")


@pytest.mark.parametrize(
    "uri",
    [
        "nvcr.io/nvidia/tritonserver:24.10-py3",
        "tritonserve-gateway:latest",
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
    ],
)
def test_images_must_come_from_ecr(uri: str) -> None:
    with pytest.raises(DeployError, match="not an Amazon ECR image URI"):
        EcrImage.parse(uri)


def test_an_image_digest_is_accepted() -> None:
    image = EcrImage.parse(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/gateway@sha256:{'a' * 64}")
    assert (image.account_id, image.region, image.repository) == (ACCOUNT, REGION, "team/gateway")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_count": 3, "desired_count": 2}, "--min-count <= --desired-count"),
        ({"name": "has_underscore"}, "--name"),
        ({"model_prefix": "/"}, "--model-prefix"),
        ({"subnets": ()}, "--subnets"),
        ({"account_id": "12"}, "--account-id"),
    ],
)
def test_config_refuses_what_aws_would_reject_later(config: DeployConfig, change: dict[str, Any], message: str) -> None:
    with pytest.raises(DeployError, match=re.escape(message)):
        replace(config, **change)
