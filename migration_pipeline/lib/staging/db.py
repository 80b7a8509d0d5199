"""The staging database: one URL, SQLite (embedded default) or PostgreSQL, same tables on both.

Timestamps are stored as fixed-width UTC text (`2026-03-01T09:30:00.000000Z`), which sorts and
compares the same on both engines, so the SQL in `dbt_like_sql/` runs unchanged on either.
Rows are upserted by source id, so staging the same file twice changes nothing. No Dagster import.
"""

from __future__ import annotations

import functools
import json
import operator
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from migration_pipeline.contract import Agent, Conversation, Customer, Item
from migration_pipeline.lib.jsonl import loads
from migration_pipeline.lib.staging.adoption import adopt_pg_tables, adopt_sqlite_file, default_heir, sqlite_path
from migration_pipeline.lib.splitting import encode_change
from migration_pipeline.lib.timestamps import utc_text  # noqa: F401  (the staging encoding; re-exported)

_log = logging.getLogger(__name__)

metadata = sa.MetaData()

customers = sa.Table(
    "stg_customers",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("source_system", sa.String(32)),  # contract: every id is unique within its system
    sa.Column("name", sa.Text),
    sa.Column("primary_email", sa.Text),
    sa.Column("emails", sa.JSON, nullable=False),
    sa.Column("phones", sa.JSON, nullable=False),
    sa.Column("external_ids", sa.JSON, nullable=False),
    sa.Column("custom_attributes", sa.JSON, nullable=False),
    sa.Column("merged_into", sa.String(64)),
    sa.Column("job_id", sa.String(64)),
    sa.Column("staged_at", sa.String(27), nullable=False),
)

agents = sa.Table(
    "stg_agents",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("source_system", sa.String(32)),
    sa.Column("name", sa.Text),
    sa.Column("email", sa.Text),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("staged_at", sa.String(27), nullable=False),
)

topics = sa.Table(
    "stg_topics",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("source_system", sa.String(32)),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False),
    sa.Column("parent_id", sa.String(64)),
    sa.Column("staged_at", sa.String(27), nullable=False),
)

# contract.Conversation: the tickets of a ticket-shaped source (Zendesk ...), passed through.
conversations = sa.Table(
    "stg_conversations",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.String(27), nullable=False, index=True),
    sa.Column("updated_at", sa.String(27)),
    sa.Column("subject", sa.Text),
    sa.Column("status", sa.String(32)),
    sa.Column("channel", sa.String(16)),
    sa.Column("assignee_id", sa.String(64)),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("envelope", sa.JSON),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("job_id", sa.String(64)),
    sa.Column("staged_at", sa.String(27), nullable=False),
)

# contract.Item, one row per item (item_columns below). Targets read these columns, never `payload`.
conversation_items = sa.Table(
    "stg_conversation_items",
    metadata,
    sa.Column("source_id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),
    sa.Column("conversation_id", sa.String(64), index=True),
    sa.Column("ts", sa.String(27), nullable=False),  # indexed by TIMELINE_INDEX (below)
    sa.Column("kind", sa.String(64), nullable=False),  # contract.ItemKind: message, note, call, ...
    sa.Column("author_type", sa.String(16), nullable=False),
    sa.Column("author_id", sa.String(64)),
    sa.Column("channel", sa.String(16)),
    sa.Column("subject", sa.Text),
    sa.Column("text", sa.Text),
    sa.Column("html", sa.Text),
    sa.Column("attachments", sa.JSON, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("file_name", sa.String(128), nullable=False),
    sa.Column("line_no", sa.Integer, nullable=False),
    sa.Column("staged_at", sa.String(27), nullable=False),
    # What a status or topic change changed, as the splitting rules read it (core.splitting.
    # encode_change), so the splitter never parses payloads. Null for every other kind.
    sa.Column("split_change", sa.Text),
    # The rest of the contract (nullable only so that a database made before it can be upgraded
    # in place: create_schema has the source fill them once from the stored payloads; see
    # register_column_upgrade).
    sa.Column("source_system", sa.String(32)),
    sa.Column("source_kind", sa.String(64)),  # the source's own type, verbatim (EMAIL, PHONE_CALL ...)
    sa.Column("visibility", sa.String(8)),  # public / private
    sa.Column("envelope", sa.JSON),  # contract.Envelope.as_json(): from / to / cc / bcc
    sa.Column("transcript_expected", sa.Boolean),
)


def customer_columns(c: Customer) -> dict[str, Any]:
    """The staged columns of a contract customer (`merged_into` only when the source said so: a
    re-staged export line must not clear a merge found later)."""
    row = {
        "source_id": c.source_id,
        "source_system": c.source_system,
        "name": c.name,
        "primary_email": c.primary_email,
        "emails": list(c.emails),
        "phones": list(c.phones),
        "external_ids": c.external_ids,
        "custom_attributes": c.custom_attributes,
    }
    if c.merged_into is not None:
        row["merged_into"] = c.merged_into
    return row


def agent_columns(a: Agent) -> dict[str, Any]:
    return {"source_id": a.source_id, "source_system": a.source_system, "name": a.name, "email": a.email, "active": a.active}


def conversation_columns(c: Conversation) -> dict[str, Any]:
    return {
        "source_id": c.source_id,
        "source_system": c.source_system,
        "customer_id": c.customer_id,
        "created_at": utc_text(c.created_at),
        "updated_at": utc_text(c.updated_at) if c.updated_at else None,
        "subject": c.subject,
        "status": c.status,
        "channel": c.channel,
        "assignee_id": c.assignee_id,
        "tags": list(c.tags),
        "envelope": c.envelope.as_json(),
        "payload": c.payload,
    }


def item_columns(item: Item) -> dict[str, Any]:
    """The staged columns of a contract item (all but the provenance: job, file, line, time)."""
    return {
        "source_id": item.source_id,
        "source_system": item.source_system,
        "customer_id": item.customer_id,
        "conversation_id": item.conversation_id,
        "ts": utc_text(item.timestamp),
        "kind": item.kind,
        "source_kind": item.source_kind,
        "visibility": item.visibility,
        "author_type": item.author_type,
        "author_id": item.author_id,
        "channel": item.channel,
        "subject": item.subject,
        "text": item.text,
        "html": item.html,
        "attachments": [a.__dict__ for a in item.attachments],
        "envelope": item.envelope.as_json(),
        "transcript_expected": item.transcript_expected,
        "payload": item.payload,
        "split_change": encode_change(item.status_change, item.tags_added, item.tags_removed),
    }

# The splitter reads a window's items (a ts range) with exactly these columns: an index holding
# all of them answers it with one range scan and no row lookups (the window is then sorted by
# timeline). PostgreSQL caps an index entry at ~2.7 kB, so there the variable-length change
# stays in the table. Created by create_schema, also on databases made before it existed.
TIMELINE_INDEX = "ix_stg_conversation_items_timeline"
_TIMELINE_COLUMNS = "ts, source_id, conversation_id, customer_id, kind, channel"
TIMELINE_INDEX_COLUMNS = {"sqlite": f"{_TIMELINE_COLUMNS}, split_change", "postgresql": _TIMELINE_COLUMNS}

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("file_name", sa.String(128), primary_key=True),
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw_text", sa.Text, nullable=False),
    sa.Column("quarantined_at", sa.String(27), nullable=False),
)

customer_lookups = sa.Table(
    "customer_lookups",
    metadata,
    sa.Column("customer_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # found / moved / not_found / unusable
    sa.Column("moved_to", sa.String(64)),
    sa.Column("surviving_id", sa.String(64), nullable=False),  # end of the merge chain (or itself)
    sa.Column("profile", sa.JSON),
    sa.Column("fetched_at", sa.String(27), nullable=False),
    sa.Column("detail", sa.Text),  # why an answer was unusable
)

tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("conversation_id", sa.String(128), nullable=False, index=True),
    sa.Column("customer_id", sa.String(64), nullable=False, index=True),  # surviving customer
    sa.Column("first_ts", sa.String(27), nullable=False, index=True),
    sa.Column("last_ts", sa.String(27), nullable=False),
    sa.Column("first_item_id", sa.String(64), nullable=False),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("rule_version", sa.String(32), nullable=False),
    sa.Column("cut_at", sa.String(27), nullable=False),
    # Why the ticket starts where it does, the closed ticket a reopen links back to, and the
    # state the splitting rules read when the next item arrives (lib/splitting.py).
    sa.Column("cut_reason", sa.String(32)),
    sa.Column("previous_ticket_id", sa.String(64)),
    sa.Column("last_channel", sa.String(16)),
    sa.Column("topics", sa.JSON),
    sa.Column("status", sa.String(16)),
    sa.Column("status_ts", sa.String(27)),
)

ticket_items = sa.Table(
    "ticket_items",
    metadata,
    sa.Column("item_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(64), nullable=False, index=True),
    sa.Column("ts", sa.String(27), nullable=False),
)

# The load ledger: one row per target object, written as an intent before the request and
# completed with the target id after it, so a crash between the two is resolved by looking the
# object up on the target (by the source key stamped on it) instead of sending it again.
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("source_key", sa.String(160), primary_key=True),  # core.ledger_keys: ticket:<id>, message:<item id>, ...
    sa.Column("entity_type", sa.String(32), nullable=False, index=True),
    sa.Column("parent_key", sa.String(160), index=True),
    sa.Column("target_id", sa.String(128)),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # intent / done / failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("run_id", sa.String(64)),
    sa.Column("updated_at", sa.String(27), nullable=False),
)

# Leases: which run is loading a ticket (or creating a customer) right now. A second run that
# reaches the same ticket waits for the lease instead of sending too; a crashed run's lease
# expires after its TTL, so a restart takes over.
load_leases = sa.Table(
    "load_leases",
    metadata,
    sa.Column("lease_key", sa.String(160), primary_key=True),
    sa.Column("owner", sa.String(160), nullable=False),
    sa.Column("expires_at", sa.String(27), nullable=False),
)


# Rows per bulk batch: large enough that per-statement cost vanishes, small enough that a batch of
# item rows (bodies up to ~100 kB) stays a few tens of MB.
BULK_BATCH = 5000


def _copy_upsert(conn: Connection, table: sa.Table, rows: list[Mapping[str, Any]], update: bool) -> None:
    """PostgreSQL: COPY one batch into a temp table shaped like `table`, then merge it with
    INSERT ... SELECT ... ON CONFLICT, in the caller's transaction (rows are unique by key)."""
    from psycopg import sql

    names = [c.name for c in table.columns if c.name in rows[0]]
    json_cols = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    keys = [c.name for c in table.primary_key.columns]
    temp = sql.Identifier(f"_bulk_{table.name}")
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    raw = conn.connection.driver_connection  # the psycopg connection, inside SQLAlchemy's transaction
    with raw.cursor() as cur:
        # ON COMMIT DROP: the temp table lives for this transaction only, so a schema change never
        # meets a stale copy on a pooled connection; emptied after every batch.
        cur.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                temp, sql.Identifier(table.name)
            )
        )
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(temp, cols)) as copy:
            for row in rows:
                copy.write_row(
                    [json_text(row[n]) if n in json_cols else row[n] for n in names]
                )
        others = [n for n in names if n not in keys]
        if update and others:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.SQL("{0} = excluded.{0}").format(sql.Identifier(n)) for n in others)
            )
        else:
            action = sql.SQL("DO NOTHING")
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                sql.Identifier(table.name), cols, cols, temp, sql.SQL(", ").join(map(sql.Identifier, keys)), action
            )
        )
        cur.execute(sql.SQL("TRUNCATE {}").format(temp))


def stream_rows(conn: Connection, sql: str, params: Mapping[str, Any], size: int) -> Iterator[list[tuple]]:
    """Rows of a query as plain driver tuples, `size` at a time, through the driver's own
    cursor (server-side on PostgreSQL): for the few queries that read a million rows, where
    SQLAlchemy's per-row Result processing would cost more than the database does."""
    compiled = sa.text(sql).bindparams(**params).compile(dialect=conn.dialect)
    if conn.dialect.paramstyle in ("qmark", "numeric", "format"):
        args: Any = [compiled.params[name] for name in compiled.positiontup or ()]
    else:
        args = compiled.params
    raw = conn.connection.driver_connection
    cursor = raw.cursor(name=f"stream_{uuid.uuid4().hex[:12]}") if conn.dialect.name == "postgresql" else raw.cursor()
    try:
        cursor.execute(compiled.string, args)
        while rows := cursor.fetchmany(size):
            yield rows
    finally:
        cursor.close()


def now_text() -> str:
    return utc_text(datetime.now(UTC))


NAMESPACE_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
SQLITE_SYNCHRONOUS_LEVELS = ("EXTRA", "FULL", "NORMAL", "OFF")  # PRAGMA synchronous values


def namespaced_url(url: str, namespace: str | None) -> str:
    """The URL of a namespace's own tables: on SQLite a file of its own beside the given one
    (`staging.db` -> `staging-zendesk_to_gladly.db`); on PostgreSQL the same database (the
    namespace is a schema, set as the connection's search_path)."""
    if namespace is None or not url.startswith("sqlite") or url in ("sqlite://", "sqlite:///:memory:"):
        return url
    head, _, path = url.partition(":///")
    folder, _, name = path.rpartition("/")
    stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
    return f"{head}:///{folder + '/' if folder else ''}{stem}-{namespace}{dot}{suffix}"


class StagingDatabase:
    """Engine plus the few operations every stage needs (schema, upsert, quarantine).

    `namespace`: a migration pair's own tables (its name), so two pairs never share a staged row,
    a ledger key or a lease: a schema on PostgreSQL, a file of its own on SQLite (namespaced_url).
    None is the default namespace (the public schema, the given file), which no pair uses: tables a
    pair kept there before it had a namespace move to its own on first open (`adoption`)."""

    def __init__(self, url: str, namespace: str | None = None, *, sqlite_synchronous: str = "FULL"):
        """`sqlite_synchronous`: a SQLite database's durability (MIGRATION_SQLITE_SYNCHRONOUS, passed
        in by StagingResource and the CLI); FULL, what production needs, unless told otherwise."""
        if namespace is not None and not NAMESPACE_RE.fullmatch(namespace):
            raise ValueError(f"staging namespace must be lower-case letters, digits and _, got {namespace[:70]!r}")
        if sqlite_synchronous not in SQLITE_SYNCHRONOUS_LEVELS:
            raise ValueError(f"sqlite_synchronous must be EXTRA, FULL, NORMAL or OFF, got {str(sqlite_synchronous)[:20]!r}")
        self.url = url
        self.namespace = namespace
        self._adopts_default = namespace is not None and namespace == default_heir()
        own_url = namespaced_url(url, namespace)
        if self._adopts_default and (legacy := sqlite_path(url)) is not None:
            adopt_sqlite_file(legacy, sqlite_path(own_url), metadata.tables)  # before anything opens it
        self.engine: Engine = _engine(own_url, namespace, sqlite_synchronous)

    def __repr__(self) -> str:
        return f"StagingDatabase({self.engine.url.render_as_string(hide_password=True)})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_schema(self) -> None:
        """Create missing tables; safe when several runs start at once (one creates, the rest wait)."""
        with self.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("select pg_advisory_xact_lock(7270513)"))  # arbitrary, project-wide
                if self.namespace is not None:
                    conn.execute(sa.text(f'create schema if not exists "{self.namespace}"'))
                if self._adopts_default:
                    adopt_pg_tables(conn, conn.info["default_schema"], self.namespace, metadata.tables)
            metadata.create_all(conn)
            _upgrade_added_columns(conn, _add_missing_columns(conn))
            conn.execute(sa.text(
                f"create index if not exists {TIMELINE_INDEX} on stg_conversation_items ({TIMELINE_INDEX_COLUMNS[self.dialect]})"
            ))

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it takes the write lock at BEGIN (IMMEDIATE), so a
        transaction that reads before it writes cannot fail when another process commits in
        between; concurrent writers wait (busy_timeout) instead."""
        with self.engine.connect() as conn:
            conn.info["begin_immediate"] = True
            with conn.begin():
                yield conn

    def upsert(
        self,
        conn: Connection,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        update: bool = True,
        accumulate: Sequence[str] = (),
    ) -> None:
        """Insert rows; on a primary-key conflict update every non-key column (or keep the old row).
        Columns in `accumulate` are added to the stored value instead of replacing it."""
        if not rows:
            return
        columns = tuple(c.name for c in table.columns if c.name in rows[0])
        conn.execute(self._upsert_statement(table, columns, update, tuple(accumulate)), list(rows))

    @functools.lru_cache(maxsize=256)  # noqa: B019 (one per database, a handful of shapes each)
    def _upsert_statement(self, table: sa.Table, columns: tuple[str, ...], update: bool, accumulate: tuple[str, ...]):
        """The upsert of `columns` into `table`, built once per shape: building the statement cost
        more than the ledger's one-row write it serves (a write per request of a load)."""
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)
        keys = [c.name for c in table.primary_key.columns]
        if not update:
            return insert.on_conflict_do_nothing(index_elements=keys)
        set_ = {c: getattr(insert.excluded, c) for c in columns if c not in keys}
        set_.update({c: table.c[c] + getattr(insert.excluded, c) for c in accumulate})
        return insert.on_conflict_do_update(index_elements=keys, set_=set_)

    def bulk_upsert(
        self,
        conn: Connection,
        table: sa.Table,
        rows: Iterable[Mapping[str, Any]],
        *,
        update: bool = True,
        batch_size: int = BULK_BATCH,
    ) -> int:
        """Upsert many rows with each engine's fast path, streamed in batches (bounded memory).

        Same semantics as `upsert`: keyed by the primary key, the last row for a key wins (also
        within one batch), a re-run changes nothing. On PostgreSQL each batch is COPYed into a
        temporary table and merged with one `INSERT ... SELECT ... ON CONFLICT`; on SQLite it is
        one executemany. Every row must carry the same columns. Returns the rows written."""
        written = 0
        batch: dict[Any, Mapping[str, Any]] = {}
        keys = [c.name for c in table.primary_key.columns]
        for row in rows:
            batch[tuple(row[k] for k in keys)] = row
            if len(batch) >= batch_size:
                written += self._flush_bulk(conn, table, list(batch.values()), update)
                batch.clear()
        if batch:
            written += self._flush_bulk(conn, table, list(batch.values()), update)
        return written

    def _flush_bulk(self, conn: Connection, table: sa.Table, rows: list[Mapping[str, Any]], update: bool) -> int:
        if self.dialect == "postgresql":
            _copy_upsert(conn, table, rows, update)
        else:
            # The driver's executemany with values made here: SQLAlchemy's per-row parameter
            # processing cost as much as SQLite's own insert (JSON as on PostgreSQL's COPY path).
            columns = tuple(c.name for c in table.columns if c.name in rows[0])
            fast = self._sqlite_bulk_statement(table, columns, update)
            if fast is None:
                self.upsert(conn, table, rows, update=update)
                return len(rows)
            statement, values_of, json_at = fast
            if json_at:
                params = []
                for row in rows:
                    values = list(values_of(row))
                    for k in json_at:
                        values[k] = json_text(values[k])
                    params.append(tuple(values))
            else:
                params = [values_of(row) for row in rows]
            conn.exec_driver_sql(statement, params)
        return len(rows)

    @functools.lru_cache(maxsize=256)  # noqa: B019 (one per database, a handful of shapes each)
    def _sqlite_bulk_statement(self, table: sa.Table, columns: tuple[str, ...],
                               update: bool) -> tuple[str, Callable[[Mapping[str, Any]], tuple], tuple[int, ...]] | None:
        """The upsert's SQL text, a row's values in its parameters' order, and the positions of
        the JSON columns among them; None when the statement takes other parameters than the row's
        columns (a column default SQLAlchemy fills in), which only SQLAlchemy's own path handles."""
        compiled = self._upsert_statement(table, columns, update, ()).compile(
            dialect=self.engine.dialect, column_keys=list(columns))
        order = tuple(compiled.positiontup or ())
        if len(order) < 2 or sorted(order) != sorted(columns):
            return None  # (itemgetter of one name returns a value, not a tuple)
        json_names = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
        return str(compiled), operator.itemgetter(*order), tuple(k for k, n in enumerate(order) if n in json_names)

    def quarantine(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record bad lines (job, file, line, reason, raw); the same line twice is one row."""
        stamped = [{**r, "quarantined_at": now_text()} for r in rows]
        self.upsert(conn, quarantine, stamped)
        return len(stamped)

    def try_lease(self, key: str, owner: str, ttl_seconds: float) -> bool:
        """Take or renew the lease on `key` for `owner`; False while another owner's lease is live.

        Expiry is computed and compared on the database's clock, never this process's: every run
        shares that one clock, so a machine whose clock is off cannot take a live lease nor hand
        out one that is already expired."""
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(load_leases)
        stmt = insert.values(
            lease_key=key, owner=owner, expires_at=self._db_clock_text(ttl_seconds)
        ).on_conflict_do_update(
            index_elements=["lease_key"],
            set_={"owner": insert.excluded.owner, "expires_at": insert.excluded.expires_at},
            where=sa.or_(load_leases.c.expires_at < self._db_clock_text(), load_leases.c.owner == owner),
        )
        with self.begin() as conn:
            conn.execute(stmt)
            holder = conn.execute(sa.select(load_leases.c.owner).where(load_leases.c.lease_key == key)).scalar()
        return holder == owner

    def _db_clock_text(self, plus_seconds: float = 0.0) -> sa.ColumnElement[str]:
        """The database's current time (+ `plus_seconds`) as SQL, in utc_text's encoding
        (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), so it compares as text with every stored timestamp.
        PostgreSQL: clock_timestamp(), not now(), which is frozen at the transaction's start.
        SQLite: 'now' has millisecond precision, padded to six digits."""
        if self.dialect == "postgresql":
            later = sa.func.clock_timestamp() + sa.literal(timedelta(seconds=plus_seconds), sa.Interval)
            utc = sa.func.timezone(sa.literal("UTC", sa.Text), later)  # = later AT TIME ZONE 'UTC'
            return sa.func.to_char(utc, sa.literal('YYYY-MM-DD"T"HH24:MI:SS.US"Z"', sa.Text))
        modifier = sa.literal(f"{plus_seconds:+.3f} seconds", sa.Text)
        return sa.func.strftime(sa.literal("%Y-%m-%dT%H:%M:%f", sa.Text), "now", modifier).concat("000Z")

    def release_lease(self, key: str, owner: str) -> None:
        with self.begin() as conn:
            conn.execute(load_leases.delete().where(load_leases.c.lease_key == key, load_leases.c.owner == owner))

    def count(self, table: sa.Table, where: Any = None) -> int:
        query = sa.select(sa.func.count()).select_from(table)
        if where is not None:
            query = query.where(where)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def exclusive(db: StagingDatabase, key: str, owner: str, ttl_seconds: float, poll_seconds: float = 0.2) -> Iterator[None]:
    """Hold the lease on `key` for the whole block (waiting while another live owner holds it),
    renewed by a heartbeat so a block longer than the TTL keeps it, released at the end."""
    keeper = LeaseKeeper(db, owner, ttl_seconds)
    try:
        while not keeper.acquire(key):
            time.sleep(poll_seconds)
        try:
            yield
        finally:
            keeper.release(key)
    finally:
        keeper.close()


class LeaseKeeper:
    """The leases one owner holds, kept live by a heartbeat while they are held.

    A holder may wait far longer than a lease's TTL without touching the database (a Retry-After
    of 120 s, a backoff, a slow upload): a daemon thread renews every held lease each TTL/3, so
    only a crashed holder's leases expire. A renewal that finds the lease taken by another owner
    marks it lost; `confirm()` (called before each create) reports it, so nothing is sent under
    a lease that is no longer ours. The thread uses its own pooled connections (the engine is
    thread-safe); renewals and releases are serialised so a renewal never revives a released
    lease."""

    def __init__(self, db: StagingDatabase, owner: str, ttl_seconds: float):
        self.db, self.owner, self.ttl = db, owner, ttl_seconds
        self._held: dict[str, float] = {}  # key -> time.monotonic() of its last renewal
        self._lost: set[str] = set()
        self._state = threading.Lock()  # guards _held and _lost
        self._renewing = threading.Lock()  # one renewal or release at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, key: str) -> bool:
        """One attempt at the lease on `key`; the heartbeat starts with the first lease held."""
        if not self.db.try_lease(key, self.owner, self.ttl):
            return False
        with self._state:
            self._held[key] = time.monotonic()
            self._lost.discard(key)
        self._start()
        return True

    def release(self, key: str) -> None:
        with self._renewing:
            with self._state:
                self._held.pop(key, None)
                self._lost.discard(key)
            self.db.release_lease(key, self.owner)

    def confirm(self) -> str | None:
        """Renew now any held lease the heartbeat has not renewed for TTL/3 (it may be stalled);
        the first held lease that is no longer ours, or None when all are."""
        now = time.monotonic()
        with self._state:
            stale = [key for key, at in self._held.items() if now - at > self.ttl / 3 and key not in self._lost]
        for key in stale:
            self._renew(key)
        with self._state:
            return min(self._lost & self._held.keys(), default=None)

    def close(self) -> None:
        """Stop the heartbeat (held leases are left to their holders' `release`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.ttl, 5.0))

    def _start(self) -> None:
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{self.owner}", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._state:
                keys = [key for key in self._held if key not in self._lost]
            for key in keys:
                try:
                    self._renew(key)
                except Exception as exc:  # a database hiccup: confirm() renews before the next create
                    _log.warning("could not renew the lease on %s (%s); retrying", key, type(exc).__name__)

    def _renew(self, key: str) -> None:
        with self._renewing:
            with self._state:
                if key not in self._held:
                    return  # released meanwhile: renewing would revive it
            ok = self.db.try_lease(key, self.owner, self.ttl)
            with self._state:
                if ok:
                    self._held[key] = time.monotonic()
                else:
                    self._lost.add(key)


def _add_missing_columns(conn: Connection) -> set[str]:
    """Columns added in a later release (all nullable) are added to a database made by an earlier
    one, so upgrading keeps the staged history instead of asking for a fresh database. Returns
    the `table.column` names added."""
    inspector = sa.inspect(conn)
    added = set()
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
                added.add(f"{table.name}.{column.name}")
    return added


# -- databases made by an earlier release ------------------------------------------------------
ColumnUpgrade = Callable[[Connection], None]
# `table.column` -> what fills that column on the rows an earlier release stored: run once, in the
# transaction that adds the column. Registered by the package of the source that staged those
# rows (register_column_upgrade), so this module names no source.
_column_upgrades: dict[str, ColumnUpgrade] = {}
# Columns an earlier release lacked that only the rows' source can fill (the contract's item
# columns, derived from the stored payloads). Adding one to a table holding rows with no upgrade
# registered is refused, the transaction rolled back, rather than leaving the rows without it.
UPGRADE_REQUIRED = frozenset({"stg_conversation_items.source_kind"})


def register_column_upgrade(column: str, upgrade: ColumnUpgrade) -> None:
    """Have `create_schema` run `upgrade(conn)` when it adds `column` (`table.column`)."""
    _column_upgrades[column] = upgrade


def _upgrade_added_columns(conn: Connection, added: set[str]) -> None:
    for column in sorted(added):
        upgrade = _column_upgrades.get(column)
        if upgrade is not None:
            upgrade(conn)
        elif column in UPGRADE_REQUIRED and _has_rows(conn, metadata.tables[column.split(".")[0]]):
            raise RuntimeError(
                f"the staging database predates the column {column}, which only the package of the source "
                f"that staged its rows can fill, and none registered an upgrade for it; nothing was changed"
            )


def _has_rows(conn: Connection, table: sa.Table) -> bool:
    return conn.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first() is not None


def json_text(value: Any) -> str:
    """A JSON column's text: compact, UTF-8 as is. orjson (several times the standard library's
    speed; a staged row carries several JSON columns); the standard library for what orjson
    cannot write (an integer past 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _engine(url: str, namespace: str | None, synchronous: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60}, json_serializer=json_text,
                                  json_deserializer=loads)

        # Several Dagster processes may write at once: WAL lets readers run beside one writer and
        # busy_timeout makes writers wait instead of failing with "database is locked".
        # synchronous=FULL: in WAL, NORMAL may lose the last commits on power loss, and a ledger
        # row lost after its create succeeded lets the next run send the object again. (Bulk
        # staging commits rarely, so FULL costs it no measurable time; a ledger write ~1-2 ms.)
        # MIGRATION_SQLITE_SYNCHRONOUS (passed in) lowers it where no power loss matters (the tests).
        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=60000")
            # Let SQLite's sorter use more than one core (the splitter sorts a window by timeline).
            cursor.execute(f"PRAGMA threads={min(4, os.cpu_count() or 1)}")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("begin_immediate", False) else "BEGIN")

        return engine
    engine = sa.create_engine(url, pool_pre_ping=True, json_serializer=json_text, json_deserializer=loads)
    if namespace is not None:
        @sa.event.listens_for(engine, "connect")
        def _search_path(dbapi_connection, record) -> None:  # pragma: no cover - trivial
            with dbapi_connection.cursor() as cursor:
                # The schema un-namespaced connections use: where a pair's tables lived before (adoption).
                record.info["default_schema"] = cursor.execute("select current_schema()").fetchone()[0]
                cursor.execute(f'set search_path to "{namespace}"')
            dbapi_connection.commit()

    return engine


# Into Gladly: where each staged item went in Gladly's historical import files (one row per item),
# so a range re-written gives the same files, a delta range holds only items no earlier range took,
# and the reconciliation proves every item is in exactly one import row or one reject.
imported_items = sa.Table(
    "imported_items",
    metadata,
    sa.Column("item_id", sa.String(64), primary_key=True),
    sa.Column("import_range", sa.String(64), nullable=False, index=True),  # the range's label (its folder)
    sa.Column("outcome", sa.String(16), nullable=False),  # row / rejected / skipped
    sa.Column("file_name", sa.String(128)),  # the batch file (row) or rejected.csv
    sa.Column("row_number", sa.Integer),  # the first data row of the item in that file
    sa.Column("parts", sa.Integer),  # rows the item became (a long body is split)
    sa.Column("reason", sa.Text),  # why rejected or skipped (the rule's name)
    sa.Column("written_at", sa.String(27), nullable=False),
)

# Attachment transfers (fidelity): one row per file put on an Unthread message — a Gladly
# attachment or an inline image pulled out of an HTML body — with the sha256 of the bytes read
# from the source and of the bytes read back from the target, so a corrupted or missing upload
# shows up as a row whose checksums differ (state: uploaded / verified / mismatch / oversize /
# unverified).
attachment_transfers = sa.Table(
    "attachment_transfers",
    metadata,
    sa.Column("item_id", sa.String(64), primary_key=True),
    sa.Column("attachment_id", sa.String(160), primary_key=True),  # Gladly id, or inline:<n>
    sa.Column("kind", sa.String(16), nullable=False),  # attachment / inline_image
    sa.Column("filename", sa.Text),
    sa.Column("content_type", sa.Text),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("sha256_source", sa.String(64)),
    sa.Column("message_key", sa.String(160)),  # the ledger key of the message carrying the file
    sa.Column("target_message_id", sa.String(128)),
    sa.Column("target_file_id", sa.String(128)),
    sa.Column("sha256_target", sa.String(64)),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("detail", sa.Text),
    sa.Column("updated_at", sa.String(27), nullable=False),
)

# What the target workspace supports of the API surface the facts mark UNCONFIRMED: one row per
# capability (vendors/unthread/capabilities.py), written by the preflight's probes and by the
# load when a write of an optional field is refused, so no later run repeats a call known to fail.
target_capabilities = sa.Table(
    "target_capabilities",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("supported", sa.Boolean, nullable=False),
    sa.Column("detail", sa.Text),  # what the probe saw (status, path), never a credential
    sa.Column("found_by", sa.String(16), nullable=False),  # probe / load
    sa.Column("probed_at", sa.String(27), nullable=False),
)


def surviving_customers(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    """Customer id -> the profile it was merged into (the end of the chain), for each of `ids`
    that was merged: Gladly's 301 as the lookup recorded it, else what staging recorded of it
    (`merged_into`). A merged-away id may have no staged profile row at all."""
    wanted = sorted(set(ids))
    out: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for customer_id, merged in conn.execute(
            sa.select(customers.c.source_id, customers.c.merged_into).where(
                customers.c.source_id.in_(chunk), customers.c.merged_into.is_not(None)
            )
        ):
            out[customer_id] = merged
        for customer_id, surviving in conn.execute(
            sa.select(customer_lookups.c.customer_id, customer_lookups.c.surviving_id).where(
                customer_lookups.c.customer_id.in_(chunk)
            )
        ):
            if surviving and surviving != customer_id:
                out[customer_id] = surviving
    return out
