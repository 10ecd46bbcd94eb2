"""The pure parts of items: hostile JSON, RFC 7396 merge patch, fingerprints and cursors, on known answers."""

from __future__ import annotations

import json
import re

import pytest

from gateway.items.document import MAX_DEPTH, InvalidDocument, fingerprint, merge_patch, nesting_depth, parse_object
from gateway.items.store import InvalidCursor, decode_cursor, encode_cursor


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"a": 1} x', "not valid JSON"),
        (b"[1, 2]", "not an array"),
        (b'"text"', "not a string"),
        (b"3.5", "not a number"),
        (b"true", "not a boolean"),
        (b"null", "not null"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": -Infinity}', "-Infinity is not JSON"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON"),  # past Python's int digit limit
        (b'{"a": "caf\xe9"}', "not UTF-8 (byte 10)"),  # Latin-1
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
        (b'\xef\xbb\xbf{"a": 1}', "not valid JSON"),  # a BOM: RFC 8259 says don't send one
        (nested(MAX_DEPTH + 1).encode(), f"deeper than {MAX_DEPTH}"),
        (b"[" * 100_000, f"deeper than {MAX_DEPTH}"),  # would be a RecursionError in json.loads
    ],
)
def test_bodies_that_are_not_a_storable_object_are_refused_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidDocument, match=re.escape(reason)):
        parse_object(raw)


def test_objects_up_to_the_depth_limit_parse_exactly() -> None:
    assert parse_object(nested(MAX_DEPTH).encode()) == json.loads(nested(MAX_DEPTH))
    assert parse_object('{"é": [1, 2.5, "✓", null, {"b": false}], "n": -0.0}'.encode()) == {
        "é": [1, 2.5, "✓", None, {"b": False}],
        "n": -0.0,
    }


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"s": "[[[[{{{{" * 40, "q": 'a \\" [[[ \\\\', "list": [[1]]})
    assert nesting_depth(text) == 3
    assert parse_object(text.encode())["s"] == "[[[[{{{{" * 40


# RFC 7396, appendix A: target, patch, result.
RFC_7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_merge_patch_matches_rfc_7396(target: object, patch: object, result: object) -> None:
    before = json.dumps(target)
    assert merge_patch(target, patch) == result
    assert json.dumps(target) == before  # the stored object is not modified in place


def test_fingerprint_ignores_key_order_only() -> None:
    assert fingerprint({"a": 1, "b": {"c": 2, "d": 3}}) == fingerprint({"b": {"d": 3, "c": 2}, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1.5})
    assert fingerprint({"a": [1, 2]}) != fingerprint({"a": [2, 1]})


@pytest.mark.parametrize("item_id", ["a", "Z9_-", "x" * 128])
def test_cursors_round_trip(item_id: str) -> None:
    cursor = encode_cursor(item_id)
    assert "=" not in cursor and decode_cursor(cursor) == item_id


@pytest.mark.parametrize("cursor", ["", "a", "!!!!", "JSUl", encode_cursor("x" * 129), "Zm9v\n"])
def test_cursors_not_made_here_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
