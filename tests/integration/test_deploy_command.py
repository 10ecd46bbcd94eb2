"""``python -m deploy.ecs`` end to end against moto's AWS-protocol server on loopback.

The server speaks the real HTTP protocols of S3, DynamoDB, IAM, STS, CloudWatch Logs, ECS, ELBv2 and
Application Auto Scaling; boto3 reaches it through ``--endpoint-url``. It is an emulator: these tests show
the deploy sends valid, idempotent requests in the right order, not that ECS would place the task.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import Request

import boto3
import pytest

from deploy.ecs import fetch_models
from deploy.ecs.cli import main
from deploy.ecs.dynamodb import create_table_if_missing
from deploy.ecs.errors import DeployError
from deploy.ecs.model_repository import scan_repository
from deploy.ecs.task_definition import GATEWAY, TRITON, container
from launcher.process import DIRECT
from tests.support.deploy_inputs import (
    ACCOUNT,
    BUCKET,
    GATEWAY_IMAGE,
    REGION,
    TRITON_IMAGE,
    deploy_args,
    offline_aws_env,
    write_repository,
)
from tests.support.stack import running_moto


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with running_moto() as url:
        yield url


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offline_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def aws(moto_url: str, aws_env: None) -> Iterator[Any]:
    """A clean moto state, and a factory of clients pointed at it."""
    DIRECT.open(Request(f"{moto_url}/moto-api/reset", method="POST")).close()

    def client(service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=moto_url)

    yield client


@pytest.fixture
def infrastructure(aws: Any) -> dict[str, str]:
    """What a user has before deploying: VPC, two subnets, a security group, an ALB listener, a cluster."""
    ec2, elbv2 = aws("ec2"), aws("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate("ab", 1)
    ]
    group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    balancer = elbv2.create_load_balancer(Name="public", Subnets=subnets, SecurityGroups=[group])
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancers"][0]["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain"},
            }
        ],
    )
    aws("ecs").create_cluster(clusterName="gpu")
    return {
        "cluster": "gpu",
        "subnets": ",".join(subnets),
        "security_groups": group,
        "listener_arn": listener["Listeners"][0]["ListenerArn"],
        "load_balancer_arn": balancer["LoadBalancers"][0]["LoadBalancerArn"],
    }


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return write_repository(tmp_path / "model_repository")


def test_deploy_creates_the_stack_and_a_second_run_changes_nothing(
    aws: Any,
    moto_url: str,
    infrastructure: dict[str, str],
    repository: Path,
    tmp_path: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = deploy_args(infrastructure, repository, "--endpoint-url", moto_url)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[11/11] autoscaling" in out and "1/1 running" in out

    # The bucket holds the repository under its digest, each object carrying its checksum.
    scanned = scan_repository(repository)
    s3 = aws("s3")
    prefix = f"models/{scanned.digest}/"
    objects = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert scanned.empty_dirs == ("classify/1",)
    assert sorted(o["Key"] for o in objects) == sorted(
        [prefix + f.relative for f in scanned.files] + [prefix + "classify/1/"]
    )
    head = s3.head_object(Bucket=BUCKET, Key=prefix + "resnet50/1/model.onnx")
    assert head["Metadata"]["sha256"] == next(f.sha256 for f in scanned.files if f.relative.startswith("resnet50"))

    # The table has the one key schema the gateway expects.
    table = aws("dynamodb").describe_table(TableName="tritonserve-items")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    # The task definition is registered with the rendered containers.
    ecs = aws("ecs")
    definition = ecs.describe_task_definition(taskDefinition="tritonserve")["taskDefinition"]
    assert definition["revision"] == 1
    assert [c["name"] for c in definition["containerDefinitions"]] == [TRITON, GATEWAY]
    triton, gateway = container(definition, TRITON), container(definition, GATEWAY)
    assert triton["image"] == TRITON_IMAGE and gateway["image"] == GATEWAY_IMAGE
    model_uri = _environment(triton)["MODEL_REPOSITORY_URI"]
    assert model_uri == f"s3://{BUCKET}/models/{scanned.digest}"
    assert triton["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert _environment(gateway)["GATEWAY_DYNAMODB_TABLE"] == "tritonserve-items"
    assert definition["taskRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/tritonserve-task"

    # What the Triton container's entrypoint copies at start, told only its environment, is the repository.
    fetched = tmp_path / "fetched"
    for name, value in {
        "MODEL_REPOSITORY_URI": model_uri,
        "MODEL_REPOSITORY_DIR": str(fetched),
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_url,
    }.items():
        monkeypatch.setenv(name, value)
    fetch_models.main([])
    assert sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()) == sorted(
        f.relative for f in scanned.files
    )
    assert (fetched / "classify" / "1").is_dir()
    for file in scanned.files:
        assert (fetched / file.relative).read_bytes() == file.path.read_bytes()

    # The roles carry the rendered inline policies.
    iam = aws("iam")
    policy = iam.get_role_policy(RoleName="tritonserve-task", PolicyName="tritonserve-task")["PolicyDocument"]
    assert policy["Statement"][0]["Resource"] == f"arn:aws:s3:::{BUCKET}/models/*"

    # The service sits behind the load balancer: target group checking /readyz, a rule forwarding to it.
    elbv2 = aws("elbv2")
    group = elbv2.describe_target_groups(Names=["tritonserve"])["TargetGroups"][0]
    assert (group["TargetType"], group["Port"], group["HealthCheckPath"]) == ("ip", 8080, "/readyz")
    rules = elbv2.describe_rules(ListenerArn=infrastructure["listener_arn"])["Rules"]
    forwarding = [r for r in rules if r["Actions"][0].get("TargetGroupArn") == group["TargetGroupArn"]]
    assert len(forwarding) == 1 and forwarding[0]["Priority"] == "100"
    service = ecs.describe_services(cluster="gpu", services=["tritonserve"])["services"][0]
    assert service["taskDefinition"] == definition["taskDefinitionArn"]
    assert service["loadBalancers"] == [
        {"targetGroupArn": group["TargetGroupArn"], "containerName": GATEWAY, "containerPort": 8080}
    ]
    assert service["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == infrastructure["subnets"].split(",")

    # Autoscaling tracks requests per target on that load balancer and target group.
    autoscaling = aws("application-autoscaling")
    target = autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in target] == [
        ("service/gpu/tritonserve", 1, 4)
    ]
    scaling = autoscaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    tracking = scaling[0]["TargetTrackingScalingPolicyConfiguration"]
    metric = tracking["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    balancer_part = infrastructure["load_balancer_arn"].split(":loadbalancer/")[1]
    assert metric["ResourceLabel"] == f"{balancer_part}/{group['TargetGroupArn'].split(':')[-1]}"

    # The second run finds everything in place.
    uploaded_at = {o["Key"]: o["LastModified"] for o in objects}
    deployments = service["deployments"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 created, 0 updated, 11 unchanged" in out
    assert {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]} == uploaded_at
    assert ecs.list_task_definitions(familyPrefix="tritonserve")["taskDefinitionArns"] == [
        definition["taskDefinitionArn"]
    ]
    assert ecs.describe_services(cluster="gpu", services=["tritonserve"])["services"][0]["deployments"] == deployments
    assert len(elbv2.describe_rules(ListenerArn=infrastructure["listener_arn"])["Rules"]) == len(rules)


def test_a_changed_model_rolls_out_a_new_revision_and_keeps_the_old_models(
    aws: Any, moto_url: str, infrastructure: dict[str, str], repository: Path, capsys: Any
) -> None:
    args = deploy_args(infrastructure, repository, "--endpoint-url", moto_url, "--no-wait")
    assert main(args) == 0
    old_digest = scan_repository(repository).digest
    (repository / "resnet50" / "1" / "model.onnx").write_bytes(b"retrained")
    capsys.readouterr()

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "uploading resnet50/1/model.onnx" in out
    # The other files are not sent again; the empty "classify/1/" is a new zero-byte marker.
    assert "2 uploaded, 7 copied within S3, 0 already there" in out
    new_digest = scan_repository(repository).digest
    ecs = aws("ecs")
    service = ecs.describe_services(cluster="gpu", services=["tritonserve"])["services"][0]
    assert service["taskDefinition"].endswith("task-definition/tritonserve:2")
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    assert _environment(container(definition, TRITON))["MODEL_REPOSITORY_URI"].endswith(new_digest)
    keys = [o["Key"] for o in aws("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(key.startswith(f"models/{old_digest}/") for key in keys), "revision 1 must still find its models"


def test_deploy_refuses_credentials_of_another_account(
    aws: Any, moto_url: str, infrastructure: dict[str, str], repository: Path, capsys: Any
) -> None:
    args = deploy_args(infrastructure, repository, "--endpoint-url", moto_url, "--account-id", "210987654321")
    assert main(args) == 1
    assert "not 210987654321" in capsys.readouterr().err
    assert aws("s3").list_buckets()["Buckets"] == []


def test_create_table_if_missing_creates_once_and_refuses_another_key_schema(aws: Any) -> None:
    dynamodb = aws("dynamodb")
    assert create_table_if_missing(dynamodb, "items") is True
    assert create_table_if_missing(dynamodb, "items") is False
    dynamodb.create_table(
        TableName="other",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(DeployError, match="key schema"):
        create_table_if_missing(dynamodb, "other")


def _environment(container_definition: dict[str, Any]) -> dict[str, str]:
    return {pair["name"]: pair["value"] for pair in container_definition["environment"]}


def test_the_grpc_endpoint_is_created_once_and_keyed(
    aws: Any, moto_url: str, infrastructure: dict[str, str], repository: Path, capsys: Any
) -> None:
    """--grpc-*: a TLS network load balancer to Triton's port 8001, security groups of its own, the key from Secrets
    Manager; a second run changes nothing."""
    certificate = aws("acm").request_certificate(DomainName="grpc.example.com")["CertificateArn"]
    secret = aws("secretsmanager").create_secret(Name="tritonserve/grpc-key", SecretString="k" * 32)["ARN"]
    grpc = [
        "--grpc-certificate-arn",
        certificate,
        "--grpc-key-secret-arn",
        secret,
        "--grpc-client-cidrs",
        "10.9.0.0/16",
    ]
    assert main(deploy_args(infrastructure, repository, "--endpoint-url", moto_url, *grpc)) == 0
    out = capsys.readouterr().out
    assert "[11/13] gRPC endpoint tritonserve-grpc" in out and ".elb.amazonaws.com:443" in out

    elbv2, ec2 = aws("elbv2"), aws("ec2")
    balancer = elbv2.describe_load_balancers(Names=["tritonserve-grpc"])["LoadBalancers"][0]
    assert balancer["Type"] == "network" and balancer["Scheme"] == "internal"
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    assert listener["Protocol"] == "TLS" and listener["Port"] == 443
    assert listener["Certificates"] == [{"CertificateArn": certificate}]
    group = elbv2.describe_target_groups(Names=["tritonserve-grpc"])["TargetGroups"][0]
    assert (group["Protocol"], group["Port"], group["TargetType"]) == ("TCP", 8001, "ip")
    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": ["tritonserve-grpc-nlb", "tritonserve-grpc-task"]}]
        )["SecurityGroups"]
    }
    (from_clients,) = groups["tritonserve-grpc-nlb"]["IpPermissions"]
    assert from_clients["FromPort"] == 443 and from_clients["IpRanges"][0]["CidrIp"] == "10.9.0.0/16"
    (from_balancer,) = groups["tritonserve-grpc-task"]["IpPermissions"]
    assert from_balancer["FromPort"] == 8001
    assert from_balancer["UserIdGroupPairs"][0]["GroupId"] == groups["tritonserve-grpc-nlb"]["GroupId"]

    service = aws("ecs").describe_services(cluster="gpu", services=["tritonserve"])["services"][0]
    assert {(b["containerName"], b["containerPort"]) for b in service["loadBalancers"]} == {
        (GATEWAY, 8080), (TRITON, 8001),
    }  # fmt: skip
    definition = aws("ecs").describe_task_definition(taskDefinition="tritonserve")["taskDefinition"]
    assert container(definition, TRITON)["secrets"] == [{"name": "TRITON_GRPC_KEY", "valueFrom": secret}]
    assert "k" * 32 not in json.dumps(definition)

    assert main(deploy_args(infrastructure, repository, "--endpoint-url", moto_url, *grpc)) == 0
    assert capsys.readouterr().out.strip().endswith("0 created, 0 updated, 13 unchanged")
