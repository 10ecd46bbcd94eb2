"""boto3 clients for one deployment: one session, one region, and an optional endpoint (an emulator's)."""

from __future__ import annotations

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from deploy.ecs.errors import DeployError

# Adaptive retries ride out the API throttling a burst of describe calls can hit.
_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 8})


class Aws:
    """Creates clients on first use, so a dry run that never asks for one never touches AWS."""

    def __init__(self, session: boto3.Session, region: str, endpoint_url: str | None = None) -> None:
        self._session = session
        self._region = region
        self._endpoint_url = endpoint_url
        self._clients: dict[str, BaseClient] = {}

    def client(self, service: str) -> BaseClient:
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service, region_name=self._region, endpoint_url=self._endpoint_url, config=_CONFIG
            )
        return self._clients[service]

    def account_id(self, expected: str | None) -> str:
        """The account the credentials belong to; refuses another than ``expected`` when one is given."""
        account = self.client("sts").get_caller_identity()["Account"]
        if expected is not None and account != expected:
            raise DeployError(f"the credentials are for account {account}, not {expected} (--account-id)")
        return account
