"""What one deployment is made of: the checked arguments and every AWS name derived from them."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import botocore.session

from deploy.ecs.errors import DeployError
from deploy.ecs.grpc_endpoint import GrpcEndpoint

# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag][@sha256:digest]
_ECR_URI = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
_NAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?")  # a target group name is the tightest
_TABLE = re.compile(r"[a-zA-Z0-9_.-]{3,255}")


@dataclass(frozen=True)
class EcrImage:
    """An image URI in Amazon ECR: the execution role is granted pull on exactly its repository."""

    uri: str
    account_id: str
    region: str
    repository: str

    @classmethod
    def parse(cls, uri: str) -> EcrImage:
        match = _ECR_URI.fullmatch(uri)
        if match is None:
            raise DeployError(
                f"{uri!r} is not an Amazon ECR image URI "
                "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>): push the images to ECR first"
            )
        return cls(uri, match["account"], match["region"], match["repository"])

    def repository_arn(self, partition: str) -> str:
        return f"arn:{partition}:ecr:{self.region}:{self.account_id}:repository/{self.repository}"


@dataclass(frozen=True)
class DeployConfig:
    """Everything the deploy is told; the defaults fit one g5.xlarge or g6.xlarge per task."""

    name: str
    region: str
    cluster: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    listener_arn: str
    bucket: str
    triton_image: EcrImage
    gateway_image: EcrImage
    model_repository: Path = Path("model_repository")
    model_prefix: str = "models"
    table: str = ""
    account_id: str | None = None
    capacity_provider: str | None = None
    api_keys_secret_arn: str | None = None
    task_cpu: int = 4096
    task_memory_mib: int = 14336
    shm_size_mib: int = 2048
    gateway_workers: int = 4
    desired_count: int = 1
    min_count: int = 1
    max_count: int = 4
    requests_per_target: int = 1000
    grace_period_s: int = 300
    rule_priority: int = 100
    path_pattern: str = "/*"
    log_retention_days: int = 30
    wait: bool = True
    wait_timeout_s: int = 1800
    grpc: GrpcEndpoint | None = None  # the opt-in address for direct gRPC clients (deploy/ecs/grpc_endpoint.py)

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.fullmatch(self.name):
            problems.append(f"--name {self.name!r}: 1 to 32 letters, digits or inner hyphens")
        if not _TABLE.fullmatch(self.table_name):
            problems.append(f"--table {self.table_name!r}: 3 to 255 letters, digits, '_', '-' or '.'")
        if not self.model_prefix.strip("/"):
            problems.append("--model-prefix must not be empty: the deploy owns everything under it")
        if not self.subnets or not self.security_groups:
            problems.append("--subnets and --security-groups need at least one id each")
        if not self.min_count <= self.desired_count <= self.max_count:
            problems.append("need --min-count <= --desired-count <= --max-count")
        if self.grpc is not None and len(self.name) > 27:
            problems.append(f"--name {self.name!r}: at most 27 characters with the gRPC endpoint (<name>-grpc)")
        if self.grpc is not None and not self.grpc.client_cidrs:
            problems.append("--grpc-client-cidrs: name who may reach the gRPC endpoint (e.g. 10.0.0.0/16)")
        if self.account_id is not None and not re.fullmatch(r"\d{12}", self.account_id):
            problems.append(f"--account-id {self.account_id!r} is not a 12-digit account id")
        if problems:
            raise DeployError("; ".join(problems))

    @property
    def partition(self) -> str:
        """``aws``, ``aws-cn`` or ``aws-us-gov``: every ARN the deploy writes starts with it."""
        return _partition(self.region)

    @property
    def table_name(self) -> str:
        return self.table or f"{self.name}-items"

    @property
    def prefix(self) -> str:
        return self.model_prefix.strip("/")

    @property
    def cluster_name(self) -> str:
        return self.cluster.rsplit("/", 1)[-1]

    @property
    def task_role_name(self) -> str:
        return f"{self.name}-task"

    @property
    def execution_role_name(self) -> str:
        return f"{self.name}-execution"

    @property
    def log_group(self) -> str:
        return f"/ecs/{self.name}"

    @property
    def scaling_policy_name(self) -> str:
        return f"{self.name}-requests-per-target"

    def role_arn(self, account_id: str, role_name: str) -> str:
        return f"arn:{self.partition}:iam::{account_id}:role/{role_name}"

    def table_arn(self, account_id: str) -> str:
        return f"arn:{self.partition}:dynamodb:{self.region}:{account_id}:table/{self.table_name}"


@functools.cache
def _partition(region: str) -> str:
    # Loading botocore's endpoint data takes a while; every ARN needs the answer.
    return botocore.session.get_session().get_partition_for_region(region)
