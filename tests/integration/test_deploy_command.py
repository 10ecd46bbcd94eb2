"""``python -m deploy.ecs`` end to end against moto's AWS-protocol server on loopback.

The server speaks the real HTTP protocols of S3, DynamoDB, IAM, STS, CloudWatch Logs, ECS, ELBv2 and
Application Auto Scaling; boto3 reaches it through ``--endpoint-url``. It is an emulator: these tests show
the deploy sends valid, idempotent requests in the right order, not that ECS would place the task.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from deploy.ecs import fetch_models
from deploy.ecs.cli import main
from deploy.ecs.config import DeployConfig, EcrImage
from deploy.ecs.dynamodb import create_table_if_missing
from deploy.ecs.errors import DeployError
from deploy.ecs.model_repository import scan_repository
from deploy.ecs.service import wait_until_stable
from deploy.ecs.task_definition import GATEWAY, TRITON, container

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
TRITON_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tritonserve-triton:24.10-1"
GATEWAY_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tritonserve-gateway:0.1.0"
BUCKET = "tritonserve-models-test"
ROOT = Path(__file__).resolve().parents[2]

MODEL_CONFIGS = {
    "preprocess": 'name: "preprocess"\nbackend: "onnxruntime"\nmax_batch_size: 8\n',
    "resnet50": 'name: "resnet50"\nbackend: "onnxruntime"\nmax_batch_size: 32\ndynamic_batching { }\n',
    "edges": 'name: "edges"\nbackend: "onnxruntime"\nmax_batch_size: 8\n',
    "classify": """name: "classify"
platform: "ensemble"
max_batch_size: 8
output [ { name: "CLASSES" data_type: TYPE_STRING dims: [ -1 ] label_filename: "labels.txt" } ]
ensemble_scheduling { step [ { model_name: "preprocess" model_version: -1 },
                             { model_name: "resnet50" model_version: -1 } ] }
""",
}


def write_repository(root: Path) -> Path:
    """A model repository shaped like the real one, with small stand-ins for the ONNX files."""
    for name, config in MODEL_CONFIGS.items():
        (root / name).mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config)
        (root / name / "1").mkdir()  # an ensemble's stays empty, and Triton still needs it
        if name == "classify":
            (root / name / "labels.txt").write_text("tench\ngoldfish\n")
        else:
            (root / name / "1" / "model.onnx").write_bytes(f"not really onnx: {name}".encode() * 100)
    return root


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and no shared config: nothing here can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # moto reports a new service's tasks as running (and its rollout completed) when told so.
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")


@pytest.fixture
def aws(moto_url: str, aws_env: None) -> Iterator[Any]:
    """A clean moto state, and a factory of clients pointed at it."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).close()

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


def deploy_args(infrastructure: dict[str, str], repository: Path, *extra: str) -> list[str]:
    return [
        "--region", REGION,
        "--cluster", infrastructure["cluster"],
        "--subnets", infrastructure["subnets"],
        "--security-groups", infrastructure["security_groups"],
        "--listener-arn", infrastructure["listener_arn"],
        "--bucket", BUCKET,
        "--triton-image", TRITON_IMAGE,
        "--gateway-image", GATEWAY_IMAGE,
        "--model-repository", str(repository),
        *extra,
    ]  # fmt: skip


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


def test_dry_run_prints_the_plan_and_calls_no_aws(
    aws_env: None, repository: Path, infrastructure_offline: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nothing listens on: any AWS call would fail
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # and there are no credentials to sign one with
    args = deploy_args(infrastructure_offline, repository, "--endpoint-url", closed, "--dry-run")
    result = subprocess.run(
        [sys.executable, "-m", "deploy.ecs", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("Plan (dry run: nothing is sent to AWS)")
    assert "[11/11] autoscaling 1..4 tasks" in out
    digest = scan_repository(repository).digest
    assert f"s3://{BUCKET}/models/{digest}" in out
    assert "arn:aws:iam::<account-id>:role/tritonserve-task" in out


@pytest.fixture
def infrastructure_offline() -> dict[str, str]:
    return {
        "cluster": "gpu",
        "subnets": "subnet-1,subnet-2",
        "security_groups": "sg-1",
        "listener_arn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/public/1/2",
    }


def test_deploy_refuses_a_repository_without_onnx_files(
    aws_env: None, tmp_path: Path, infrastructure_offline: dict[str, str], capsys: Any
) -> None:
    repository = write_repository(tmp_path / "model_repository")
    (repository / "resnet50" / "1" / "model.onnx").unlink()
    assert main(deploy_args(infrastructure_offline, repository, "--dry-run")) == 1
    err = capsys.readouterr().err
    assert "resnet50/1/model.onnx is missing" in err and "python -m export" in err


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


class ListingOnlyS3:
    """Lists the given keys; downloading anything fails the test."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get_paginator(self, _: str) -> ListingOnlyS3:
        return self

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return [{"Contents": [{"Key": key} for key in self.keys]}]

    def download_file(self, *_: Any) -> None:
        pytest.fail("nothing may be downloaded")


@pytest.mark.parametrize("key", ["models/abc/../../etc/cron.d/x", "models/abc//etc/passwd"])
def test_fetch_writes_nothing_outside_the_destination(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refusing to write"):
        fetch_models.fetch(ListingOnlyS3([key]), f"s3://{BUCKET}/models/abc", tmp_path)


def test_fetch_without_a_repository_uri_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_REPOSITORY_URI", raising=False)
    with pytest.raises(SystemExit, match="MODEL_REPOSITORY_URI is not set"):
        fetch_models.main(["tritonserver"])


class ScriptedEcs:
    """Answers describe_services with one rollout state, forever: enough to drive the wait loop."""

    def __init__(self, rollout: str, running: int) -> None:
        self.rollout, self.running = rollout, running

    def describe_services(self, **_: Any) -> dict[str, Any]:
        deployment = {
            "status": "PRIMARY",
            "rolloutState": self.rollout,
            "rolloutStateReason": "tasks failed to start",
            "runningCount": self.running,
            "desiredCount": 1,
            "pendingCount": 1 - self.running,
        }
        return {"services": [{"deployments": [deployment], "events": []}]}


def _config(wait_timeout_s: int) -> DeployConfig:
    return DeployConfig(
        name="tritonserve",
        region=REGION,
        cluster="gpu",
        subnets=("subnet-1",),
        security_groups=("sg-1",),
        listener_arn="arn",
        bucket=BUCKET,
        triton_image=EcrImage.parse(TRITON_IMAGE),
        gateway_image=EcrImage.parse(GATEWAY_IMAGE),
        wait_timeout_s=wait_timeout_s,
    )


def test_waiting_is_bounded_by_the_timeout() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(DeployError, match="not stable after 100 s"):
        wait_until_stable(
            ScriptedEcs("IN_PROGRESS", 0), _config(100), lambda _: None, clock=lambda: now[0], sleep=sleep
        )
    assert sum(sleeps) == 100 and max(sleeps) == 15


def test_waiting_stops_at_a_failed_rollout() -> None:
    def must_not_sleep(seconds: float) -> None:
        pytest.fail(f"slept {seconds} s after the rollout failed")

    with pytest.raises(DeployError, match="tasks failed to start.*rolls the service back"):
        wait_until_stable(ScriptedEcs("FAILED", 0), _config(100), lambda _: None, sleep=must_not_sleep)


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
