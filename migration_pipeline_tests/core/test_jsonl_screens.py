"""lib/jsonl.parse_line's cheap screens: a line with many brackets but no depth is not walked for
strings, and every unstorable line is still refused with its reason."""

from __future__ import annotations

import json

from migration_pipeline.lib.jsonl import MAX_DEPTH, TOO_DEEP, parse_line


def _ticket(comments: int, body: str = "hello") -> bytes:
    line = {"id": 1, "comments": [{"id": n, "attachments": [], "via": {"source": {}}, "body": body} for n in range(comments)]}
    return json.dumps(line).encode()


def test_a_shallow_line_with_many_brackets_is_accepted():
    parsed = parse_line(1, _ticket(200))
    assert parsed.error is None and len(parsed.obj["comments"]) == 200


def test_a_nul_or_lone_surrogate_escape_is_refused_however_many_brackets_surround_it():
    nul = parse_line(1, _ticket(200).replace(b'"hello"', b'"he\\u0000llo"', 1))
    assert nul.obj is None and "NUL" in nul.error
    surrogate = parse_line(2, _ticket(3).replace(b'"hello"', b'"\\ud800x"', 1))
    assert surrogate.obj is None and "lone surrogate" in surrogate.error
    paired = parse_line(3, _ticket(3).replace(b'"hello"', b'"\\ud83d\\ude00"', 1))  # an emoji, escaped: fine
    assert paired.error is None


def test_nesting_past_the_limit_is_refused_and_at_the_limit_accepted():
    def nested(levels: int) -> bytes:
        return ('{"id": 1, "x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}").encode()

    assert parse_line(1, nested(MAX_DEPTH)).error is None
    deep = parse_line(2, nested(MAX_DEPTH + 1))
    assert deep.obj is None and deep.error == TOO_DEEP


def test_a_raw_control_character_is_not_json():
    raw = parse_line(1, b'{"id": 1, "body": "a\x00b"}')
    assert raw.obj is None and "JSON" in raw.error


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def test_depth_is_counted_from_brackets_outside_strings_exactly():
    """Brackets, quotes and backslashes inside strings (escaped or not) never count: the depth
    found from the line's text is the depth of its parsed values, at and around the limit."""
    tricky = ['[[[[', '}}}', 'a \\" [ {', '\\\\', '"]"', '{"x": [1]}', "\\u005b"]
    for levels in (MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1):
        for text in tricky:
            value: object = text
            for n in range(levels - 1):
                value = {"k[": value, "s": text} if n % 2 else [text, value]
            line = json.dumps({"id": 1, "v": value, "t": text * 40}).encode()
            parsed = parse_line(1, line)
            assert _depth(json.loads(line)) == levels
            assert (parsed.error == TOO_DEEP) == (levels > MAX_DEPTH), (levels, text)


def test_orjson_and_the_standard_library_read_every_line_alike():
    """Lines are parsed by orjson; where it would read them differently the standard library
    decides: an integer past 64 bits stays an exact integer, and what orjson refuses gets the
    standard library's verdict and reason."""
    big = 123456789012345678901234567890
    line = parse_line(1, b'{"id": %d, "n": -9223372036854775809, "f": 1.5, "s": "\\u00e9"}' % big)
    assert line.obj == {"id": big, "n": -9223372036854775809, "f": 1.5, "s": "é"}
    assert type(line.obj["id"]) is int
    assert parse_line(2, b'{"id": 1, "x": NaN}').error == "not valid JSON: NaN is not a JSON value"
    assert parse_line(3, b'{"id": 1, "x": 1e999}').error.startswith("not valid JSON")
    assert parse_line(4, b'{"id": 1,').error.startswith("malformed JSON (truncated line?)")
    for raw in (b'{"a": [1, {"b": null}], "c": "d\\n"}', b'{"id": 1, "id": 2}', b'{"x": -0.0}'):
        assert parse_line(5, raw).obj == json.loads(raw)


def test_staged_json_columns_round_trip_what_orjson_cannot_write():
    from migration_pipeline.lib.jsonl import loads
    from migration_pipeline.lib.staging.db import json_text

    for value in ({"id": 2**70, "t": ["a", "é"]}, [1, 2.5, None], {"k": {"1": True}}):
        assert loads(json_text(value)) == value
    assert json_text({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert type(loads(json_text({"id": 2**70}))["id"]) is int
