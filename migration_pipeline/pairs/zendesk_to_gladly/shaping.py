"""Zendesk -> Gladly, shaped for Gladly's historical import: the staged contract of a day range
becomes rows of Gladly's import files (vendors/gladly/import_files.py writes them), and every
staged item's outcome is recorded in `imported_items`. No Dagster import.

Mapping (as Gladly maps Zendesk; facts: shared/vendor-apis/gladly-api.md §4.4, issue 15), one
row per comment item (contract kinds `comment_kinds`: message, note, call):
- timestamp: the item's `ts` (Zendesk `created_at`);
- title: the ticket's subject, else the item's, else `untitled` ("Zendesk ticket {ticket}"), on
  one line (whitespace runs become one space); the writer cuts it to 100 with an ellipsis;
- body: the comment's HTML rendered to plain text with links kept as "text (url)" (`html_to_text`),
  else its text. Plain text rather than markdown (lib/content.py's html_to_markdown): Gladly shows
  an imported item as text, so `[text](url)`, `**` and `#` would show as written, and
  html_to_markdown is made for Slack (it escapes `<…>` to `&lt;…&gt;`, puts zero-width spaces in
  `@here`, announces inline images "attached to this message" and trims quotes with a note naming
  the Gladly archive), none of which is true of a Gladly import. markdownify still lays the text
  out (paragraphs, line breaks, lists, quotes, table rows) with every markup character dropped;
  `data:` and `cid:` links (inline bytes, no address) are left out;
- private items (visibility not `public`; absent is taken as private, the safer label) start with
  `private_notes.label`, or are skipped (`private_notes.mode: skip`);
- attachments (never imported) named with their Zendesk links at the end of the body, under
  `attachments.heading` (`attachments.list_in_body`);
- tags: the ticket's tags (the writer joins them with commas); source: `source` ("Zendesk");
- customer email: the requester's (the item's customer's) primary email, else the ticket's
  sender (`envelope.from`); name and phone (the first; Gladly's type OTHER is for the profile API,
  the file has one phone column) when they exist. A bad email is not skipped: the writer puts the
  row in rejected.csv with the reason.

Skip rules (`import_rules.yaml`, versioned, checked by pydantic), first that applies: not_a_comment
(another kind), spam (ticket status or tag), junk_customer (email pattern or domain of the row's
email), private_note (only with mode skip), empty_conversation (every comment of the ticket, all
staged ones whatever their range, renders empty: no text and no listed attachment). Each skip is
counted by rule in the result and in the manifest's `source_counts` (`skipped:<rule>`).

Ranges and deltas. A range is whole UTC days [lo, hi), labelled `<first day>_<last day>` (its
folder and file names, `imported_items.import_range`). It holds:
1. the items it recorded before (re-materializing a range rewrites it byte-identically);
2. items never recorded whose ts is in [lo, hi) (items recorded under another label are not
   written again: a delta range holds only what is new since the last import);
3. late arrivals: items never recorded whose ts is before lo and inside the days of a range
   already written (staged after that range was written, so no file holds them). They are new
   since the last import, so the next range written takes them, in ts order like the rest, and
   counts them as `late_arrivals` (with 1., a re-run keeps them and counts them again). Items
   before lo that no written range covers are not late: they are outside every import.
Rows are ordered by (ts, item id), the id compared bytewise on both engines (COLLATE "C" on
PostgreSQL), so a re-run with nothing new staged writes byte-identical files, on SQLite and
PostgreSQL alike.

How a range is written (`write_range`): under the lease `gladly-import-files` (one writer at a
time, so two ranges never take the same new item), inside one read snapshot (REPEATABLE READ on
PostgreSQL, a read transaction on SQLite): pass 1 reads the selection without bodies and decides
every skip but empty_conversation, then renders the comments of the remaining tickets until one
has content (usually the first), so the counts are known before the writer starts (they go into
the manifest); pass 2 streams the selection with bodies into `write_import_files`. Then one
transaction replaces the range's `imported_items` rows: `row` (file, first data row, parts, read
back from the writer's index.csv), `rejected` (rejected.csv, its data row, the reason) and
`skipped` (the rule). Every selected item gets exactly one.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from pydantic import AfterValidator, Field, StringConstraints
from sqlalchemy.engine import Connection

from migration_pipeline.contract import ItemKind
from migration_pipeline.lib.jsonl import loads
from migration_pipeline.lib.rule_files import (
    NonEmpty,
    RulesDocument,
    load_rules_file,
    template,
    validate_rules,
)
from migration_pipeline.pairs.zendesk_to_gladly import bodies
from migration_pipeline.pairs.zendesk_to_gladly.bodies import html_to_text  # noqa: F401  (re-exported)
from migration_pipeline.lib.staging.db import (
    StagingDatabase,
    conversation_items,
    conversations,
    customers,
    exclusive,
    imported_items,
    now_text,
    utc_text,
)
from migration_pipeline.vendors.gladly.import_files import (
    INDEX_FILE,
    MANIFEST_FILE,
    REJECTED_FILE,
    ImportFile,
    ImportFileConfig,
    ImportFiles,
    ImportRow,
    write_import_files,
)

RULES_FILE = "import_rules.yaml"
NOT_A_COMMENT, SPAM, JUNK_CUSTOMER, PRIVATE_NOTE, EMPTY_CONVERSATION = (
    "not_a_comment", "spam", "junk_customer", "private_note", "empty_conversation")
# A comment already in Gladly as a CUSTOMER_ACTIVITY (the optional API path, activity_items.py):
# not written again, and recorded so the reconciliation counts it once.
IN_GLADLY_BY_API = "in_gladly_by_api"
SKIP_RULES = (IN_GLADLY_BY_API, NOT_A_COMMENT, SPAM, JUNK_CUSTOMER, PRIVATE_NOTE, EMPTY_CONVERSATION)  # in the order they apply
ROW, REJECTED, SKIPPED = "row", "rejected", "skipped"  # imported_items.outcome
IMPORT_LEASE, LEASE_TTL_SECONDS = "gladly-import-files", 120.0
LABEL_RE = re.compile(r"(\d{4}-\d{2}-\d{2})_(\d{4}-\d{2}-\d{2})")
_TICKET_CHUNK, _YIELD_PER = 500, 1000


# -- the rules file ------------------------------------------------------------------------------
def _regex(value: str) -> str:
    try:
        re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


Domain = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[a-z0-9-]+(\.[a-z0-9-]+)*$")]


class JunkPattern(RulesDocument):
    name: NonEmpty
    pattern: Annotated[NonEmpty, AfterValidator(_regex)]


class JunkCustomers(RulesDocument):
    """Addresses that are not people: a pattern searched in the address (case-insensitive), or
    a domain (the address's domain is it or a subdomain of it)."""

    email_patterns: list[JunkPattern] = Field(default_factory=list)
    domains: list[Domain] = Field(default_factory=list)

    def match(self, email: str) -> str | None:
        """The name of the first pattern `email` matches (`domain:<d>` for a domain), or None."""
        for rule in self.email_patterns:
            if re.search(rule.pattern, email, re.IGNORECASE):
                return rule.name
        host = email.rpartition("@")[2].lower()
        for domain in self.domains:
            if host == domain or host.endswith("." + domain):
                return f"domain:{domain}"
        return None


class SpamRule(RulesDocument):
    statuses: list[NonEmpty] = Field(default_factory=lambda: ["deleted"])
    tags: list[NonEmpty] = Field(default_factory=lambda: ["spam"])


class SkipRules(RulesDocument):
    spam: SpamRule = SpamRule()
    empty_conversations: bool = True
    junk_customers: JunkCustomers = JunkCustomers()


class PrivateNotes(RulesDocument):
    mode: Literal["include", "skip"] = "include"
    label: NonEmpty = "[Internal note, not visible to the customer]"


class AttachmentListing(RulesDocument):
    list_in_body: bool = True
    heading: NonEmpty = "Attachments (not imported; links from Zendesk):"


class ImportRules(RulesDocument):
    """What import_rules.yaml may hold, checked when it is loaded."""

    version: NonEmpty
    source: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)] = "Zendesk"
    comment_kinds: list[ItemKind] = Field(default_factory=lambda: ["message", "note", "call"])
    untitled: Annotated[NonEmpty, template(ticket="1")] = "Zendesk ticket {ticket}"
    private_notes: PrivateNotes = PrivateNotes()
    attachments: AttachmentListing = AttachmentListing()
    skip: SkipRules = SkipRules()


def packaged_rules_path() -> str:
    return str(resources.files(__package__).joinpath(RULES_FILE))


def load_import_rules(path: str | Path | None = None) -> ImportRules:
    """The rules in `path`, else the packaged import_rules.yaml; a bad file raises RulesFileError."""
    return load_rules_file(ImportRules, path or packaged_rules_path(), "Gladly import rules")


def import_rules_from_mapping(data: Any, source: str = "mapping") -> ImportRules:
    """The rules of a parsed document (same checks as a file)."""
    return validate_rules(ImportRules, data, "Gladly import rules", source)


# -- bodies --------------------------------------------------------------------------------------
def _heading(rules: ImportRules) -> str | None:
    """The attachment listing's heading, None when attachments are not listed."""
    return rules.attachments.heading if rules.attachments.list_in_body else None


def comment_content(html: str | None, text: str | None, attachments: Sequence[Mapping[str, Any]] | None,
                    rules: ImportRules) -> str:
    """What a comment says under `rules` (bodies.content)."""
    return bodies.content(html, text, attachments, _heading(rules))


def says_something(html: str | None, text: str | None, attachments: Sequence[Mapping[str, Any]] | None,
                   rules: ImportRules) -> bool:
    """Whether `comment_content` is not empty (bodies.says_something)."""
    return bodies.says_something(html, text, attachments, _heading(rules))


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


# -- selection -----------------------------------------------------------------------------------
_i, _c, _u, _m = conversation_items.c, conversations.c, customers.c, imported_items.c


def range_label(first_day: date, last_day: date) -> str:
    """A range's label: its folder, its files' middle part and imported_items.import_range."""
    return f"{first_day.isoformat()}_{last_day.isoformat()}"


def _day(value: date, what: str) -> date:
    if isinstance(value, datetime):
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if utc.time() != time(0):
            raise ValueError(f"{what} must be a day boundary (UTC midnight), got {value.isoformat()}")
        return utc.date()
    return value


def _midnight(day: date) -> str:
    return utc_text(datetime.combine(day, time(0), UTC))


@dataclass
class _Plan:
    label: str
    lo: str  # staged ts text of the window's bounds
    hi: str
    late_spans: list[tuple[str, str]]
    items: int = 0
    late_arrivals: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    empty_tickets: set[str] = field(default_factory=set)

    def source_counts(self) -> dict[str, int]:
        return {"items": self.items, "late_arrivals": self.late_arrivals, "rows_in": self.items - self.skipped.total(),
                **{f"skipped:{rule}": n for rule, n in self.skipped.items()}}


def _late_spans(conn: Connection, label: str, lo: date) -> list[tuple[str, str]]:
    """The days of the ranges written under other labels, before `lo`, merged (ts text bounds)."""
    spans = []
    for (other,) in conn.execute(sa.select(_m.import_range).distinct().where(_m.import_range != label)):
        match = LABEL_RE.fullmatch(other or "")
        if match:  # a label this module did not make names no days
            start, end = date.fromisoformat(match[1]), min(date.fromisoformat(match[2]) + timedelta(days=1), lo)
            if start < end:
                spans.append((start, end))
    merged: list[tuple[date, date]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return [(_midnight(a), _midnight(b)) for a, b in merged]


def _as_text(column: sa.Column) -> sa.Label:
    """A JSON column read as its text: decoded here once per distinct value (`_tags`, `_sender`,
    ...), not once per row by the driver (a ticket's tags and envelope repeat on every comment)."""
    return sa.cast(column, sa.Text).label(column.name)


@functools.lru_cache(maxsize=8192)
def _json(text: str | None) -> Any:
    return loads(text) if text else None


@functools.lru_cache(maxsize=8192)
def _tags(text: str | None) -> tuple[str, ...]:
    tags = _json(text)
    return tuple(str(t) for t in tags) if isinstance(tags, list) else ()


def _attachments(text: str | None) -> list[dict[str, Any]]:
    found = loads(text) if text and text not in ("[]", "null") else None  # mostly none: not cached
    return found if isinstance(found, list) else []


@functools.lru_cache(maxsize=8192)
def _first_phone(text: str | None) -> str | None:
    phones = [p.strip() for p in _json(text) or () if isinstance(p, str) and p.strip()]
    return phones[0] if phones else None


def _selection(plan: _Plan, dialect: str, full: bool) -> sa.Select:
    columns = [_i.source_id, _i.ts, _i.kind, _i.visibility, _i.conversation_id, _u.primary_email,
               _c.status, _as_text(_c.tags), _as_text(_c.envelope)]
    if full:
        columns += [_i.subject.label("item_subject"), _i.text, _i.html, _as_text(_i.attachments),
                    _c.subject.label("ticket_subject"), _u.name, _as_text(_u.phones)]
    new = sa.or_(sa.and_(_i.ts >= plan.lo, _i.ts < plan.hi), *(sa.and_(_i.ts >= a, _i.ts < b) for a, b in plan.late_spans))
    item_id = sa.collate(_i.source_id, "C") if dialect == "postgresql" else _i.source_id
    return (
        sa.select(*columns)
        .select_from(conversation_items
                     .outerjoin(imported_items, _m.item_id == _i.source_id)
                     .outerjoin(conversations, _c.source_id == _i.conversation_id)
                     .outerjoin(customers, _u.source_id == _i.customer_id))
        .where(sa.or_(_m.import_range == plan.label, sa.and_(_m.item_id.is_(None), new)))
        .order_by(_i.ts, item_id)
        .execution_options(yield_per=_YIELD_PER)
    )


def _email(primary: str | None, envelope: str | None) -> str | None:
    """The requester's email, else the ticket's sender (`envelope`: the column's JSON text)."""
    return (primary or "").strip() or _sender(envelope) or None


@functools.lru_cache(maxsize=8192)
def _sender(envelope: str | None) -> str:
    found = _json(envelope)
    sender = found.get("from") if isinstance(found, dict) else None
    return sender.strip() if isinstance(sender, str) else ""


class _Skips:
    """The skip rules but empty_conversation, compiled once per range."""

    def __init__(self, rules: ImportRules, in_gladly: frozenset[str] = frozenset()):
        self.rules, self.in_gladly = rules, in_gladly
        self.kinds = frozenset(rules.comment_kinds)
        self.statuses = frozenset(s.lower() for s in rules.skip.spam.statuses)
        self.tags = frozenset(t.lower() for t in rules.skip.spam.tags)
        self.skip_private = rules.private_notes.mode == "skip"
        # asked once per comment, answered once per ticket (status, tags) and per address
        self._spam = functools.lru_cache(maxsize=65536)(self._is_spam)
        self._junk = functools.lru_cache(maxsize=65536)(rules.skip.junk_customers.match)

    def _is_spam(self, status: str | None, tags: str | None) -> bool:
        return (status or "").lower() in self.statuses or any(t.lower() in self.tags for t in _tags(tags))

    def rule(self, r: Any) -> str | None:
        if r.source_id in self.in_gladly:
            return IN_GLADLY_BY_API
        if r.kind not in self.kinds:
            return NOT_A_COMMENT
        if self._spam(r.status, r.tags):
            return SPAM
        email = _email(r.primary_email, r.envelope)
        if email and self._junk(email):
            return JUNK_CUSTOMER
        if self.skip_private and r.visibility != "public":
            return PRIVATE_NOTE
        return None


def _plan(conn: Connection, dialect: str, plan: _Plan, rules: ImportRules, skips: _Skips) -> None:
    """Pass 1: count the selection, its late arrivals and its skips; find the empty tickets."""
    undecided: Counter[str] = Counter()  # ticket -> its items no other rule skips
    for r in conn.execute(_selection(plan, dialect, full=False)):
        plan.items += 1
        plan.late_arrivals += r.ts < plan.lo
        rule = skips.rule(r)
        if rule:
            plan.skipped[rule] += 1
        elif r.conversation_id is not None and rules.skip.empty_conversations:
            undecided[r.conversation_id] += 1
    plan.empty_tickets = _empty_tickets(conn, undecided, rules)
    for ticket in plan.empty_tickets:
        plan.skipped[EMPTY_CONVERSATION] += undecided[ticket]


def _empty_tickets(conn: Connection, tickets: Iterable[str], rules: ImportRules) -> set[str]:
    """The tickets whose every staged comment (in any range) renders empty."""
    ids, empty = sorted(tickets), set()
    for start in range(0, len(ids), _TICKET_CHUNK):
        chunk, said = ids[start:start + _TICKET_CHUNK], set()
        query = sa.select(_i.conversation_id, _i.html, _i.text, _as_text(_i.attachments)).where(
            _i.conversation_id.in_(chunk), _i.kind.in_(rules.comment_kinds))
        for ticket, html, text, attachments in conn.execute(query.execution_options(yield_per=_YIELD_PER)):
            if ticket not in said and says_something(html, text, _attachments(attachments), rules):
                said.add(ticket)
        empty.update(set(chunk) - said)
    return empty


@dataclass
class _Outcomes:
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason), in rejected.csv order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item id, rule)
    by_rule: Counter[str] = field(default_factory=Counter)


def _import_row(r: Any, rules: ImportRules, content: str | None = None) -> ImportRow:
    """The import row of a selected item (`content`: its body already rendered, else rendered here)."""
    if content is None:
        content = comment_content(r.html, r.text, _attachments(r.attachments), rules)
    if content and r.visibility != "public":
        content = f"{rules.private_notes.label}\n\n{content}"
    return ImportRow(
        source_item_id=r.source_id,
        timestamp=datetime.fromisoformat(r.ts),
        title=_one_line(r.ticket_subject) or _one_line(r.item_subject) or rules.untitled.format(ticket=r.conversation_id or r.source_id),
        body=content,
        source=rules.source,
        customer_email=_email(r.primary_email, r.envelope),
        customer_name=_one_line(r.name) or None,
        customer_phone=_first_phone(r.phones),
        tags=_tags(r.tags),
    )


def _rows(conn: Connection, dialect: str, plan: _Plan, rules: ImportRules, skips: _Skips,
          outcomes: _Outcomes, renderer: bodies.Renderer) -> Iterator[ImportRow]:
    """Pass 2: the selection's rows in (ts, id) order, bodies rendered by `renderer`; skips
    recorded (the writer records its rejects)."""

    def kept() -> Iterator[Any]:
        for r in conn.execute(_selection(plan, dialect, full=True)):
            rule = skips.rule(r) or (EMPTY_CONVERSATION if r.conversation_id in plan.empty_tickets else None)
            if rule:
                outcomes.skipped.append((r.source_id, rule))
                outcomes.by_rule[rule] += 1
            else:
                yield r

    for chunk, contents in renderer.render(bodies.chunked(kept()), lambda r: (r.html, r.text, _attachments(r.attachments))):
        for r, content in zip(chunk, contents, strict=True):
            yield _import_row(r, rules, content)
    if outcomes.by_rule != plan.skipped:  # one snapshot: only a bug gets here (the writer then discards)
        raise RuntimeError(f"range {plan.label}: pass 2 skipped {dict(outcomes.by_rule)}, pass 1 {dict(plan.skipped)}")


@contextmanager
def _snapshot(db: StagingDatabase) -> Iterator[Connection]:
    """One read transaction that sees one state of staging throughout (both passes)."""
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


# -- recording -----------------------------------------------------------------------------------
def _indexed(path: Path) -> Iterator[tuple[str, str, int, int]]:
    """(item id, file, first data row, parts) of each item in the writer's index.csv."""
    types = {"source_item_id": pa.string(), "file": pa.string(), "row": pa.int64(), "part": pa.int64(), "parts": pa.int64()}
    reader = pa_csv.open_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
    for batch in reader:
        columns = batch.to_pydict()
        for item_id, file, row, part, parts in zip(*(columns[k] for k in types), strict=True):
            if part == 1:
                yield item_id, file, row, parts


def _record(db: StagingDatabase, folder: Path, label: str, outcomes: _Outcomes) -> int:
    """Replace the range's imported_items rows by this run's outcomes; returns the items written."""
    stamp, written = now_text(), 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal written
        base = {"import_range": label, "written_at": stamp}
        for item_id, file, row, parts in _indexed(folder / INDEX_FILE):
            written += 1
            yield {**base, "item_id": item_id, "outcome": ROW, "file_name": file, "row_number": row, "parts": parts, "reason": None}
        for n, (item_id, reason) in enumerate(outcomes.rejected, 1):
            yield {**base, "item_id": item_id, "outcome": REJECTED, "file_name": REJECTED_FILE, "row_number": n, "parts": None, "reason": reason}
        for item_id, rule in outcomes.skipped:
            yield {**base, "item_id": item_id, "outcome": SKIPPED, "file_name": None, "row_number": None, "parts": None, "reason": rule}

    with db.begin() as conn:
        conn.execute(imported_items.delete().where(_m.import_range == label))
        db.bulk_upsert(conn, imported_items, rows())
    return written


# -- the range -----------------------------------------------------------------------------------
@dataclass
class RangeResult:
    """What `write_range` wrote and counted (`summary()` for Dagster metadata)."""

    label: str
    first_day: date
    last_day: date
    folder: Path
    rules_version: str
    items: int  # staged items the range selected (late arrivals included)
    late_arrivals: int
    skipped_by_rule: dict[str, int]
    rows_in: int  # rows handed to the writer (items not skipped)
    written: int  # items written as import rows
    rows_written: int  # data rows in the batch files (continuation rows included)
    continuation_rows: int
    rejected_by_reason: dict[str, int]
    titles_cut: int
    bodies_split: int
    files: list[ImportFile]  # the batches, then rejected.csv, index.csv and manifest.json (rows 0): name, data rows, sha256
    import_files: ImportFiles  # the writer's own result (its manifest())

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_rule.values())

    def summary(self) -> dict[str, Any]:
        return {
            "range": self.label, "rules_version": self.rules_version, "items": self.items,
            "late_arrivals": self.late_arrivals, "rows_in": self.rows_in, "written": self.written,
            "rows_written": self.rows_written, "continuation_rows": self.continuation_rows,
            "rejected": self.rejected, "rejected_by_reason": self.rejected_by_reason,
            "skipped": self.skipped, "skipped_by_rule": self.skipped_by_rule,
            "titles_cut": self.titles_cut, "bodies_split": self.bodies_split,
            "files": [{"name": f.name, "rows": f.rows, "sha256": f.sha256} for f in self.files],
        }


def write_range(
    db: StagingDatabase,
    folder: str | Path,
    lo: date,
    hi: date,
    rules: ImportRules | None = None,
    config: ImportFileConfig | None = None,
    in_gladly: frozenset[str] = frozenset(),
    render_workers: int = 1,
) -> RangeResult:
    """Write the import files of the days [lo, hi) (UTC; dates, or datetimes at UTC midnight) into
    `folder` (the range's own folder) from the staged contract of `db`, and record every selected
    item's outcome in imported_items (see the module docstring for what a range holds). Items in
    `in_gladly` (sent through the API path) are skipped under IN_GLADLY_BY_API. Bodies are
    rendered in `render_workers` processes (0: one per CPU) when the range has at least
    `bodies.MIN_PARALLEL` rows to render, else in this one; the files are the same either way."""
    first_day, end = _day(lo, "lo"), _day(hi, "hi")
    if end <= first_day:
        raise ValueError(f"empty range: hi ({end}) is not after lo ({first_day})")
    last_day, folder = end - timedelta(days=1), Path(folder)
    rules = rules or load_import_rules()
    label = range_label(first_day, last_day)
    skips, outcomes = _Skips(rules, frozenset(in_gladly)), _Outcomes()
    with exclusive(db, IMPORT_LEASE, f"{label}:{uuid.uuid4().hex}", LEASE_TTL_SECONDS):
        with _snapshot(db) as conn:
            plan = _Plan(label, _midnight(first_day), _midnight(end), _late_spans(conn, label, first_day))
            _plan(conn, db.dialect, plan, rules, skips)
            to_render = plan.items - plan.skipped.total()
            workers = bodies.render_workers(render_workers) if to_render >= bodies.MIN_PARALLEL else 1
            with bodies.Renderer(_heading(rules), workers) as renderer:
                files = write_import_files(_rows(conn, db.dialect, plan, rules, skips, outcomes, renderer), folder,
                                           first_day, last_day, source_counts=plan.source_counts(), config=config)
        outcomes.rejected = files.rejected_items
        written = _record(db, folder, label, outcomes)
    if written != files.rows_written - files.continuation_rows:
        raise RuntimeError(f"range {label}: index.csv holds {written} items, the writer counted "
                           f"{files.rows_written - files.continuation_rows}")
    manifest = folder / MANIFEST_FILE
    listed = [*files.files, files.rejected, files.index,
              ImportFile(MANIFEST_FILE, 0, hashlib.sha256(manifest.read_bytes()).hexdigest())]
    return RangeResult(
        label=label, first_day=first_day, last_day=last_day, folder=folder, rules_version=rules.version,
        items=plan.items, late_arrivals=plan.late_arrivals, skipped_by_rule=dict(sorted(plan.skipped.items())),
        rows_in=files.rows_in, written=written, rows_written=files.rows_written, continuation_rows=files.continuation_rows,
        rejected_by_reason=dict(sorted(files.rejected_by_reason.items())), titles_cut=files.titles_cut,
        bodies_split=files.bodies_split, files=[f for f in listed if f is not None], import_files=files,
    )
