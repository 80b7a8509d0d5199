"""Unthread's list convention (`POST /<resource>/list`), translated into SQL.

Request body (facts file §2; every key optional): `select`, `where`, `order`, `limit`,
`descending`, `cursor`. Response: `{data, totalCount, cursors: {hasNext, hasPrevious, next?, previous?}}`.

Pagination follows Unthread's own `sequelize-cursor-pagination` library (INFERRED to back the API):
a cursor is `[isNext, values-of-the-order-columns]`; a page fetches `limit + 1` rows; a previous page
inverts the sort and reverses the rows; `hasNext = (isNext and hasMore) or not isNext` and
`hasPrevious = (not isNext and hasMore) or (isNext and a cursor was given)`. NULLs sort as in
PostgreSQL (last when ascending, first when descending), and the seek predicate handles them the way
the library does. When every order column is non-null the seek is a row-value comparison
`(a, b) > (?, ?)`, which SQLite answers from a composite index.

Emulator choices on unconfirmed points (each marked "assumed" below):
- assumed: the cursor string is base64 of the JSON `[isNext, values]` (encoding unconfirmed);
- assumed: default `limit` is 100 (the documented per-page maximum); larger values are clamped to 100;
  `limit < 1` or a non-integer is refused with 400;
- assumed: `>=` and `<=` are accepted (working clients use them; the docs list omits them);
- assumed: default order is `["createdAt", "id"]` (the docs' example); `id` is appended when absent
  so the order is total;
- assumed: `!=`, `notIn` follow SQL semantics (rows whose field is null do not match), as Sequelize
  over PostgreSQL would; `contains` means element membership for list fields, key/value containment
  for object fields and substring for strings; `like` is case-sensitive with `%` and `_`;
- assumed: a field the resource does not document is refused with 400 naming it (reality would fail
  the SQL query in some way; a 400 tells a rehearsing user which name is wrong).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .schema import RESOURCES, Kind, Resource
from .store import Store, json_path, top_level_sql

MAX_LIMIT = 100
DEFAULT_LIMIT = 100
DEFAULT_ORDER = ("createdAt", "id")
OPERATORS = ("==", "!=", ">", "<", ">=", "<=", "in", "notIn", "contains", "notContains", "like")
_NEGATED = {"!=": "==", "notIn": "in", "notContains": "contains"}
_COMPARE = {"==": "=", "!=": "!=", ">": ">", "<": "<", ">=": ">=", "<=": "<="}


# -- request parsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    value: Any


@dataclass(frozen=True)
class ListQuery:
    select: list[str] | None
    where: list[Condition]
    order: list[str]
    limit: int
    descending: bool
    cursor: tuple[bool, list[Any]] | None


def parse_list_request(body: dict[str, Any], resource: Resource) -> ListQuery:
    """Validate a list body; every refusal names the key and the bad value."""
    select = _parse_select(body.get("select"), resource)
    where = _parse_where(body.get("where"), resource)
    order = _parse_order(body.get("order"), resource)
    limit = _parse_limit(body.get("limit"))
    descending = body.get("descending", False)
    if descending is None:
        descending = False
    if not isinstance(descending, bool):
        raise ApiError(400, f"descending must be a boolean, got {descending!r}")
    cursor = decode_cursor(body.get("cursor"), len(order))
    return ListQuery(select, where, order, limit, descending, cursor)


def _string_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, f"{key} must be a list of field names, got {value!r}")
    return value


def _parse_select(value: Any, resource: Resource) -> list[str] | None:
    if value is None:
        return None
    fields = _string_list(value, "select")
    for name in fields:
        validate_select_path(resource, name)
    return fields or None  # assumed: an empty select means "every field"


def validate_select_path(resource: Resource, path: str) -> None:
    """A selectable path: a documented field, then any depth into objects, arrays of objects and
    (one hop of) relations."""
    segs = path.split(".")
    spec = resource.fields.get(segs[0])
    if spec is None:
        raise ApiError(400, f"select: unknown field {segs[0]!r} on {resource.name} (in {path!r})")
    if len(segs) == 1:
        return
    if spec.kind in (Kind.SCALAR, Kind.ARRAY):
        raise ApiError(400, f"select: {segs[0]!r} on {resource.name} has no nested fields (in {path!r})")
    if spec.kind is Kind.RELATION:
        assert spec.relation is not None
        target = RESOURCES[spec.relation[0]]
        inner = target.fields.get(segs[1])
        if inner is None or inner.kind is Kind.RELATION:
            raise ApiError(400, f"select: unknown field {segs[1]!r} on {segs[0]} (in {path!r})")
        if len(segs) > 2 and inner.kind in (Kind.SCALAR, Kind.ARRAY):
            raise ApiError(400, f"select: {segs[0]}.{segs[1]} has no nested fields (in {path!r})")


def _parse_where(value: Any, resource: Resource) -> list[Condition]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, f"where must be a list of {{field, operator, value}} objects, got {value!r}")
    conditions = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ApiError(400, f"where[{i}] must be an object {{field, operator, value}}, got {item!r}")
        field, op = item.get("field"), item.get("operator")
        if not isinstance(field, str) or not field:
            raise ApiError(400, f"where[{i}].field must be a field name, got {field!r}")
        if op not in OPERATORS:
            raise ApiError(400, f"where[{i}].operator {op!r} is not one of {', '.join(OPERATORS)}")
        if "value" not in item:
            raise ApiError(400, f"where[{i}].value is required")
        _check_value(i, op, item["value"])
        resolve(resource, field, resource.name, purpose=f"where[{i}].field")
        conditions.append(Condition(field, op, item["value"]))
    return conditions


def _check_value(i: int, op: str, value: Any) -> None:
    scalar = value is None or isinstance(value, (str, int, float, bool))
    if op in ("in", "notIn"):
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float, bool)) for v in value):
            raise ApiError(400, f"where[{i}].value for {op!r} must be a list of strings or numbers, got {value!r}")
    elif op == "like":
        if not isinstance(value, str):
            raise ApiError(400, f"where[{i}].value for 'like' must be a string pattern, got {value!r}")
    elif op in ("contains", "notContains"):
        if value is None:
            raise ApiError(400, f"where[{i}].value for {op!r} must not be null")
    elif not scalar:
        raise ApiError(400, f"where[{i}].value for {op!r} must be a string, number, boolean or null, got {value!r}")
    elif value is None and op not in ("==", "!="):
        raise ApiError(400, f"where[{i}].value for {op!r} must not be null")


def _parse_order(value: Any, resource: Resource) -> list[str]:
    order = list(DEFAULT_ORDER) if value is None or value == [] else _string_list(value, "order")
    for name in order:
        ref = resolve(resource, name, resource.name, purpose="order")
        if not isinstance(ref, ScalarRef) or ref.is_object or ref.is_list:
            raise ApiError(400, f"order: cannot sort {resource.name} by {name!r} (not a single value)")
    if "id" not in order:
        order = [*order, "id"]
    return order


def _parse_limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"limit must be an integer between 1 and {MAX_LIMIT}, got {value!r}")
    if value < 1:
        raise ApiError(400, f"limit must be at least 1, got {value}")
    return min(value, MAX_LIMIT)


def encode_cursor(is_next: bool, values: Sequence[Any]) -> str:
    """assumed: base64 of JSON `[isNext, values]` (the library's tuple; the string form is unconfirmed)."""
    return base64.b64encode(json.dumps([is_next, list(values)], separators=(",", ":")).encode()).decode()


def decode_cursor(value: Any, order_len: int) -> tuple[bool, list[Any]] | None:
    if value is None or value == "":
        return None
    bad = ApiError(400, f"cursor {value!r} is not a cursor returned by a previous list response")
    if not isinstance(value, str):
        raise bad
    try:
        decoded = json.loads(base64.b64decode(value.encode(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not isinstance(decoded[0], bool)
        or not isinstance(decoded[1], list)
        or not all(v is None or isinstance(v, (str, int, float)) for v in decoded[1])
    ):
        raise bad
    if len(decoded[1]) != order_len:
        raise ApiError(400, "cursor does not match the order of this request (send the same order on every page)")
    return decoded[0], decoded[1]


# -- field references -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScalarRef:
    """A single SQL value (a column, a JSON path or a relation subquery)."""

    expr: str
    nonnull: bool = False
    is_object: bool = False  # the whole of an OBJECT field: JSON text, only null-comparable
    is_list: bool = False  # a list of scalars: json_each() over `source`, `path`
    source: str = ""
    path: str = ""


@dataclass(frozen=True)
class ElementRef:
    """A path inside the elements of an array of objects (`tags.name`): matched with EXISTS."""

    source: str
    path: str
    element_path: str


def resolve(resource: Resource, dotted: str, table_ref: str, purpose: str) -> ScalarRef | ElementRef:
    segs = dotted.split(".")
    spec = resource.fields.get(segs[0])
    if spec is None:
        raise ApiError(400, f"{purpose}: unknown field {segs[0]!r} on {resource.name}")
    try:
        return _resolve(resource, segs, table_ref, purpose, depth=0)
    except ValueError:  # a path segment with characters a JSON path cannot hold
        raise ApiError(400, f"{purpose}: invalid field path {dotted!r}") from None


def _resolve(resource: Resource, segs: list[str], table_ref: str, purpose: str, depth: int) -> ScalarRef | ElementRef:
    head, rest = segs[0], segs[1:]
    spec = resource.fields.get(head)
    if spec is None:
        raise ApiError(400, f"{purpose}: unknown field {head!r} on {resource.name}")
    doc = f"{table_ref}.doc"
    if spec.kind is Kind.RELATION:
        return _resolve_relation(resource, spec.relation, head, rest, table_ref, purpose, depth)
    if spec.kind in (Kind.SCALAR, Kind.ARRAY) and rest:
        raise ApiError(400, f"{purpose}: {head!r} on {resource.name} has no nested fields")
    if spec.kind is Kind.SCALAR:
        return ScalarRef(top_level_sql(resource, head, table_ref), nonnull=spec.nonnull)
    if spec.kind is Kind.ARRAY:
        return ScalarRef(top_level_sql(resource, head, table_ref), is_list=True, source=doc, path=json_path([head]))
    if spec.kind is Kind.OBJECT:
        return ScalarRef(f"json_extract({doc}, '{json_path(segs)}')", is_object=not rest)
    if not rest:  # an array of objects as a whole
        return ScalarRef(top_level_sql(resource, head, table_ref), is_list=True, source=doc, path=json_path([head]))
    return ElementRef(doc, json_path([head]), json_path(rest))


def _resolve_relation(
    resource: Resource,
    relation: tuple[str, str] | None,
    head: str,
    rest: list[str],
    table_ref: str,
    purpose: str,
    depth: int,
) -> ScalarRef:
    assert relation is not None
    if not rest:
        raise ApiError(400, f"{purpose}: {head!r} is a related object; name one of its fields, e.g. {head}.id")
    target = RESOURCES[relation[0]]
    alias = f"r{depth}"
    inner = _resolve(target, rest, alias, purpose, depth + 1)
    if not isinstance(inner, ScalarRef) or inner.is_list or target.fields[rest[0]].kind is Kind.RELATION:
        raise ApiError(400, f"{purpose}: {head}.{'.'.join(rest)} is not supported (one value per row only)")
    key = top_level_sql(resource, relation[1], table_ref)
    expr = f"(SELECT {inner.expr} FROM {target.name} {alias} WHERE {alias}.id = {key})"
    return ScalarRef(expr, is_object=inner.is_object)


# -- SQL compilation ------------------------------------------------------------------------------


def compile_condition(resource: Resource, cond: Condition) -> tuple[str, list[Any]]:
    ref = resolve(resource, cond.field, resource.name, purpose="where")
    if cond.operator in _NEGATED and isinstance(ref, ElementRef):
        sql, params = compile_condition(resource, Condition(cond.field, _NEGATED[cond.operator], cond.value))
        return f"NOT {sql}", params
    if isinstance(ref, ElementRef):
        elem = ScalarRef(f"json_extract(e.value, '{ref.element_path}')")
        inner, params = _scalar_condition(elem, cond)
        return f"EXISTS (SELECT 1 FROM json_each({ref.source}, '{ref.path}') e WHERE {inner})", params
    return _scalar_condition(ref, cond)


def _scalar_condition(ref: ScalarRef, cond: Condition) -> tuple[str, list[Any]]:
    op, value, e = cond.operator, cond.value, ref.expr
    if op in ("contains", "notContains"):
        sql, params = _contains(ref, value, cond.field)
        return (sql, params) if op == "contains" else (f"NOT coalesce({sql}, 0)", params)
    if (ref.is_object or ref.is_list) and not (op in ("==", "!=") and value is None):
        raise ApiError(400, f"where: {cond.field!r} holds several values; use contains/notContains or a nested field")
    if op == "==" and value is None:
        return f"{e} IS NULL", []
    if op == "!=" and value is None:
        return f"{e} IS NOT NULL", []
    if op in _COMPARE:
        return f"{e} {_COMPARE[op]} ?", [value]
    if op in ("in", "notIn"):
        marks = ",".join("?" * len(value))
        return f"{e} {'IN' if op == 'in' else 'NOT IN'} ({marks})", list(value)
    return f"{e} LIKE ?", [value]  # like


def _contains(ref: ScalarRef, value: Any, field: str) -> tuple[str, list[Any]]:
    if ref.is_list:
        wanted = value if isinstance(value, list) else [value]
        parts = [f"EXISTS (SELECT 1 FROM json_each({ref.source}, '{ref.path}') e WHERE e.value = ?)" for _ in wanted]
        return "(" + (" AND ".join(parts) or "1") + ")", list(wanted)
    if ref.is_object:
        if not isinstance(value, dict) or not value:
            raise ApiError(400, f"where: contains on object {field!r} needs an object value like {{\"key\": \"value\"}}")
        try:
            parts = [f"json_extract({ref.expr}, '{json_path([k])}') = ?" for k in value]
        except ValueError:
            raise ApiError(400, f"where: invalid key in contains value {value!r}") from None
        return "(" + " AND ".join(parts) + ")", list(value.values())
    if not isinstance(value, str):
        raise ApiError(400, f"where: contains on text field {field!r} needs a string value, got {value!r}")
    return f"(instr({ref.expr}, ?) > 0)", [value]


def _seek(refs: list[ScalarRef], values: list[Any], desc: bool) -> tuple[str, list[Any]]:
    """Rows strictly after the cursor row in the effective order (the library's predicate)."""
    cmp = "<" if desc else ">"
    if all(r.nonnull for r in refs) and all(v is not None for v in values):
        cols = ", ".join(r.expr for r in refs)
        # The redundant bound on the first column lets SQLite range-scan an expression index
        # (it does not derive one from a row-value comparison over expressions).
        bound = f"{refs[0].expr} {cmp}= ?"
        return f"({bound} AND ({cols}) {cmp} ({', '.join('?' * len(values))}))", [values[0], *values]
    nulls_last = not desc
    branches, params = [], []
    for i, (ref, value) in enumerate(zip(refs, values, strict=True)):
        eq = [f"{r.expr} IS ?" for r in refs[:i]]
        eq_params = list(values[:i])
        if value is None:
            if nulls_last:
                continue  # nothing follows NULL at this key; later keys break ties
            tail, tail_params = f"{ref.expr} IS NOT NULL", []
        else:
            tail = f"{ref.expr} {cmp} ?"
            if nulls_last and not ref.nonnull:
                tail = f"({tail} OR {ref.expr} IS NULL)"
            tail_params = [value]
        branches.append("(" + " AND ".join([*eq, tail]) + ")")
        params += eq_params + tail_params
    return "(" + (" OR ".join(branches) or "0") + ")", params


def _order_term(ref: ScalarRef, desc: bool) -> str:
    """PostgreSQL's null placement, spelled out only for nullable fields: an explicit NULLS clause
    on a non-null column would stop SQLite from reading the order straight off an index."""
    if ref.nonnull:
        return f"{ref.expr} {'DESC' if desc else 'ASC'}"
    return f"{ref.expr} {'DESC NULLS FIRST' if desc else 'ASC NULLS LAST'}"


@dataclass
class Page:
    docs: list[dict[str, Any]]
    total: int
    cursors: dict[str, Any]


def run_list(store: Store, resource: Resource, q: ListQuery, scope: tuple[str, Any] | None = None) -> Page:
    """One page of `resource` (optionally scoped, e.g. messages of one conversation)."""
    t = resource.name
    clauses, params = [], []
    if scope is not None:
        clauses.append(f"{top_level_sql(resource, scope[0], t)} = ?")
        params.append(scope[1])
    for cond in q.where:
        sql, p = compile_condition(resource, cond)
        clauses.append(sql)
        params += p
    where_sql = " AND ".join(clauses) or "1"
    total = store.query(f"SELECT count(*) FROM {t} WHERE {where_sql}", params)[0][0]

    is_next, values = q.cursor if q.cursor else (True, None)
    desc = q.descending != (not is_next)  # a previous page walks the inverted order
    refs = [resolve(resource, name, t, purpose="order") for name in q.order]
    assert all(isinstance(r, ScalarRef) for r in refs)
    scalar_refs: list[ScalarRef] = refs  # type: ignore[assignment]
    page_sql, page_params = where_sql, list(params)
    if values is not None:
        seek_sql, seek_params = _seek(scalar_refs, values, desc)
        page_sql, page_params = f"{where_sql} AND {seek_sql}", page_params + seek_params
    order_sql = ", ".join(_order_term(r, desc) for r in scalar_refs)
    cols = ", ".join(r.expr for r in scalar_refs)
    rows = store.query(
        f"SELECT doc, {cols} FROM {t} WHERE {page_sql} ORDER BY {order_sql} LIMIT ?", [*page_params, q.limit + 1]
    )
    has_more = len(rows) > q.limit
    rows = rows[: q.limit]
    if not is_next:
        rows.reverse()
    cursors: dict[str, Any] = {
        "hasNext": (is_next and has_more) or not is_next,
        "hasPrevious": (not is_next and has_more) or (is_next and values is not None),
    }
    if rows:
        cursors["next"] = encode_cursor(True, rows[-1][1:])
        cursors["previous"] = encode_cursor(False, rows[0][1:])
    return Page([json.loads(r[0]) for r in rows], total, cursors)


# -- relations and projection ---------------------------------------------------------------------


def hydrate(store: Store, resource: Resource, docs: list[dict[str, Any]], select: list[str] | None) -> None:
    """Join relations (customer, assignedToUser, ...) into docs in place, one query per relation.

    A relation is joined when the full object is returned and it is joined by default, or when the
    select names it. A dangling key (a deleted customer) joins as null."""
    wanted_heads = {p.split(".")[0] for p in select} if select else None
    for name, spec in resource.relations().items():
        if wanted_heads is None and not spec.hydrate_by_default:
            continue
        if wanted_heads is not None and name not in wanted_heads:
            continue
        assert spec.relation is not None
        target, key = spec.relation
        found = store.get_many(target, [d.get(key) for d in docs])
        for d in docs:
            d[name] = found.get(d.get(key)) if d.get(key) is not None else None


def project(obj: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Keep only the selected (possibly dotted) paths, preserving nesting: `tags.name` gives
    `{"tags": [{"name": ...}, ...]}` and `user.id` + `user.name` merge into one `user` object."""
    if not select:
        return obj
    out: dict[str, Any] = {}
    for path in select:
        _put(out, obj, path.split("."))
    return out


def _put(dst: dict[str, Any], src: Any, segs: list[str]) -> None:
    key, rest = segs[0], segs[1:]
    value = src.get(key) if isinstance(src, dict) else None
    if not rest or value is None or not isinstance(value, (dict, list)):
        if not rest or key not in dst:
            dst[key] = value
        return
    if isinstance(value, dict):
        sub = dst.get(key)
        if not isinstance(sub, dict):
            sub = dst[key] = {}
        _put(sub, value, rest)
        return
    items = dst.get(key)
    if not isinstance(items, list) or len(items) != len(value):
        items = dst[key] = [{} for _ in value]
    for target, element in zip(items, value, strict=True):
        if isinstance(target, dict):
            _put(target, element, rest)


def list_response(
    store: Store,
    resource: Resource,
    body: dict[str, Any],
    scope: tuple[str, Any] | None = None,
    finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    q = parse_list_request(body, resource)
    page = run_list(store, resource, q, scope)
    hydrate(store, resource, page.docs, q.select)
    data = [project(finish(d) if finish else d, q.select) for d in page.docs]
    return {"data": data, "totalCount": page.total, "cursors": page.cursors}
