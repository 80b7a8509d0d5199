"""Stage an archived Zendesk delivery (archive.py) into the canonical contract's tables. No
Dagster import.

Users become `stg_customers` (end users, and any user a ticket names as requester) and
`stg_agents` (agents and admins), tickets `stg_conversations`, comments `stg_conversation_items`
(only those created inside `window` when one is given), all through `canonical.py`. Comments come
from the ticket line (`comments`) or, when the line has none, from the delivery's archived
`comments.jsonl`; staging never calls the API.

Two passes over the delivery's files: the first reads the users' roles and the requesters (a
comment's author type needs its author's role; an export ZIP lists tickets before users), the
second stages. Each archived file is staged in one transaction, in bulk batches: a crash leaves it
staged whole or not at all, and the same delivery staged again changes nothing (upserts by id).
Versions: a ticket or user is written only when its `updated_at` is not older than the one staged
(a later delivery's newer version wins, an older delivery staged after it changes nothing; the
items of an older ticket version are only added where missing). Users' staged versions are kept
in `zendesk_user_versions` (the contract's customer and agent tables have no updated_at).

Nothing is dropped silently: a line export.py could not read (`QuarantinedLine`), a record the
contract cannot hold (`RecordError` from canonical.py), a value too wide for its column, a
comments line that is not a comment, a file refused when archived or when read — each is a row of
`quarantine` (job_id = delivery id, file, line, a reason naming the record, raw text capped by
`lib/jsonl.storable_text`). A file whose reading breaks off part way (a truncated .gz) is staged
not at all: its rows are rolled back and the refusal quarantined. `StageCounts` says where every
line went.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from migration_pipeline.lib.allocations import fewer_collections
from migration_pipeline.lib.jsonl import RAW_TEXT_LIMIT, JsonLine, read_jsonl, storable_text
from migration_pipeline.lib.staging.db import (
    BULK_BATCH,
    StagingDatabase,
    agent_columns,
    agents,
    conversation_columns,
    conversation_items,
    conversations,
    customer_columns,
    customers,
    item_columns,
    now_text,
    utc_text,
)
from migration_pipeline.lib.staging.widths import column_widths, too_wide
from migration_pipeline.vendors.zendesk import canonical
from migration_pipeline.vendors.zendesk.archive import COMMENTS_FILE, ZendeskDelivery
from migration_pipeline.vendors.zendesk.export import (
    ExportRecord,
    QuarantinedLine,
    RefusedFile,
    read_export_file,
    read_export_objects,
)
from migration_pipeline.vendors.zendesk.records import (
    RecordError,
    ZendeskComment,
    ZendeskOrganization,
    ZendeskTicket,
    ZendeskUser,
    parse_record,
)

_log = logging.getLogger(__name__)

BATCH = BULK_BATCH
BATCH_BYTES = 16 * 1024 * 1024  # also flush on raw size: a run of huge tickets stays bounded
REASON_LIMIT = 2000
FILE_NAME_LIMIT = 128  # the staging columns' width (quarantine.file_name, stg_conversation_items.file_name)
# Zendesk staging transactions on PostgreSQL take this advisory lock, so the version check and the
# write that follows it are never interleaved with another delivery's (SQLite: BEGIN IMMEDIATE).
PG_LOCK = 7270515

# What each delivery held when it was last staged whole: its fingerprint (the archived files' and
# comments' sha256) and the span of its comments' created_at. A later window that the span does not
# reach re-reads nothing of it (its users and tickets are staged, none of its comments belong to the
# window): a daily delta run reads only the new incremental delivery, not the whole export again.
staged_deliveries = sa.Table(
    "zendesk_staged_deliveries",
    sa.MetaData(),
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("first_comment_at", sa.String(27)),  # None: the delivery holds no comment
    sa.Column("last_comment_at", sa.String(27)),
    sa.Column("lines", sa.Integer, nullable=False),  # lines read, for the quarantine rate
    sa.Column("staged_at", sa.String(27), nullable=False),
)

user_versions = sa.Table(
    "zendesk_user_versions",
    sa.MetaData(),
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("updated_at", sa.String(27)),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("staged_at", sa.String(27), nullable=False),
)


class CommentsNotArchived(Exception):
    """A ticket line carries no comments and the delivery has no archived comments yet."""


@dataclass
class StageCounts:
    lines: int = 0  # lines read: the delivery's files and its comments.jsonl
    customers: int = 0
    agents: int = 0
    conversations: int = 0
    items: int = 0
    quarantined: int = 0  # quarantine rows: bad lines, records, refused files
    skipped_outside_window: int = 0  # comments created outside the window
    stale: int = 0  # ticket or user versions older than the staged one, not applied
    ignored: int = 0  # organizations: read, the contract has no place for them
    deliveries_skipped: int = 0  # staged before, unchanged, and no comment of theirs in the window

    def add(self, other: StageCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def staged(self) -> dict[str, int]:
        return {"customers": self.customers, "agents": self.agents, "conversations": self.conversations, "items": self.items}


@fewer_collections()
def stage_delivery(
    db: StagingDatabase, delivery: ZendeskDelivery, window: tuple[datetime, datetime] | None = None
) -> StageCounts:
    """Stage every file of `delivery` (see the module docstring); the caller has made the schema.
    Raises `CommentsNotArchived` when a ticket has no comments to stage from (call
    `ZendeskArchive.archive_comments` first). A delivery staged before, unchanged since, whose
    comments all lie outside `window`, is not read again (`deliveries_skipped`)."""
    with db.begin() as conn:
        user_versions.create(conn, checkfirst=True)
        staged_deliveries.create(conn, checkfirst=True)
    fingerprint = delivery_fingerprint(delivery)
    if window is not None and _nothing_for(db, delivery.delivery_id, fingerprint, window):
        return StageCounts(deliveries_skipped=1)
    roles, requesters = _roles(db, delivery)
    total = StageCounts()
    comments = _ArchivedComments(delivery.comments_path)
    stage = _Stage(db, delivery, window, roles, requesters, comments)
    with db.begin() as conn:
        stage.refused_when_archived(conn, total)
    for name in sorted(delivery.files):
        total.add(stage.file(name))
    with db.begin() as conn:
        total.add(stage.rest_of_comments(conn))
        db.upsert(conn, staged_deliveries, [{
            "delivery_id": delivery.delivery_id, "fingerprint": fingerprint, "first_comment_at": stage.first_comment,
            "last_comment_at": stage.last_comment, "lines": total.lines, "staged_at": now_text()}])
    _log.info("staged delivery %s: %s", delivery.delivery_id, total)
    return total


def delivery_fingerprint(delivery: ZendeskDelivery) -> str:
    """sha256 over the sha256 of every archived file and of the fetched comments: it changes when
    the delivery does (comments fetched later, a re-archived drop)."""
    facts = {"files": {n: f.get("sha256") for n, f in sorted(delivery.files.items())},
             "comments": (delivery.comments or {}).get("sha256")}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def deliveries_for(db: StagingDatabase, window: tuple[datetime, datetime]) -> dict[str, int]:
    """Delivery id -> lines read, of every staged delivery with a comment in `window`."""
    d = staged_deliveries.c
    with db.engine.connect() as conn:
        if not sa.inspect(conn).has_table(staged_deliveries.name):
            return {}
        return dict(conn.execute(sa.select(d.delivery_id, d.lines).where(_reaches(window))).all())


def _nothing_for(db: StagingDatabase, delivery_id: str, fingerprint: str, window: tuple[datetime, datetime]) -> bool:
    """Whether the delivery, as it is, was staged whole before and none of its comments is in `window`."""
    d = staged_deliveries.c
    with db.engine.connect() as conn:
        seen = conn.execute(sa.select(d.fingerprint, _reaches(window)).where(d.delivery_id == delivery_id)).first()
    return seen is not None and seen[0] == fingerprint and not seen[1]


def _reaches(window: tuple[datetime, datetime]) -> sa.ColumnElement[bool]:
    """SQL: the staged delivery has a comment in `window` (null, so false, when it holds none)."""
    d = staged_deliveries.c
    return sa.and_(d.first_comment_at < utc_text(window[1]), d.last_comment_at >= utc_text(window[0]))


def _roles(db: StagingDatabase, delivery: ZendeskDelivery) -> tuple[dict[int, str], set[int]]:
    """User id -> Zendesk role (the delivery's users, and the agents staged before), and the ids
    its tickets name as requesters."""
    roles: dict[int, str] = {}
    with db.engine.connect() as conn:
        for (source_id,) in conn.execute(sa.select(agents.c.source_id).where(agents.c.source_system == canonical.SYSTEM)):
            if source_id.isdigit():
                roles[int(source_id)] = "agent"
    requesters: set[int] = set()
    for name in sorted(delivery.files):
        # untyped: only two fields are wanted, and the staging pass checks every record anyway
        for entry in read_export_objects(delivery.file_path(name)):
            obj = entry.obj
            if entry.kind == "users" and _is_id(obj.get("id")):
                role = obj.get("role")
                roles[obj["id"]] = role if isinstance(role, str) else ""
            elif entry.kind == "tickets" and _is_id(obj.get("requester_id")):
                requesters.add(obj["requester_id"])
    return roles, requesters


class _Rollback(Exception):
    """A file broke off part way: undo what was staged of it."""

    def __init__(self, refused: RefusedFile, lines: int):
        self.refused, self.lines = refused, lines


class _Stage:
    def __init__(self, db: StagingDatabase, delivery: ZendeskDelivery, window: tuple[datetime, datetime] | None,
                 roles: Mapping[int, str], requesters: set[int], comments: _ArchivedComments):
        self.db, self.delivery, self.job = db, delivery, delivery.delivery_id
        self.window = (utc_text(window[0]), utc_text(window[1])) if window else None
        self.roles, self.requesters, self.comments = roles, requesters, comments
        self.staged_at = now_text()
        self.first_comment: str | None = None  # the span of every comment's created_at, window or not
        self.last_comment: str | None = None

    def file(self, name: str) -> StageCounts:
        counts = StageCounts()
        try:
            with self.db.begin() as conn:
                self._lock(conn)
                writer = _Writer(self, conn, counts)
                read_from: dict[str, int] = {}
                for entry in read_export_file(self.delivery.file_path(name)):
                    if isinstance(entry, RefusedFile):
                        if read_from.get(entry.file):
                            raise _Rollback(entry, read_from[entry.file])
                        writer.quarantine(entry.file, 0, f"file refused: {entry.file} {entry.reason}", "")
                        continue
                    counts.lines += 1
                    read_from[entry.file] = read_from.get(entry.file, 0) + 1
                    if isinstance(entry, QuarantinedLine):
                        writer.quarantine(entry.file, entry.line_no, entry.reason, entry.raw_text)
                    else:
                        writer.record(entry)
                writer.flush()
        except _Rollback as broken:
            counts = StageCounts()
            with self.db.begin() as conn:
                writer = _Writer(self, conn, counts)
                writer.quarantine(name, 0, f"file refused: {broken.refused.file} {broken.refused.reason}; nothing of {name} "
                                  f"is staged ({broken.lines} lines read before the break were rolled back)", "")
                writer.flush()
        return counts

    def refused_when_archived(self, conn: Connection, counts: StageCounts) -> None:
        writer = _Writer(self, conn, counts)
        for name, reason in self.delivery.refused:
            writer.quarantine(name, 0, f"file refused when archived: {name} {reason}", "")
        writer.flush()

    def rest_of_comments(self, conn: Connection) -> StageCounts:
        """Quarantine the comments.jsonl lines no ticket of the delivery claimed (or that were not
        comments at all), so every line of it is accounted for."""
        counts = StageCounts()
        writer = _Writer(self, conn, counts)
        for line_no, reason, raw in self.comments.leftovers():
            writer.quarantine(COMMENTS_FILE, line_no, reason, raw)
        counts.lines += self.comments.lines
        writer.flush()
        return counts

    def _lock(self, conn: Connection) -> None:
        if self.db.dialect == "postgresql":
            conn.execute(sa.text("select pg_advisory_xact_lock(:key)"), {"key": PG_LOCK})


class _Writer:
    """One file's rows, buffered and written in batches inside the file's transaction."""

    def __init__(self, stage: _Stage, conn: Connection, counts: StageCounts):
        self.s, self.conn, self.counts = stage, conn, counts
        self.tickets: list[tuple[ZendeskTicket, str, int, dict[str, Any] | None]] = []
        self.users: list[tuple[ZendeskUser, str, int]] = []
        self.bad: dict[tuple[str, int], tuple[list[str], list[str]]] = {}
        self.size = 0

    # -- dispatch ----------------------------------------------------------------------------
    def record(self, entry: ExportRecord) -> None:
        record = entry.record
        if isinstance(record, ZendeskTicket):
            self.tickets.append((record, entry.file, entry.line_no, entry.obj))
        elif isinstance(record, ZendeskUser):
            self.users.append((record, entry.file, entry.line_no))
        elif isinstance(record, ZendeskOrganization):
            self.counts.ignored += 1
            return
        self.size += 1024 + sum(len(c.html_body or "") + len(c.plain_body or "") for c in getattr(record, "comments", None) or ())
        if len(self.tickets) + len(self.users) >= BATCH or self.size >= BATCH_BYTES:
            self.flush()

    def quarantine(self, file: str, line_no: int, reason: str, raw: str) -> None:
        reasons, raws = self.bad.setdefault((_fit(file), line_no), ([], []))
        reasons.append(reason)
        if raw:
            raws.append(raw)

    def flush(self) -> None:
        if self.users:
            self._users(self.users)
        if self.tickets:
            self._tickets(self.tickets)
        if self.bad:
            rows = [
                {"job_id": self.s.job, "file_name": file, "line_no": line_no,
                 "reason": storable_text("; ".join(reasons), REASON_LIMIT),
                 "raw_text": storable_text("\n".join(raws), RAW_TEXT_LIMIT)}
                for (file, line_no), (reasons, raws) in self.bad.items()
            ]
            self.counts.quarantined += self.s.db.quarantine(self.conn, rows)
        self.tickets, self.users, self.bad, self.size = [], [], {}, 0

    # -- users -------------------------------------------------------------------------------
    def _users(self, users: list[tuple[ZendeskUser, str, int]]) -> None:
        stored = self._stored(user_versions, [str(u.id) for u, _, _ in users])
        customer_rows, agent_rows, version_rows = [], [], []
        for user, file, line_no in sorted(users, key=lambda u: _version(u[0].updated_at)):
            version = _version(user.updated_at)
            if version < stored.get(str(user.id), ""):
                self.counts.stale += 1
                continue
            stamp = {"staged_at": self.s.staged_at}
            if canonical.is_agent(user):
                row = {**agent_columns(canonical.agent(user)), **stamp}
                if problem := too_wide(row, column_widths(agents)):
                    self.quarantine(file, line_no, f"user {user.id}: {problem}", _raw(user))
                    continue
                agent_rows.append(row)
            if not canonical.is_agent(user) or user.id in self.s.requesters:
                row = {**customer_columns(canonical.customer(user)), "job_id": self.s.job, **stamp}
                if problem := too_wide(row, column_widths(customers)):
                    self.quarantine(file, line_no, f"user {user.id}: {problem}", _raw(user))
                    continue
                customer_rows.append(row)
            version_rows.append({"source_id": str(user.id), "updated_at": version or None, "job_id": self.s.job, **stamp})
        self.counts.customers += self.s.db.bulk_upsert(self.conn, customers, customer_rows)
        self.counts.agents += self.s.db.bulk_upsert(self.conn, agents, agent_rows)
        self.s.db.bulk_upsert(self.conn, user_versions, version_rows)

    # -- tickets -----------------------------------------------------------------------------
    def _tickets(self, tickets: list[tuple[ZendeskTicket, str, int, dict[str, Any] | None]]) -> None:
        stored = self._stored(conversations, [str(t[0].id) for t in tickets])
        conversation_rows: list[dict[str, Any]] = []
        fresh_items: list[dict[str, Any]] = []
        missing_items: list[dict[str, Any]] = []
        for ticket, file, line_no, obj in sorted(tickets, key=lambda t: _version(t[0].updated_at)):
            mapped = self._ticket(ticket, file, line_no, obj)
            if mapped is None:
                continue
            row, items = mapped
            if row["updated_at"] is not None and row["updated_at"] < stored.get(row["source_id"], "") or (
                row["updated_at"] is None and stored.get(row["source_id"])
            ):
                self.counts.stale += 1
                missing_items.extend(items)  # an older version: only what is not staged yet
                continue
            conversation_rows.append(row)
            fresh_items.extend(items)
        self.counts.conversations += self.s.db.bulk_upsert(self.conn, conversations, conversation_rows)
        self.counts.items += self.s.db.bulk_upsert(self.conn, conversation_items, fresh_items)
        self.counts.items += self.s.db.bulk_upsert(self.conn, conversation_items, missing_items, update=False)

    def _ticket(self, ticket: ZendeskTicket, file: str, line_no: int,
                obj: dict[str, Any] | None) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The ticket's conversation row and item rows, or None when the ticket is quarantined
        (its comments with it: items of a conversation that is not staged would be orphans).
        `obj` is the ticket's parsed line (payloads are taken from it)."""
        comments = self._comments_of(ticket, file, line_no, obj)
        problems: list[str] = []
        row = None
        try:
            row = {**conversation_columns(canonical.conversation(ticket, obj)), "job_id": self.s.job,
                   "staged_at": self.s.staged_at}
            if problem := too_wide(row, column_widths(conversations)):
                problems.append(f"ticket {ticket.id}: {problem}")
        except RecordError as exc:
            problems.append(str(exc))
        if problems:
            self.quarantine(file, line_no, f"{'; '.join(problems)}; the ticket and its {len(comments)} comments are not staged",
                            _raw(ticket))
            return None
        items = []
        for comment, raw, (c_file, c_line) in comments:
            item = self._item(ticket, comment, raw, c_file, c_line)
            if item is not None:
                items.append(item)
        assert row is not None
        return row, items

    def _item(self, ticket: ZendeskTicket, comment: ZendeskComment, raw: dict[str, Any] | None, file: str,
              line_no: int) -> dict[str, Any] | None:
        try:
            row = {**item_columns(canonical.item(ticket, comment, self.s.roles, raw)), "job_id": self.s.job,
                   "file_name": _fit(file), "line_no": line_no, "staged_at": self.s.staged_at}
        except RecordError as exc:
            self.quarantine(file, line_no, str(exc), _raw(comment))
            return None
        if problem := too_wide(row, column_widths(conversation_items)):
            self.quarantine(file, line_no, f"ticket {ticket.id} comment {comment.id}: {problem}", _raw(comment))
            return None
        ts, stage = row["ts"], self.s
        if stage.first_comment is None or ts < stage.first_comment:
            stage.first_comment = ts
        if stage.last_comment is None or ts > stage.last_comment:
            stage.last_comment = ts
        window = self.s.window
        if window is not None and not window[0] <= ts < window[1]:
            self.counts.skipped_outside_window += 1
            return None
        return row

    def _comments_of(self, ticket: ZendeskTicket, file: str, line_no: int, obj: dict[str, Any] | None
                     ) -> list[tuple[ZendeskComment, dict[str, Any] | None, tuple[str, int]]]:
        """The ticket's comments, each with its parsed JSON and where it was read (the ticket's
        line when embedded, its own line of comments.jsonl when fetched); bad comments lines are
        quarantined here."""
        if ticket.comments is not None:
            raws = (obj or {}).get("comments")
            if not isinstance(raws, list) or len(raws) != len(ticket.comments):
                raws = [None] * len(ticket.comments)
            return [(c, raw, (file, line_no)) for c, raw in zip(ticket.comments, raws, strict=True)]
        if not self.s.comments.present:
            raise CommentsNotArchived(
                f"delivery {self.s.job}: ticket {ticket.id} ({file} line {line_no}) carries no comments and the "
                f"delivery has none archived; fetch them first (ZendeskArchive.archive_comments)"
            )
        found = self.s.comments.take(ticket.id)
        if found is None:
            self.quarantine(file, line_no, f"ticket {ticket.id}: its comments are not in the delivery's {COMMENTS_FILE} "
                            f"(archived before the ticket was listed?); the ticket is staged without them", "")
            return []
        out = []
        for c_line, c_obj, raw in found:
            try:
                out.append((parse_record(ZendeskComment, c_obj, f"ticket {ticket.id} comment {c_obj.get('id')!r}"), c_obj,
                            (COMMENTS_FILE, c_line)))
            except RecordError as exc:
                self.quarantine(COMMENTS_FILE, c_line, str(exc), raw)
        return out

    def _stored(self, table: sa.Table, ids: list[str]) -> dict[str, str]:
        """The staged `updated_at` of each of `ids` that is staged ("" when it has none)."""
        found: dict[str, str] = {}
        wanted = sorted(set(ids))
        for start in range(0, len(wanted), 1000):
            query = sa.select(table.c.source_id, table.c.updated_at).where(table.c.source_id.in_(wanted[start:start + 1000]))
            found.update((source_id, updated or "") for source_id, updated in self.conn.execute(query))
        return found


class _ArchivedComments:
    """The delivery's comments.jsonl, read forward as tickets ask for their comments (they are
    archived in the order staging reads the tickets, so nothing waits in memory in the usual
    case; a ticket asked out of order finds its comments kept aside)."""

    def __init__(self, path: Path | None):
        self.present = path is not None
        self._lines: Iterator[JsonLine] = read_jsonl(path) if path is not None else iter(())
        self._open: dict[int, list[tuple[int, dict[str, Any], str]]] = {}  # ticket -> comment lines read so far
        self._done: dict[int, list[tuple[int, dict[str, Any], str]]] = {}  # tickets whose `fetched` line is read
        self._taken: set[int] = set()
        self._bad: list[tuple[int, str, str]] = []
        self.lines = 0

    def take(self, ticket_id: int) -> list[tuple[int, dict[str, Any], str]] | None:
        """(line, comment object, raw line) of each archived comment of the ticket; [] when its
        comments were taken before (the same ticket twice); None when they are not archived."""
        if ticket_id in self._done:
            self._taken.add(ticket_id)
            return self._done.pop(ticket_id)
        if ticket_id in self._taken:
            return []
        for line in self._lines:
            self.lines += 1
            obj = line.obj
            owner = obj.get("ticket_id") if obj is not None else None
            if obj is None or not isinstance(owner, int) or isinstance(owner, bool):
                self._bad.append((line.line_no, line.error or f"{COMMENTS_FILE}: a line without a ticket_id", line.raw))
            elif "comment" in obj:
                comment = obj["comment"]
                if isinstance(comment, dict):
                    self._open.setdefault(owner, []).append((line.line_no, comment, line.raw))
                else:
                    self._bad.append((line.line_no, f"ticket {owner}: its comment is not a JSON object", line.raw))
            elif "fetched" in obj:
                self._done[owner] = self._open.pop(owner, [])
                if owner == ticket_id:
                    self._taken.add(ticket_id)
                    return self._done.pop(ticket_id)
            else:
                self._bad.append((line.line_no, f"ticket {owner}: a line that is neither a comment nor a fetched mark", line.raw))
        return None

    def leftovers(self) -> Iterator[tuple[int, str, str]]:
        """Every line no ticket took (read to the end first), with its reason."""
        self.take(-1)  # reads the rest
        yield from self._bad
        for owner, found in (*self._done.items(), *self._open.items()):
            reason = f"ticket {owner}: no ticket of the delivery has this id, so its comment is not staged"
            for line_no, _obj, raw in found:
                yield line_no, reason, raw
        self._done, self._open, self._bad = {}, {}, []


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _version(value: datetime | None) -> str:
    return utc_text(value) if value is not None and value.tzinfo is not None else ""


def _fit(name: str) -> str:
    return name if len(name) <= FILE_NAME_LIMIT else name[: FILE_NAME_LIMIT - 1] + "…"


def _raw(record: Any) -> str:
    """A mapped record's JSON (the ticket without its comments), for the quarantine."""
    exclude = {"comments"} if isinstance(record, ZendeskTicket) else None
    return json.dumps(record.model_dump(mode="json", exclude_unset=True, exclude=exclude), ensure_ascii=False)
