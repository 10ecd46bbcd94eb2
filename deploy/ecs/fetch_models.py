"""Entrypoint of the Triton container: copy the model repository from S3 to local disk, then exec the server.

Triton can read ``s3://`` itself; deploy/ecs/README.md ("Models from S3") says why this copies first.
It runs inside the NGC image with only boto3 added, so it imports nothing else from this project, and on
that image's Python (3.10 in 24.10), so it uses nothing newer.
Environment: ``MODEL_REPOSITORY_URI`` (``s3://bucket/prefix``), ``MODEL_REPOSITORY_DIR`` (default /models).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath

import boto3
from botocore.client import BaseClient


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


def fetch(s3: BaseClient, uri: str, dest: Path) -> int:
    """Download every object under ``uri`` into ``dest``, keeping the relative paths; returns the count."""
    bucket, prefix = split_s3_uri(uri)
    base = f"{prefix}/" if prefix else ""
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            relative = PurePosixPath(obj["Key"][len(base) :])
            if not relative.parts:  # the prefix's own folder marker
                continue
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"refusing to write S3 key {obj['Key']!r} outside {dest}")
            target = dest.joinpath(*relative.parts)
            if obj["Key"].endswith("/"):  # a folder marker: Triton needs e.g. an ensemble's empty "1/"
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            count += 1
    if count == 0:
        raise ValueError(f"no model files under {uri}")
    return count


def main(command: list[str]) -> None:
    uri = os.environ.get("MODEL_REPOSITORY_URI")
    if not uri:
        sys.exit("fetch_models: MODEL_REPOSITORY_URI is not set (s3://bucket/prefix of the model repository)")
    dest = Path(os.environ.get("MODEL_REPOSITORY_DIR", "/models"))
    try:
        count = fetch(boto3.client("s3"), uri, dest)
    except Exception as exc:  # one line in the container log says why Triton never started
        sys.exit(f"fetch_models: cannot copy {uri} to {dest}: {exc}")
    print(f"fetch_models: copied {count} files from {uri} to {dest}", flush=True)
    if command:
        os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
