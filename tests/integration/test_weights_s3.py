"""``--weights s3://bucket/key``: the state dict a seed makes, uploaded to S3 (moto's server), loads as the same
network."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import torch

from export.network import load_backbone
from tests.support.stack import running_moto


def test_weights_from_s3_are_the_uploaded_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    network = load_backbone("resnet18", "seed:7")
    path = tmp_path / "weights.pth"
    torch.save(network.state_dict(), path)
    with running_moto() as url:
        for key, value in {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket="models")
        boto3.client("s3").upload_file(str(path), "models", "resnet18/weights.pth")
        from_s3 = load_backbone("resnet18", "s3://models/resnet18/weights.pth")
    assert torch.equal(from_s3.fc.weight, network.fc.weight)
