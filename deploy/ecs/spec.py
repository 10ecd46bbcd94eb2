"""How the deploy tells whether what is in place already matches what it would apply.

AWS fills in defaults and reorders fields when it describes a resource, so for task definitions and the
service the deploy compares a hash of the request it last sent, kept as a tag on the resource (the idea of
kubectl's last-applied-configuration). Elsewhere it checks that the described resource contains the
desired fields.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SPEC_TAG = "deploy:spec-sha256"


def spec_digest(request: Any) -> str:
    """A stable hash of an API request (key order does not matter)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def spec_tag(request: Any) -> dict[str, str]:
    """The ECS tag (lower-case key/value) recording ``request``."""
    return {"key": SPEC_TAG, "value": spec_digest(request)}


def tagged_digest(tags: list[dict[str, str]] | None) -> str | None:
    """The digest recorded on an ECS resource by :func:`spec_tag`, if any."""
    return next((tag["value"] for tag in tags or [] if tag["key"] == SPEC_TAG), None)


def contains(actual: Any, desired: Any) -> bool:
    """True if every field of ``desired`` is in ``actual`` with the same value (lists item by item)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            key in actual and contains(actual[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return actual == desired
