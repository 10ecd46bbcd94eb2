"""The items table the gateway's DynamoDB store expects: hash key ``id`` (string) only, on-demand billing.

Small on purpose, and free of other deploy imports but one, so the gateway (or its tests) can reuse
:func:`create_table_if_missing` against DynamoDB Local or moto.
"""

from __future__ import annotations

from botocore.client import BaseClient

from deploy.ecs.errors import DeployError

KEY_SCHEMA = [{"AttributeName": "id", "KeyType": "HASH"}]
ATTRIBUTE_DEFINITIONS = [{"AttributeName": "id", "AttributeType": "S"}]


def create_table_if_missing(client: BaseClient, name: str) -> bool:
    """Create the table and wait until it is active; True if it had to be created.

    An existing table with another key schema is refused rather than used: every item call would fail.
    """
    try:
        table = client.describe_table(TableName=name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        client.create_table(
            TableName=name,
            KeySchema=KEY_SCHEMA,
            AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
            BillingMode="PAY_PER_REQUEST",
        )
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
        return True
    if table["KeySchema"] != KEY_SCHEMA:
        raise DeployError(f"table {name} exists with key schema {table['KeySchema']}; the gateway needs {KEY_SCHEMA}")
    return False
