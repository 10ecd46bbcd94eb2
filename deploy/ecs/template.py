"""``${name}`` placeholders in the JSON templates under ``templates/``.

A string that is exactly one placeholder takes the value with its type (a number stays a number, a list a
list); a placeholder inside a longer string is formatted into it. A placeholder without a value is an error,
so a template and the code that fills it cannot drift apart silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"
_PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


def load(name: str) -> Any:
    """A template, parsed (``name`` is relative to ``templates/``)."""
    return json.loads((TEMPLATES / name).read_text())


def render(node: Any, values: Mapping[str, Any]) -> Any:
    """``node`` with every placeholder replaced from ``values``."""
    if isinstance(node, dict):
        return {key: render(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [render(value, values) for value in node]
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node)
        if whole:
            return _value(values, whole[1])
        return _PLACEHOLDER.sub(lambda match: str(_value(values, match[1])), node)
    return node


def _value(values: Mapping[str, Any], name: str) -> Any:
    try:
        return values[name]
    except KeyError:
        raise KeyError(f"template placeholder ${{{name}}} has no value") from None
