"""The ECS task role allows every DynamoDB call the gateway's item store makes: the calls are recorded while the store
does everything it does against moto's DynamoDB, not read from its source. A call missing from the policy would
answer 503 on AWS only, never in local tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from deploy.ecs import policies
from deploy.ecs.dynamodb import create_table_if_missing
from gateway.items.dynamodb import DynamoDBItemStore, make_client
from gateway.items.store import ItemNotFound, PreconditionFailed
from tests.support.deploy_inputs import ACCOUNT, REGION, deploy_config
from tests.support.stack import running_moto


@pytest.fixture
def moto_url() -> Iterator[str]:
    with running_moto() as url:
        yield url


class Calls:
    """The IAM actions a boto3 client's calls need: ``dynamodb:<Operation>``, and for a transaction (which has no
    action of its own) the item action of each write in it."""

    def __init__(self) -> None:
        self.actions: set[str] = set()

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if model.name == "TransactWriteItems":
            for write in params["TransactItems"]:
                self.actions |= {f"dynamodb:{kind}Item" for kind in write}
        else:
            self.actions.add(f"dynamodb:{model.name}")


def test_task_role_allows_every_call_the_item_store_makes(moto_url: str) -> None:
    config = deploy_config()
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    create_table_if_missing(make_client(REGION, moto_url, **credentials), config.table_name)
    client = make_client(REGION, moto_url, **credentials)
    calls = Calls()
    client.meta.events.register("provide-client-params.dynamodb", calls)
    store = DynamoDBItemStore(client, config.table_name, max_data_bytes=4096)

    async def everything() -> None:
        item, _ = await store.create({"n": 1})
        await store.create({"n": 2}, idempotency_key="k-1")
        await store.create({"n": 2}, idempotency_key="k-1")  # replayed
        await store.get(item.id)
        await store.put(item.id, {"n": 3}, if_match=item.version)
        await store.put("by-id", {"n": 4})
        await store.patch(item.id, {"m": 1})
        with pytest.raises(PreconditionFailed):
            await store.patch(item.id, {"m": 2}, if_match=99)
        await store.list(10)
        await store.ping()
        await store.delete("by-id")
        with pytest.raises(ItemNotFound):
            await store.delete("by-id")
        await store.close()

    asyncio.run(everything())
    statements = {s["Sid"]: s for s in policies.task_role_policy(config, ACCOUNT)["Statement"]}
    allowed = statements["ItemsCrud"]["Action"]
    assert {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Scan"} <= calls.actions  # it did record the calls
    assert calls.actions <= set([allowed] if isinstance(allowed, str) else allowed), calls.actions
