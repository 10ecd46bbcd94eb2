"""``python -m deploy.ecs``: arguments in, progress out; ``--dry-run`` prints the plan and sends nothing."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from deploy.ecs.aws import Aws
from deploy.ecs.config import DeployConfig, EcrImage
from deploy.ecs.deploy import Deployment
from deploy.ecs.errors import DeployError
from deploy.ecs.grpc_endpoint import CLIENT_HEADER, GrpcEndpoint
from deploy.ecs.model_repository import scan_repository
from deploy.ecs.tensorrt import with_tensorrt
from servables import names

ACCOUNT_PLACEHOLDER = "<account-id>"  # a dry run without --account-id does not ask STS
# What a dry run shows for the existing resources it was not given (the images must parse as ECR URIs).
REGION_PLACEHOLDER = "us-east-1"
EXISTING = ("cluster", "subnets", "security_groups", "listener_arn", "triton_image", "gateway_image", "bucket")


def _placeholders(region: str) -> dict[str, object]:
    image = f"123456789012.dkr.ecr.{region}.amazonaws.com/tritonserve-{{}}:latest"
    return {
        "cluster": "<cluster>",
        "subnets": ("<subnet-id>",),
        "security_groups": ("<security-group-id>",),
        "listener_arn": "<listener-arn>",
        "triton_image": image.format("triton"),
        "gateway_image": image.format("gateway"),
        "bucket": "<bucket>",
    }


# The values CloudWatch Logs accepts for a retention period.
RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip


def _ids(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class _DefaultsFormatter(argparse.HelpFormatter):
    """Shows a default where it says something: not for flags or unset options, not twice where help has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or isinstance(default, bool) or default in (None, "", argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.ecs",
        description="Deploy Triton + the gateway as one ECS service on GPU instances, behind an ALB.",
        formatter_class=_DefaultsFormatter,
    )
    existing = parser.add_argument_group(
        "existing resources, required (see deploy/ecs/README.md, prerequisites; a --dry-run shows placeholders)"
    )
    existing.add_argument("--cluster", help="ECS cluster name or ARN with GPU container instances")
    existing.add_argument("--subnets", type=_ids, help="comma-separated subnet ids for the tasks")
    existing.add_argument("--security-groups", type=_ids, help="comma-separated security group ids")
    existing.add_argument("--listener-arn", help="ARN of the ALB listener to add a rule to")
    existing.add_argument("--triton-image", help="ECR URI of the image from Dockerfile.triton")
    existing.add_argument("--gateway-image", help="ECR URI of the image from Dockerfile.gateway")
    existing.add_argument("--bucket", help="S3 bucket for the model repository (created if missing)")

    what = parser.add_argument_group("what to deploy")
    what.add_argument("--name", default="tritonserve", help="service name; also names the family, roles, logs")
    what.add_argument("--model-repository", type=Path, default=Path("model_repository"), help="local repository")
    what.add_argument("--model-prefix", default="models", help="S3 prefix the deploy owns in the bucket")
    what.add_argument("--table", default="", help="DynamoDB table (default: <name>-items)")
    what.add_argument("--api-keys-secret-arn", help="Secrets Manager secret holding GATEWAY_API_KEYS")
    what.add_argument(
        "--tensorrt",
        action="store_true",
        help="run the ResNet with ONNX Runtime's TensorRT accelerator in FP16 on the GPU (deploy/ecs/tensorrt.py)",
    )
    what.add_argument("--capacity-provider", help="capacity provider (ASG of GPU instances); default: EC2 launch type")

    grpc = parser.add_argument_group(
        "direct gRPC clients (opt-in; deploy/ecs/README.md, 'Direct gRPC clients')",
        f"a TLS network load balancer in front of Triton's gRPC port; every call but health and metadata needs the "
        f"header {CLIENT_HEADER} with the secret's value",
    )
    grpc.add_argument("--grpc-certificate-arn", help="ACM certificate for the TLS listener: turns the endpoint on")
    grpc.add_argument("--grpc-key-secret-arn", help="Secrets Manager secret holding the key clients send")
    grpc.add_argument("--grpc-client-cidrs", type=_ids, default=(), help="comma-separated CIDRs that may connect")
    grpc.add_argument("--grpc-scheme", choices=("internal", "internet-facing"), default="internal",
                      help="the load balancer's scheme")  # fmt: skip
    grpc.add_argument("--grpc-subnets", type=_ids, default=(), help="the load balancer's subnets (default: --subnets)")

    sizes = parser.add_argument_group("sizes")
    sizes.add_argument("--task-cpu", type=int, default=4096, help="task CPU units (1024 per vCPU)")
    sizes.add_argument("--task-memory", type=int, default=14336, dest="task_memory_mib", help="task memory, MiB")
    sizes.add_argument("--shm-size", type=int, default=2048, dest="shm_size_mib", help="Triton /dev/shm, MiB")
    sizes.add_argument("--gateway-workers", type=int, default=4, help="uvicorn worker processes")
    sizes.add_argument("--desired-count", type=int, default=1, help="tasks when the service is created")
    sizes.add_argument("--min-count", type=int, default=1, help="autoscaling minimum")
    sizes.add_argument("--max-count", type=int, default=4, help="autoscaling maximum")
    sizes.add_argument("--requests-per-target", type=int, default=1000, help="scaling target, requests/min/task")
    sizes.add_argument(
        "--grace-period",
        type=int,
        default=300,
        dest="grace_period_s",
        help="seconds ALB checks are ignored while a new task loads its models",
    )
    sizes.add_argument("--rule-priority", type=int, default=100, help="priority of the listener rule")
    sizes.add_argument("--path-pattern", default="/*", help="path pattern the listener rule forwards")
    sizes.add_argument(
        "--log-retention-days",
        type=int,
        default=30,
        choices=RETENTION_DAYS,
        metavar="DAYS",
        help="CloudWatch log retention",
    )

    run = parser.add_argument_group("how to run")
    run.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")
    run.add_argument("--profile", help="AWS profile")
    run.add_argument("--account-id", help="refuse to deploy into any other account")
    run.add_argument("--endpoint-url", help="AWS API endpoint of an emulator (moto, LocalStack)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and documents; call no AWS API")
    run.add_argument("--no-wait", dest="wait", action="store_false", help="do not wait for the service")
    run.add_argument("--wait-timeout", type=int, default=1800, dest="wait_timeout_s", help="seconds")
    return parser


def grpc_from_args(args: argparse.Namespace) -> GrpcEndpoint | None:
    if not args.grpc_certificate_arn and not args.grpc_key_secret_arn:
        return None
    if not (args.grpc_certificate_arn and args.grpc_key_secret_arn):
        raise DeployError("the gRPC endpoint needs both --grpc-certificate-arn and --grpc-key-secret-arn")
    return GrpcEndpoint(
        args.grpc_certificate_arn, args.grpc_key_secret_arn, args.grpc_client_cidrs, args.grpc_scheme, args.grpc_subnets
    )


def config_from_args(args: argparse.Namespace, region: str) -> DeployConfig:
    return DeployConfig(
        name=args.name,
        region=region,
        cluster=args.cluster,
        subnets=args.subnets,
        security_groups=args.security_groups,
        listener_arn=args.listener_arn,
        bucket=args.bucket,
        triton_image=EcrImage.parse(args.triton_image),
        gateway_image=EcrImage.parse(args.gateway_image),
        model_repository=args.model_repository,
        model_prefix=args.model_prefix,
        table=args.table,
        account_id=args.account_id,
        capacity_provider=args.capacity_provider,
        api_keys_secret_arn=args.api_keys_secret_arn,
        task_cpu=args.task_cpu,
        task_memory_mib=args.task_memory_mib,
        shm_size_mib=args.shm_size_mib,
        gateway_workers=args.gateway_workers,
        desired_count=args.desired_count,
        min_count=args.min_count,
        max_count=args.max_count,
        requests_per_target=args.requests_per_target,
        grace_period_s=args.grace_period_s,
        rule_priority=args.rule_priority,
        path_pattern=args.path_pattern,
        log_retention_days=args.log_retention_days,
        wait=args.wait,
        wait_timeout_s=args.wait_timeout_s,
        grpc=grpc_from_args(args),
    )


def _fill_in(args: argparse.Namespace, region: str | None) -> str | None:
    """A dry run's placeholders for the existing resources (and region) it was not given; the line that says so."""
    missing = [name for name in EXISTING if getattr(args, name) is None]
    for name, value in _placeholders(region or REGION_PLACEHOLDER).items():
        if name in missing:
            setattr(args, name, value)
    shown = [f"--{name.replace('_', '-')}" for name in missing] + ([] if region else ["--region"])
    return f"dry run with placeholders for {', '.join(shown)}: pass them to see your own" if shown else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = [f"--{name.replace('_', '-')}" for name in EXISTING if getattr(args, name) is None]
    if missing and not args.dry_run:
        parser.error(f"{', '.join(missing)} required (or --dry-run to see the plan with placeholders)")
    say = functools.partial(print, flush=True)
    with contextlib.ExitStack() as stack:
        return _run(args, say, stack)


def _run(args: argparse.Namespace, say: Callable[[str], None], stack: contextlib.ExitStack) -> int:
    try:
        session = boto3.Session(profile_name=args.profile)
        region = args.region or session.region_name
        if args.dry_run and (note := _fill_in(args, region)):
            print(note, file=sys.stderr, flush=True)
            region = region or REGION_PLACEHOLDER
        if not region:
            raise DeployError("no region: pass --region or set AWS_REGION")
        config = config_from_args(args, region)
        root = config.model_repository
        if args.tensorrt:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tritonserve-tensorrt-")))
            changed = with_tensorrt(config.model_repository, root)
            if not changed:
                raise DeployError(f"--tensorrt: no ONNX classifier (input {names.INPUT}) in {config.model_repository}")
            say(f"--tensorrt: {', '.join(changed)} on TensorRT (FP16, engine built at warm-up) in the uploaded copy")
        repository = scan_repository(root)
        aws = Aws(session, region, args.endpoint_url)
        if args.dry_run:
            say(Deployment(config, repository, config.account_id or ACCOUNT_PLACEHOLDER, aws, say).plan())
            return 0
        Deployment(config, repository, aws.account_id(config.account_id), aws, say).run()
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(f"error from AWS: {exc}", file=sys.stderr)
        return 1
    return 0
