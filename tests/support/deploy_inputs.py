"""What the deploy tests give ``python -m deploy.ecs``: a model repository shaped like the real one, the command
line, and an environment in which no AWS call can reach a real account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy.ecs.config import DeployConfig, EcrImage

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
TRITON_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tritonserve-triton:24.10-1"
GATEWAY_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tritonserve-gateway:0.1.0"
BUCKET = "tritonserve-models-test"
# What a user has before deploying, for commands that must not call AWS (dry runs, refusals).
OFFLINE_INFRASTRUCTURE = {
    "cluster": "gpu",
    "subnets": "subnet-1,subnet-2",
    "security_groups": "sg-1",
    "listener_arn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/public/1/2",
}

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


def offline_aws_env(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Dummy credentials and no shared config: nothing here can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-aws-credentials"))
    # moto reports a new service's tasks as running (and its rollout completed) when told so.
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")


def deploy_config(**changes: Any) -> DeployConfig:
    """The configuration the command line above parses into (``changes`` replace fields)."""
    infrastructure = OFFLINE_INFRASTRUCTURE
    fields: dict[str, Any] = {
        "name": "tritonserve",
        "region": REGION,
        "cluster": infrastructure["cluster"],
        "subnets": tuple(infrastructure["subnets"].split(",")),
        "security_groups": tuple(infrastructure["security_groups"].split(",")),
        "listener_arn": infrastructure["listener_arn"],
        "bucket": BUCKET,
        "triton_image": EcrImage.parse(TRITON_IMAGE),
        "gateway_image": EcrImage.parse(GATEWAY_IMAGE),
    }
    return DeployConfig(**(fields | changes))
