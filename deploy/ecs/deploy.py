"""The deploy, step by step: each step is idempotent and reports what it changed; a dry run lists them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from deploy.ecs import grpc_endpoint, policies
from deploy.ecs.autoscaling import ensure_scaling
from deploy.ecs.aws import Aws
from deploy.ecs.config import DeployConfig
from deploy.ecs.dynamodb import create_table_if_missing
from deploy.ecs.iam import ensure_role
from deploy.ecs.load_balancer import (
    ensure_listener_rule,
    ensure_target_group,
    listener_load_balancer,
    resource_label,
)
from deploy.ecs.log_group import ensure_log_group
from deploy.ecs.model_repository import Repository
from deploy.ecs.outcome import Change, Outcome
from deploy.ecs.s3_upload import ensure_bucket, repository_uri, upload_repository
from deploy.ecs.service import ensure_service, service_spec, wait_until_stable
from deploy.ecs.task_definition import gateway_port, register_if_changed, render_task_definition

Say = Callable[[str], None]


class Deployment:
    """One deployment of ``repository`` with ``config`` into ``account_id``.

    Everything that can be computed without AWS (the task definition, the policies, the S3 location) is
    computed up front, so the dry run shows exactly what a real run would send.
    """

    def __init__(self, config: DeployConfig, repository: Repository, account_id: str, aws: Aws, say: Say) -> None:
        self.config = config
        self.repository = repository
        self.model_uri = repository_uri(config.bucket, config.prefix, repository)
        self.task_definition = render_task_definition(config, account_id, self.model_uri)
        self.trust_policy = policies.trust_policy(config, account_id)
        self.task_role_policy = policies.task_role_policy(config, account_id)
        self.execution_role_policy = policies.execution_role_policy(config, account_id)
        self._aws = aws
        self._say = say
        self._task_definition_arn = ""
        self._load_balancer_arn = ""
        self._target_group_arn = ""
        self._vpc_id = ""
        # The gRPC endpoint's, when it is on: the load balancer's and the tasks' security groups, the target group.
        self._grpc_balancer_group = self._grpc_task_group = self._grpc_target_group = ""

    def steps(self) -> list[tuple[str, Callable[[], Outcome]]]:
        c, files = self.config, self.repository.files
        return [
            (f"S3 bucket {c.bucket}", self._bucket),
            (
                f"model repository {c.model_repository} ({len(files)} files, "
                f"{self.repository.total_bytes / 1e6:.1f} MB) -> {self.model_uri}/",
                self._models,
            ),
            (f"DynamoDB table {c.table_name} (hash key id, on-demand)", self._table),
            (f"log group {c.log_group} ({c.log_retention_days}-day retention)", self._log_group),
            (
                f"IAM role {c.task_role_name}: read s3://{c.bucket}/{c.prefix}/*, CRUD on the table",
                self._task_role,
            ),
            (f"IAM role {c.execution_role_name}: pull the two images, write logs", self._execution_role),
            (
                f"task definition {c.name}: Triton (1 GPU) + gateway, {c.task_cpu} CPU units, {c.task_memory_mib} MiB",
                self._register_task_definition,
            ),
            (f"target group {c.name}: ip targets, health check /readyz", self._target_group),
            (f"listener rule {c.path_pattern} -> {c.name}, priority {c.rule_priority}", self._listener_rule),
            *self._grpc_steps(),
            (
                f"ECS service {c.name} on {c.cluster_name}: circuit breaker with rollback, "
                f"minimum healthy 100%, grace period {c.grace_period_s} s",
                self._service,
            ),
            (
                f"autoscaling {c.min_count}..{c.max_count} tasks at {c.requests_per_target} requests "
                "per task per minute",
                self._scaling,
            ),
        ]

    def _grpc_steps(self) -> list[tuple[str, Callable[[], Outcome]]]:
        endpoint = self.config.grpc
        if endpoint is None:
            return []
        names = grpc_endpoint.Names.of(self.config.name)
        return [
            (
                f"security groups {names.balancer_group} (:{grpc_endpoint.LISTENER_PORT} from "
                f"{', '.join(endpoint.client_cidrs)}) and {names.task_group} (:{grpc_endpoint.GRPC_PORT} from it)",
                self._grpc_security_groups,
            ),
            (
                f"gRPC endpoint {names.load_balancer}: {endpoint.scheme} network load balancer, TLS listener "
                f":{grpc_endpoint.LISTENER_PORT} (ALPN HTTP2Only) -> Triton :{grpc_endpoint.GRPC_PORT}, "
                f"calls keyed by {grpc_endpoint.CLIENT_HEADER}",
                self._grpc_load_balancer,
            ),
        ]

    def run(self) -> list[Outcome]:
        """Apply every step, then wait for the service unless told not to."""
        steps = self.steps()
        outcomes = []
        for number, (title, step) in enumerate(steps, 1):
            self._say(f"[{number}/{len(steps)}] {title}")
            outcome = step()
            self._say(f"      {outcome}")
            outcomes.append(outcome)
        if self.config.wait:
            self._say(f"waiting up to {self.config.wait_timeout_s} s for the service to be stable")
            wait_until_stable(self._aws.client("ecs"), self.config, self._say)
        counts = Counter(outcome.change for outcome in outcomes)
        self._say(", ".join(f"{counts[change]} {change.value}" for change in Change))
        return outcomes

    def plan(self) -> str:
        """What :meth:`run` would do, and the documents it would send."""
        steps = self.steps()
        lines = ["Plan (dry run: nothing is sent to AWS)"]
        lines += [f"[{number}/{len(steps)}] {title}" for number, (title, _) in enumerate(steps, 1)]
        if self.config.wait:
            lines.append(f"then wait up to {self.config.wait_timeout_s} s for the service to be stable")
        documents = {
            "task definition": self.task_definition,
            f"IAM trust policy of {self.config.task_role_name} and {self.config.execution_role_name}": (
                self.trust_policy
            ),
            f"IAM policy of {self.config.task_role_name}": self.task_role_policy,
            f"IAM policy of {self.config.execution_role_name}": self.execution_role_policy,
        }
        if self.config.grpc:
            documents["gRPC endpoint"] = grpc_endpoint.plan(self.config.grpc, self.config.name)
        for heading, document in documents.items():
            lines += ["", f"{heading}:", json.dumps(document, indent=2)]
        return "\n".join(lines)

    def _bucket(self) -> Outcome:
        return ensure_bucket(self._aws.client("s3"), self.config.bucket, self.config.region)

    def _models(self) -> Outcome:
        return upload_repository(
            self._aws.client("s3"), self.repository, self.config.bucket, self.config.prefix, self._say
        )

    def _table(self) -> Outcome:
        created = create_table_if_missing(self._aws.client("dynamodb"), self.config.table_name)
        return Outcome(Change.CREATED if created else Change.UNCHANGED, self.config.table_name)

    def _log_group(self) -> Outcome:
        return ensure_log_group(self._aws.client("logs"), self.config.log_group, self.config.log_retention_days)

    def _task_role(self) -> Outcome:
        name = self.config.task_role_name
        return ensure_role(self._aws.client("iam"), name, self.trust_policy, name, self.task_role_policy)

    def _execution_role(self) -> Outcome:
        name = self.config.execution_role_name
        return ensure_role(self._aws.client("iam"), name, self.trust_policy, name, self.execution_role_policy)

    def _register_task_definition(self) -> Outcome:
        self._task_definition_arn, outcome = register_if_changed(self._aws.client("ecs"), self.task_definition)
        return outcome

    def _target_group(self) -> Outcome:
        elbv2 = self._aws.client("elbv2")
        self._load_balancer_arn, self._vpc_id = listener_load_balancer(elbv2, self.config.listener_arn)
        port = gateway_port(self.task_definition)
        self._target_group_arn, outcome = ensure_target_group(elbv2, self.config.name, self._vpc_id, port)
        return outcome

    def _listener_rule(self) -> Outcome:
        return ensure_listener_rule(
            self._aws.client("elbv2"),
            self.config.listener_arn,
            self._target_group_arn,
            self.config.rule_priority,
            self.config.path_pattern,
        )

    def _grpc_security_groups(self) -> Outcome:
        ec2, endpoint = self._aws.client("ec2"), self.config.grpc
        assert endpoint is not None
        names = grpc_endpoint.Names.of(self.config.name)
        balancer_rules = grpc_endpoint.ingress(grpc_endpoint.LISTENER_PORT, endpoint.client_cidrs)
        self._grpc_balancer_group, first = grpc_endpoint.ensure_security_group(
            ec2, names.balancer_group, self._vpc_id, balancer_rules
        )
        task_rules = grpc_endpoint.ingress(grpc_endpoint.GRPC_PORT, from_group=self._grpc_balancer_group)
        self._grpc_task_group, second = grpc_endpoint.ensure_security_group(
            ec2, names.task_group, self._vpc_id, task_rules
        )
        changed = [outcome for outcome in (first, second) if outcome.change != Change.UNCHANGED]
        return changed[0] if changed else Outcome(Change.UNCHANGED, f"{names.balancer_group}, {names.task_group}")

    def _grpc_load_balancer(self) -> Outcome:
        elbv2, endpoint = self._aws.client("elbv2"), self.config.grpc
        assert endpoint is not None
        names = grpc_endpoint.Names.of(self.config.name)
        self._grpc_target_group, made_group = grpc_endpoint.ensure_target_group(elbv2, names.target_group, self._vpc_id)
        subnets = endpoint.subnets or self.config.subnets
        arn, dns, made_balancer = grpc_endpoint.ensure_load_balancer(
            elbv2, names.load_balancer, endpoint, subnets, self._grpc_balancer_group
        )
        request = grpc_endpoint.listener_request(endpoint, arn, self._grpc_target_group)
        listener = grpc_endpoint.ensure_listener(elbv2, request)
        changes = [o.change for o in (made_group, made_balancer, listener) if o.change != Change.UNCHANGED]
        return Outcome(changes[0] if changes else Change.UNCHANGED, f"{dns}:{grpc_endpoint.LISTENER_PORT}")

    def _service(self) -> Outcome:
        spec = service_spec(
            self.config,
            self._task_definition_arn,
            self._target_group_arn,
            gateway_port(self.task_definition),
            (self._grpc_target_group, self._grpc_task_group) if self.config.grpc else None,
        )
        return ensure_service(self._aws.client("ecs"), self.config, spec)

    def _scaling(self) -> Outcome:
        label = resource_label(self._load_balancer_arn, self._target_group_arn)
        return ensure_scaling(self._aws.client("application-autoscaling"), self.config, label)
