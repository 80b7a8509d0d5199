"""Reading NDJSON (one JSON object per line) strictly, line by line, in flat memory.

Export files come from outside and may hold anything, so every line either yields an object
or says exactly why not (`JsonLine.error`), and nothing about one line can stop the next:
- lines are physical lines split on `\\n` only (NDJSON's separator; a `\\r\\n` ending is
  dropped with it), numbered from 1; blank lines (JSON whitespace only) are skipped but counted;
- each line is decoded as strict UTF-8 (a bad byte is reported with its offset instead of being
  replaced silently); a UTF-8 byte order mark opening the file is dropped;
- JSON is parsed strictly: no NaN / Infinity / numbers out of float range (JSON has none, and
  neither PostgreSQL's json nor our serializer accepts them), no nesting deeper than
  `MAX_DEPTH`, no NUL character or lone surrogate in any string or key (neither can be stored as
  text, and PostgreSQL's JSON operators reject `\\u0000`);
- a line over `MAX_LINE_BYTES` is reported with its first `RAW_HEAD_BYTES`, never held whole.

Lines are parsed by orjson (4-5x the standard library's speed; parsing is the largest cost of
staging an export). Where orjson's reading could differ from the standard library's, the standard
library decides: a line orjson refuses is parsed again by `json` (its reason is the one reported,
and what it accepts is screened as before), and a line with a run of 19 or more digits (an integer
past 64 bits, which orjson would read as a float) is parsed by `json` alone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import orjson

# A line longer than this is reported, not parsed: parsing it would hold several times its size.
# Real export lines are far below it (an HTML email with inline images is a few MB).
MAX_LINE_BYTES = 64 * 1024 * 1024
# How much of an over-long line is kept as its raw text.
RAW_HEAD_BYTES = 64 * 1024
# Gladly's records nest a handful of levels; deeper is hostile, and would break serializers.
MAX_DEPTH = 64
TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels"

_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r\n"
# Cheap screens on the raw line, so only suspicious lines get the full walk of their values.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
# An integer orjson cannot hold as one (it reads those as floats) has 19 or more digits: a line
# with such a run is parsed by the standard library. Found by mapping every digit to "0" and
# everything else to " " (bytes.translate, 10x a regular expression's speed).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def _long_digit_run(data: bytes) -> bool:
    return _LONG_RUN in data.translate(_DIGITS_AS_ZERO)


class JsonLine(NamedTuple):
    line_no: int  # 1-based physical line
    obj: dict[str, Any] | None  # None when the line is not a usable JSON object
    raw: str  # the line as text; bytes that are not UTF-8 are shown as \xNN
    error: str | None  # why obj is None


class _NotJson(ValueError):
    """A token JSON does not have (NaN, Infinity) or a number no float can hold."""


def _reject_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson(f"number {text[:40]} is out of range (not finite)")
    return value


_UNPARSED = object()
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def read_jsonl(path: Path) -> Iterator[JsonLine]:
    """Every non-blank line of `path` with its object or the reason it has none; nothing if the
    file does not exist. One loop, no helper generators: it runs once per line of every export."""
    if not path.exists():
        return
    limit = MAX_LINE_BYTES + 1
    with path.open("rb") as fh:
        readline = fh.readline
        line_no = 0
        while data := readline(limit):
            line_no += 1
            if len(data) == limit and not data.endswith(b"\n"):
                yield _over_long(line_no, data, fh)
                continue
            data = data.rstrip(b"\r\n")
            if line_no == 1 and data.startswith(_BOM):
                data = data[len(_BOM):]
            if not data or (data[0] in _JSON_WHITESPACE and not data.strip(_JSON_WHITESPACE)):
                continue  # blank
            yield parse_line(line_no, data)


def _over_long(line_no: int, head: bytes, fh: BinaryIO) -> JsonLine:
    """A line longer than MAX_LINE_BYTES, reported with its first RAW_HEAD_BYTES; the rest is
    read on in chunks and dropped, so memory stays flat whatever the file holds."""
    size, head = len(head), head[:RAW_HEAD_BYTES]
    while chunk := fh.readline(1024 * 1024):
        size += len(chunk)
        if chunk.endswith(b"\n"):
            size -= 1
            break
    raw = head.decode("utf-8", "backslashreplace")
    return JsonLine(line_no, None, raw, f"line is {size} bytes, longer than the {MAX_LINE_BYTES} bytes a line may have")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Yield (1-based line number, parsed object or None if unusable, raw line) for each line:
    `read_jsonl` without the reason."""
    for line in read_jsonl(path):
        yield line.line_no, line.obj, line.raw


def _orjson(data: bytes) -> Any:
    """`data` parsed by orjson, or `_UNPARSED` where the standard library must decide (a long
    digit run, or a line orjson refuses)."""
    if _long_digit_run(data):
        return _UNPARSED
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _UNPARSED


def loads(data: str | bytes) -> Any:
    """JSON text we wrote or already screened (a staged column): `_orjson`, else the standard
    library."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    obj = _orjson(raw)
    return json.loads(data) if obj is _UNPARSED else obj


def parse_line(line_no: int, data: bytes) -> JsonLine:
    """One line's bytes (its line break already removed) as a `JsonLine`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = data.decode("utf-8", "backslashreplace")
        return JsonLine(line_no, None, raw, f"not valid UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start} of the line")
    obj = _orjson(data)
    try:
        if obj is _UNPARSED:
            obj = _DECODER.decode(text)  # the standard library's verdict and reason
    except _NotJson as exc:
        return JsonLine(line_no, None, text, f"not valid JSON: {exc}")
    except json.JSONDecodeError as exc:
        return JsonLine(line_no, None, text, f"malformed JSON (truncated line?): {exc.msg} (character {exc.pos})")
    except RecursionError:
        return JsonLine(line_no, None, text, f"JSON nested deeper than {MAX_DEPTH} levels (too deep to parse)")
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        return JsonLine(line_no, None, text, f"not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return JsonLine(line_no, None, text, f"not a JSON object (a JSON {_json_type(obj)})")
    # Cheap screens first. Depth: only a line with more brackets than MAX_DEPTH can be too deep,
    # and then only its brackets outside strings are counted (a ticket line with many comments
    # has many brackets, none of it deep). Strings: strict JSON has no raw control character, so a NUL or
    # a lone surrogate can only come from an escape; only a line with one gets the string walk.
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(text):
        return JsonLine(line_no, None, text, TOO_DEEP)
    if "\\u" in text and _SUSPECT_ESCAPE.search(text) and (problem := unstorable(obj)):
        return JsonLine(line_no, None, text, problem)
    return JsonLine(line_no, obj, text, None)


# A JSON string (the unrolled form of "(?:[^"\\]|\\.)*"): removed, a parsed line leaves only its
# structure, whose brackets give the depth.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _too_deep(text: str) -> bool:
    """Whether the containers of `text`, a line that parsed as JSON, nest deeper than MAX_DEPTH:
    its strings removed, the brackets left are counted (outside strings every bracket is
    structure), which costs a fraction of walking the parsed values."""
    depth = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def unstorable(obj: dict[str, Any]) -> str | None:
    """Why the parsed line cannot be staged as is (too deep, NUL, lone surrogate), or None."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return TOO_DEEP
        if isinstance(value, dict):
            for key, item in value.items():
                if problem := _bad_string(key, "a key"):
                    return problem
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and (problem := _bad_string(value, "a string")):
            return problem
    return None


def _bad_string(value: str, what: str) -> str | None:
    found = _BAD_CHAR.search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return f"{what} holds a NUL character (\\u0000), which cannot be stored as text"
    return f"{what} holds a lone surrogate (\\u{ord(char):04x}), which is not a character"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), type(value).__name__)


# A quarantined line keeps this much of its raw text (the export file keeps all of it, and job or
# file and line say where).
RAW_TEXT_LIMIT = 1024 * 1024


def storable_text(text: str, limit: int) -> str:
    """`text` as PostgreSQL text can hold it (a NUL shown as \\x00, a lone surrogate as
    \\udXXX), cut to `limit` characters with a note saying so."""
    if len(text) > limit:
        text = text[:limit] + f" … [truncated: {len(text) - limit} more characters not stored; the archived file has the whole line]"
    text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
