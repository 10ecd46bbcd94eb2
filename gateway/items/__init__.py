"""Items: the CRUD half of the gateway, on SQLite (embedded default) or DynamoDB (on AWS), never on Triton."""

from __future__ import annotations

from gateway.items.dynamodb import DynamoDBItemStore, make_client
from gateway.items.sqlite import SQLiteItemStore
from gateway.items.store import Item, ItemPage, ItemStore, ItemStoreError, StoreUnavailable
from gateway.settings import Settings

__all__ = ["Item", "ItemPage", "ItemStore", "ItemStoreError", "StoreUnavailable", "open_item_store"]


async def open_item_store(settings: Settings) -> ItemStore:
    """The store the settings name. Opening touches nothing remote or on disk, so the gateway starts and serves
    inference while the store is down; ``ping()`` tells readiness, and calls answer 503 until it is back."""
    if settings.item_store == "dynamodb":
        client = make_client(settings.aws_region, settings.dynamodb_endpoint_url)
        return DynamoDBItemStore(
            client,
            settings.dynamodb_table,
            max_data_bytes=settings.max_item_bytes,
            max_page_bytes=settings.max_page_bytes,
        )
    return SQLiteItemStore(
        settings.sqlite_path,
        max_data_bytes=settings.max_item_bytes,
        max_page_bytes=settings.max_page_bytes,
        busy_timeout_s=settings.sqlite_write_timeout_s,
        readers=settings.sqlite_readers,
    )
