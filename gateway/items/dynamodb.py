"""DynamoDB item store: what the gateway uses on AWS.

One table, partition key ``id`` (S), on-demand billing. Writes carry a ``ConditionExpression`` on ``version``
(or on existence), reads are strongly consistent, so a read-merge-write sees the latest version and no update
is lost. ``data`` is kept as a JSON string: numbers stay exact (no Decimal round trip) and the document is
returned as written. Idempotency records share the table as ``idem#<key>``, an id no item can have (``#`` is
outside the item id charset), written in one transaction with the item; listing filters them out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from gateway.items.store import (
    Columns,
    IdempotencyClaim,
    IfMatch,
    Item,
    ItemNotFound,
    ItemStore,
    Page,
    WriteConflict,
    backoff_s,
    stored_item,
    take_page,
    unmet,
)

IDEMPOTENCY_PREFIX = "idem#"
POOL_SIZE = 16  # threads running boto3 calls = HTTP connections kept to DynamoDB
_CLAIM_ATTEMPTS = 4  # a transaction cancelled by a concurrent one (TransactionConflict) is tried again

# Error codes meaning "can't use the table now" (503), as opposed to a request this module got wrong (500).
_UNAVAILABLE = frozenset(
    {
        "ResourceNotFoundException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ExpiredTokenException",
    }
)


def make_client(region: str, endpoint_url: str | None = None, **credentials: str) -> BaseClient:
    """A DynamoDB client with short timeouts and few retries, so an outage answers 503 in seconds."""
    config = Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"max_attempts": 2, "mode": "standard"},
        max_pool_connections=POOL_SIZE,
    )
    session = boto3.session.Session()
    return session.client("dynamodb", region_name=region, endpoint_url=endpoint_url, config=config, **credentials)


def _key(item_id: str) -> dict[str, Any]:
    return {"id": {"S": item_id}}


def _record(item: Item, text: str) -> dict[str, Any]:
    return {
        "id": {"S": item.id},
        "version": {"N": str(item.version)},
        "created_at": {"S": item.created_at},
        "updated_at": {"S": item.updated_at},
        "data": {"S": text},
    }


def _columns(record: dict[str, Any]) -> Columns:
    return (
        record["id"]["S"],
        int(record["version"]["N"]),
        record["created_at"]["S"],
        record["updated_at"]["S"],
        record["data"]["S"],
    )


def _item(record: dict[str, Any]) -> Item:
    return stored_item(*_columns(record))


def _condition(if_match: IfMatch) -> dict[str, Any]:
    """Request arguments making a write conditional: on the exact version, or (None, "*") on existence."""
    if isinstance(if_match, int):
        return {
            "ConditionExpression": "#v = :expected",
            "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":expected": {"N": str(if_match)}},
        }
    return {"ConditionExpression": "attribute_exists(#id)", "ExpressionAttributeNames": {"#id": "id"}}


_ABSENT = {"ConditionExpression": "attribute_not_exists(#id)", "ExpressionAttributeNames": {"#id": "id"}}


class DynamoDBItemStore(ItemStore):
    """Items in one DynamoDB table through a (thread-safe) boto3 client; calls run on the store's pool."""

    def __init__(self, client: BaseClient, table: str, *, max_data_bytes: int, **options: Any) -> None:
        super().__init__(max_data_bytes=max_data_bytes, workers=POOL_SIZE, **options)
        self._client = client
        self._table = table

    def _fetch(self, item_id: str) -> Item:
        record = self._client.get_item(TableName=self._table, Key=_key(item_id), ConsistentRead=True)
        if "Item" not in record:
            raise ItemNotFound(f"no item {item_id}")
        return _item(record["Item"])

    def _insert(self, item: Item, text: str) -> None:
        self._client.put_item(TableName=self._table, Item=_record(item, text), **_ABSENT)

    def _insert_once(self, item: Item, text: str, claim: IdempotencyClaim) -> tuple[Item, bool]:
        key = _key(IDEMPOTENCY_PREFIX + claim.key)
        marker = {
            **key,
            "fingerprint": {"S": claim.fingerprint},
            "item": {"S": item.model_dump_json()},
            "created_at": {"S": item.created_at},
        }
        for attempt in range(_CLAIM_ATTEMPTS):
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {"Put": {"TableName": self._table, "Item": _record(item, text), **_ABSENT}},
                        {"Put": {"TableName": self._table, "Item": marker, **_ABSENT}},
                    ]
                )
                return item, False
            except self._client.exceptions.TransactionCanceledException:
                stored = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True)
                if "Item" in stored:
                    return claim.replay(stored["Item"]["fingerprint"]["S"], stored["Item"]["item"]["S"])
                time.sleep(backoff_s(attempt + 3))  # cancelled by a transaction still in flight: let it land
        raise WriteConflict(f"Idempotency-Key {claim.key!r} is contended; retry")

    def _write(self, item_id: str, text: str, now: str, if_match: IfMatch) -> Item:
        # One UpdateItem creates or replaces: version and created_at start when absent, so no read is needed.
        names = {"#d": "data", "#u": "updated_at", "#c": "created_at", "#v": "version"}
        values = {":d": {"S": text}, ":now": {"S": now}, ":zero": {"N": "0"}, ":one": {"N": "1"}}
        condition: dict[str, Any] = {}
        if if_match is not None:
            condition = _condition(if_match)
            names |= condition.pop("ExpressionAttributeNames")
            values |= condition.pop("ExpressionAttributeValues", {})
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=_key(item_id),
                UpdateExpression="SET #d = :d, #u = :now, #c = if_not_exists(#c, :now), "
                "#v = if_not_exists(#v, :zero) + :one",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                **condition,
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            raise unmet(item_id, if_match) from None
        return _item(answer["Attributes"])

    def _remove(self, item_id: str, if_match: IfMatch) -> None:
        try:
            self._client.delete_item(TableName=self._table, Key=_key(item_id), **_condition(if_match))
        except self._client.exceptions.ConditionalCheckFailedException:
            raise unmet(item_id, if_match) from None

    def _page(self, after: str | None, limit: int, max_bytes: int) -> Page:
        return take_page(self._records(after, limit + 1), limit, max_bytes)

    def _records(self, after: str | None, batch: int) -> Iterator[Columns]:
        """Every item after ``after``, scanned ``batch`` at a time only as far as the caller reads. Scan's Limit
        counts items read before the filter drops idempotency records, so a call may bring back fewer."""
        start = None if after is None else _key(after)
        while True:
            page = self._client.scan(
                TableName=self._table,
                Limit=batch,
                ConsistentRead=True,
                FilterExpression="NOT begins_with(#id, :reserved)",
                ExpressionAttributeNames={"#id": "id"},
                ExpressionAttributeValues={":reserved": {"S": IDEMPOTENCY_PREFIX}},
                **({} if start is None else {"ExclusiveStartKey": start}),
            )
            yield from (_columns(record) for record in page["Items"])
            start = page.get("LastEvaluatedKey")
            if start is None:
                return

    def _probe(self) -> None:
        # GetItem, not DescribeTable: the task role only needs item-level permissions on the table.
        self._client.get_item(TableName=self._table, Key=_key("ping#"))

    def _probe_write(self) -> None:
        # A put whose condition can never hold: DynamoDB checks the permission and the capacity, then writes nothing.
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_key("ping#"),
                ConditionExpression="attribute_exists(#id) AND attribute_not_exists(#id)",
                ExpressionAttributeNames={"#id": "id"},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return

    def _is_outage(self, exc: Exception) -> bool:
        if isinstance(exc, (BotoConnectionError, HTTPClientError, NoCredentialsError)):
            return True  # refused, timed out, dropped, or no credentials at all
        return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _UNAVAILABLE

    def _release(self) -> None:
        self._client.close()
