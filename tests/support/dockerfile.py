"""The Dockerfile reader (deploy/dockerfile.py) and what the static checks compare the ECS images against."""

from __future__ import annotations

from pathlib import Path

from deploy.dockerfile import Instruction, base_images, exec_form, global_args, parse, stages

__all__ = ["ECS", "LOOPBACK_ONLY", "Instruction", "base_images", "exec_form", "global_args", "parse", "stages"]

ECS = Path(__file__).resolve().parents[2] / "deploy" / "ecs"
# What the ECS task adds to the Triton image's command: its ports bypass the gateway's keys and limits, so in the
# task they listen on loopback, where the gateway, the health check and a scraper sidecar (same task) reach them.
LOOPBACK_ONLY = ("--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1")
