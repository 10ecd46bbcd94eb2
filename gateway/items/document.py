"""The JSON an item holds: parsing hostile input safely, RFC 7396 merge patch, and the stored text form.

Parsing refuses what would cost more than its size suggests or could not be stored faithfully: nesting deeper
than ``MAX_DEPTH`` (checked by a linear scan before ``json.loads`` can recurse), text that is not UTF-8 (RFC
8259 allows nothing else), strings that are not Unicode text (a lone surrogate escape such as ``"\\ud800"``
has no UTF-8 form), and numbers that are not finite (``NaN`` or ``1e999`` have no JSON form to store).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 32

# A string literal, or an unterminated one running to the end (optionally a dangling backslash): every '"'
# starts a match, so a failed match can't be retried from each later quote. Requiring the closing quote made a
# body of escaped quotes (["\"\"\"...) quadratic: 64 KiB of them took seconds on the event loop.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_JSON_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}


class InvalidDocument(ValueError):
    """The body is not a JSON object this service can store; the message says why, for the client."""


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest, brackets inside strings ignored; exact for valid JSON."""
    return max(accumulate(map(_STEP.__getitem__, _BRACKET.findall(_STRING.sub("", text)))), default=0)


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise InvalidDocument(f"number {number[:40]} is out of range")
    return value


def _no_constants(name: str) -> Any:
    raise InvalidDocument(f"{name} is not JSON")


def parse_object(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``, or ``InvalidDocument``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidDocument(f"the body is not UTF-8 (byte {exc.start})") from None
    if nesting_depth(text) > MAX_DEPTH:
        raise InvalidDocument(f"JSON nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constants)
    except InvalidDocument:
        raise
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python's digit limit
        raise InvalidDocument(f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidDocument(f"the body must be a JSON object, not {_JSON_NAMES.get(type(value), 'null')}")
    if _SURROGATE_ESCAPE.search(text):  # rare: only then is the whole object checked
        try:
            dump(value).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidDocument(f"a string holds a lone surrogate (U+{ord(exc.object[exc.start]):04X})") from None
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key, ``null`` removes a key, anything else replaces. ``target`` is kept."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def dump(data: dict[str, Any]) -> str:
    """The stored form: compact UTF-8 JSON, keys in the client's order."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def fingerprint(data: dict[str, Any]) -> str:
    """Equal for equal objects whatever their key order: what an idempotent retry is compared by."""
    canonical = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
