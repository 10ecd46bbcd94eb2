"""The model repository in S3: one prefix per repository digest, sending only bytes S3 does not have yet.

Each distinct repository lands under ``<prefix>/<digest>/`` and the task definition points at that exact
prefix, so an older revision (a rollback, the circuit breaker's included) still finds the models it was
deployed with. Old prefixes are left in place (README.md: why not to expire them by age).
"""

from __future__ import annotations

from collections.abc import Callable

from botocore.client import BaseClient
from botocore.exceptions import ClientError

from deploy.ecs.errors import DeployError
from deploy.ecs.model_repository import Repository
from deploy.ecs.outcome import Change, Outcome

CHECKSUM_METADATA = "sha256"  # x-amz-meta-sha256: what "unchanged" is decided on, besides the size


def repository_uri(bucket: str, prefix: str, repository: Repository) -> str:
    """Where this repository lives in S3 (what the Triton container copies at start)."""
    return f"s3://{bucket}/{prefix}/{repository.digest}"


def ensure_bucket(s3: BaseClient, bucket: str, region: str) -> Outcome:
    """Create the bucket, private, if it does not exist."""
    try:
        s3.head_bucket(Bucket=bucket)
        return Outcome(Change.UNCHANGED, bucket)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("403", "AccessDenied"):
            raise DeployError(f"bucket {bucket} exists but these credentials cannot use it") from None
        if code not in ("404", "NoSuchBucket"):
            raise
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    return Outcome(Change.CREATED, bucket)


def upload_repository(
    s3: BaseClient, repository: Repository, bucket: str, prefix: str, say: Callable[[str], None]
) -> Outcome:
    """Put every file under the digest's prefix unless it is there already (same size and checksum).

    A file that an earlier repository already had (same path, size and checksum under another digest) is
    copied inside S3 instead of uploaded again: a new label file does not re-send a 100 MB ResNet.
    """
    base = f"{prefix}/{repository.digest}/"
    sizes = {
        obj["Key"]: obj["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        for obj in page.get("Contents", [])
    }
    counts = {"uploaded": 0, "copied within S3": 0, "already there": 0}
    for file in repository.files:
        key = base + file.relative
        same = [k for k, size in sizes.items() if size == file.size and k.endswith(f"/{file.relative}")]
        # The digest's own key first: when it matches, nothing needs doing at all.
        same.sort(key=lambda k: k != key)
        source = next((k for k in same if _stored_checksum(s3, bucket, k) == file.sha256), None)
        if source == key:
            counts["already there"] += 1
        elif source is not None:
            s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": source})
            counts["copied within S3"] += 1
        else:
            say(f"      uploading {file.relative} ({file.size / 1e6:.1f} MB)")
            s3.upload_file(str(file.path), bucket, key, ExtraArgs={"Metadata": {CHECKSUM_METADATA: file.sha256}})
            counts["uploaded"] += 1
    for folder in repository.empty_dirs:  # S3 has no folders: a zero-byte "name/" key stands for one
        if base + folder + "/" in sizes:
            counts["already there"] += 1
        else:
            s3.put_object(Bucket=bucket, Key=base + folder + "/", Body=b"")
            counts["uploaded"] += 1
    detail = ", ".join(f"{count} {what}" for what, count in counts.items())
    changed = counts["already there"] < len(repository.files) + len(repository.empty_dirs)
    return Outcome(Change.CREATED if changed else Change.UNCHANGED, detail)


def _stored_checksum(s3: BaseClient, bucket: str, key: str) -> str | None:
    return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(CHECKSUM_METADATA)
