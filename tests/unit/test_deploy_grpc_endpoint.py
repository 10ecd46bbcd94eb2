"""The opt-in gRPC endpoint as the deploy renders it: Triton keyed by a secret that never appears in the task
definition, its port mapped for the load balancer only, the secret readable by the execution role, the dry run."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.validate import ParamValidator

from deploy.ecs import grpc_endpoint, policies
from deploy.ecs.aws import Aws
from deploy.ecs.config import DeployConfig
from deploy.ecs.deploy import Deployment
from deploy.ecs.errors import DeployError
from deploy.ecs.grpc_endpoint import GrpcEndpoint
from deploy.ecs.model_repository import Repository
from deploy.ecs.service import service_spec
from deploy.ecs.spec import spec_tag
from deploy.ecs.task_definition import GATEWAY, TRITON, container, render_task_definition
from tests.unit.test_deploy_rendering import ACCOUNT, MODEL_URI, REGION, config  # noqa: F401 (a fixture)

KEY_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:tritonserve/grpc-key-XyZ123"
CERTIFICATE = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0d3c2b1a-0000-4000-8000-000000000000"
ENDPOINT = GrpcEndpoint(CERTIFICATE, KEY_SECRET, ("10.20.0.0/16",))


@pytest.fixture
def keyed(config: DeployConfig) -> DeployConfig:  # noqa: F811
    return replace(config, grpc=ENDPOINT)


def test_triton_is_keyed_from_the_secret_never_from_the_definition(keyed: DeployConfig) -> None:
    definition = render_task_definition(keyed, ACCOUNT, MODEL_URI)
    triton = container(definition, TRITON)
    shell, flag, script = triton["command"]
    assert (shell, flag) == ("sh", "-c")
    words = shlex.split(script)  # as sh splits it, before it expands the variable
    assert words[:2] == ["exec", "tritonserver"] and "--grpc-address=0.0.0.0" in words
    assert "--http-address=127.0.0.1" in words and "--metrics-address=127.0.0.1" in words  # those stay inside
    restricted = next(word for word in words if word.startswith("--grpc-restricted-protocol="))
    assert restricted == grpc_endpoint.restricted_protocol_flag("$TRITON_GRPC_KEY")
    protocols = restricted.split("=", 1)[1].split(":")[0].split(",")
    assert {"inference", "model-repository"} <= set(protocols) and not {"health", "metadata"} & set(protocols)
    assert triton["secrets"] == [{"name": "TRITON_GRPC_KEY", "valueFrom": KEY_SECRET}]
    assert triton["portMappings"] == [{"containerPort": 8001, "protocol": "tcp"}]
    gateway = container(definition, GATEWAY)
    assert {"name": "GATEWAY_TRITON_GRPC_KEY", "valueFrom": KEY_SECRET} in gateway["secrets"]
    plain = [json.dumps(c.get("environment", [])) for c in definition["containerDefinitions"]]
    assert not any("TRITON_GRPC_KEY" in environment for environment in plain)
    model = botocore.session.get_session().get_service_model("ecs")
    report = ParamValidator().validate(
        {**definition, "tags": [spec_tag(definition)]}, model.operation_model("RegisterTaskDefinition").input_shape
    )
    assert not report.has_errors(), report.generate_report()


def test_off_by_default_triton_stays_on_loopback(config: DeployConfig) -> None:  # noqa: F811
    triton = container(render_task_definition(config, ACCOUNT, MODEL_URI), TRITON)
    assert triton["command"][0] == "tritonserver" and "--grpc-address=127.0.0.1" in triton["command"]
    assert "portMappings" not in triton and "secrets" not in triton


def test_the_execution_role_reads_the_key_secret(keyed: DeployConfig) -> None:
    statements = policies.execution_role_policy(keyed, ACCOUNT)["Statement"]
    assert {"Sid": "ReadGrpcKeySecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
            "Resource": KEY_SECRET} in statements  # fmt: skip


def test_the_service_adds_the_grpc_target_group_and_security_group(keyed: DeployConfig) -> None:
    spec = service_spec(keyed, "arn:task", "arn:alb-tg", 8080, ("arn:grpc-tg", "sg-grpc-task"))
    assert spec["loadBalancers"][1] == {"targetGroupArn": "arn:grpc-tg", "containerName": TRITON, "containerPort": 8001}
    assert spec["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"] == ["sg-1", "sg-grpc-task"]


def test_the_listener_is_tls_with_http2_for_grpc() -> None:
    request = grpc_endpoint.listener_request(ENDPOINT, "arn:nlb", "arn:tg")
    assert request["Protocol"] == "TLS" and request["Port"] == 443 and request["AlpnPolicy"] == ["HTTP2Only"]
    assert request["Certificates"] == [{"CertificateArn": CERTIFICATE}] and request["SslPolicy"].startswith("ELB")
    model = botocore.session.get_session().get_service_model("elbv2")
    report = ParamValidator().validate(request, model.operation_model("CreateListener").input_shape)
    assert not report.has_errors(), report.generate_report()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "a-service-name-of-28-letters"}, "at most 27 characters"),
        ({"grpc": replace(ENDPOINT, client_cidrs=())}, "--grpc-client-cidrs"),
    ],
)
def test_config_refuses_an_endpoint_aws_would_reject(keyed: DeployConfig, change: dict[str, Any], message: str) -> None:
    with pytest.raises(DeployError, match=message):
        replace(keyed, **change)


def test_the_dry_run_renders_the_endpoint(keyed: DeployConfig) -> None:
    aws = Aws(boto3.Session(region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"), REGION)
    plan = Deployment(keyed, Repository(Path("model_repository"), (), ()), ACCOUNT, aws, print).plan()
    assert "security groups tritonserve-grpc-nlb (:443 from 10.20.0.0/16) and tritonserve-grpc-task (:8001" in plan
    assert "gRPC endpoint tritonserve-grpc: internal network load balancer, TLS listener :443" in plan
    assert "triton-grpc-protocol-tritonserve-key" in plan  # what clients send
    assert "--grpc-restricted-protocol=inference,model-repository" in plan and '\\"$TRITON_GRPC_KEY\\"' in plan
    assert f'"valueFrom": "{KEY_SECRET}"' in plan and '"Sid": "ReadGrpcKeySecret"' in plan
