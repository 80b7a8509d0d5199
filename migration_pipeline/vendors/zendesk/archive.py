"""The local archive of Zendesk deliveries: what Zendesk handed over or answered, kept byte for
byte with its sha256, so staging (and any re-staging) never needs the landing folder or the API
again. No Dagster import.

Layout under `MIGRATION_DATA_DIR`:

    archive/zendesk/deliveries/<delivery id>/files/<name>     the delivery's NDJSON export files
    archive/zendesk/deliveries/<delivery id>/responses/<name> an incremental delivery's export pages, as sent
    archive/zendesk/deliveries/<delivery id>/comments.jsonl   comments fetched from the API (if any)
    archive/zendesk/deliveries/<delivery id>/comments.json    their facts, written after them
    archive/zendesk/deliveries/<delivery id>/archive.json     {deliveryId, kind, files: {name: {bytes,
                                                              sha256}}, archivedAt, origin, refused, ...}
    archive/zendesk/.scratch/                                 work in progress; removed when done or failed

A delivery folder is built in the scratch folder and renamed into `deliveries/` whole, with
`archive.json` written last: a folder without it is an interrupted copy and is redone.

Two kinds of delivery:
- **export** (`archive_from_landing`): every export file dropped flat in the landing folder
  (`*.json`/`*.jsonl`/`*.ndjson`, the same `.gz`, `.zip`s of them; names starting with `.` are
  ignored), copied byte for byte under the name it landed as. Its id is `export-` + a digest of
  the files' names and sha256s: the same drop archived twice is one delivery, and nothing is
  copied again. Refused, with the reason (kept in archive.json `refused`, quarantined when
  staged): symbolic links (never followed), folders and other non-files, names with control
  characters or longer than `MAX_NAME`, files of another type, ZIPs that are not readable or hold
  a link, an encrypted member or an unsafe path (`lib/zips.py`). A file that changes while it is
  copied (an upload in progress) refuses the whole drop: archive it again when it is complete.
- **incremental** (`archive_incremental`): the incremental ticket export for a window
  [start, end) (cursor pages to `end_of_stream`, or past the window's end), its tickets written
  one per line as `files/tickets.json`, the users they name (`show_many`) as `files/users.json`,
  and every comment of those tickets in `comments.jsonl`. The id names the window
  (`incremental-2024-06-01` for a whole UTC day). Every page of the incremental export is also
  kept as Zendesk sent it, byte for byte, in `responses/incremental-NNNN.json` (sha256 in
  archive.json `responses`, checked by `verify`): the proof of what the API answered. The files
  staging reads are the records as parsed from those pages (every field Zendesk sent, values
  unchanged, field order normalised); the comments and users answers are kept only as parsed.

Comments (`comments.jsonl`, one JSON object per line, in fetch order):
    {"ticket_id": N, "comment": {...}}     one per comment, as the API returned it
    {"ticket_id": N, "fetched": K}         after a ticket's K comments; K null: Zendesk no longer
                                           knows the ticket (404)
An export delivery whose ticket lines carry no `comments` gets them with `archive_comments`
(once: a finished comments.json is reused; an interrupted fetch resumes after the last ticket it
finished, from `comments.partial.jsonl`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from migration_pipeline.lib.files import (
    atomic_write_text,
    copy_regular_file,
    move_into_place,
    remove_stale_scratch,
    scratch_dir,
)
from migration_pipeline.lib.jsonl import read_jsonl
from migration_pipeline.lib.zips import UnsafeZipMember, safe_member_parts
from migration_pipeline.vendors.zendesk.client import ZendeskClient
from migration_pipeline.vendors.zendesk.export import PLAIN_SUFFIXES, ExportRecord, read_export_file
from migration_pipeline.vendors.zendesk.records import ZendeskTicket

_log = logging.getLogger(__name__)

ARCHIVE_MARKER = "archive.json"
FILES_DIR = "files"
RESPONSES_DIR = "responses"  # an incremental delivery's export pages, byte for byte
COMMENTS_FILE = "comments.jsonl"
COMMENTS_MARKER = "comments.json"
COMMENTS_PARTIAL = "comments.partial.jsonl"
EXPORT, INCREMENTAL = "export", "incremental"
TICKETS_FILE, USERS_FILE = "tickets.json", "users.json"  # an incremental delivery's files
# A landed name becomes a path and a staging column (file_name holds 128 characters, a ZIP member
# is staged as "<zip>:<member>"): printable, not starting with ".", at most this long.
MAX_NAME = 100
DELIVERY_ID = re.compile(r"(export|incremental)-[A-Za-z0-9_-]{1,51}")
STALE_SCRATCH_SECONDS = 24 * 3600
_CHUNK = 1 << 20


class LandingExportError(Exception):
    """A landing drop that cannot be archived as it is; the message is the reason."""


class UnsafeDeliveryId(ValueError):
    """A delivery id that is not one this archive makes (it would become a path)."""


@dataclass(frozen=True)
class ZendeskDelivery:
    """One archived delivery. `files`: name -> {bytes, sha256} under `files/`; `comments`: the
    facts of `comments.jsonl` (None until fetched; an export with embedded comments needs none);
    `window`: the [start, end) an incremental delivery covers (None for an export)."""

    delivery_id: str
    kind: str  # EXPORT or INCREMENTAL
    directory: Path
    files: dict[str, dict[str, Any]]
    archived_at: datetime
    origin: dict[str, Any] = field(default_factory=dict)
    refused: tuple[tuple[str, str], ...] = ()  # (name, reason): what the drop held that was not archived
    window: tuple[datetime, datetime] | None = None
    comments: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # archive.json as written

    @property
    def files_dir(self) -> Path:
        return self.directory / FILES_DIR

    def file_path(self, name: str) -> Path:
        return self.files_dir / name

    @property
    def comments_path(self) -> Path | None:
        return self.directory / COMMENTS_FILE if self.comments is not None else None


@dataclass
class LandingResult:
    """What one scan of the landing folder did: the delivery (None when nothing could be
    archived), whether it was archived now (False: the same drop was archived before), and every
    entry that was refused, with its reason."""

    delivery: ZendeskDelivery | None = None
    fresh: bool = False
    refused: list[tuple[str, str]] = field(default_factory=list)


def incremental_id(start: datetime, end: datetime) -> str:
    """`incremental-2024-06-01` for a whole UTC day, else `incremental-<start>-<end>` (UTC, to the second)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start.time() == time(0) and end - start == timedelta(days=1):
        return f"incremental-{start:%Y-%m-%d}"
    return f"incremental-{start:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}"


class ZendeskArchive:
    def __init__(self, data_dir: Path | str):
        self.root = Path(data_dir) / "archive" / "zendesk" / "deliveries"
        # Beside deliveries/ so a finished delivery is renamed into place on the same filesystem.
        self.scratch_root = self.root.parent / ".scratch"

    # -- reading -----------------------------------------------------------------------------
    def delivery_dir(self, delivery_id: str) -> Path:
        if not isinstance(delivery_id, str) or not DELIVERY_ID.fullmatch(delivery_id):
            raise UnsafeDeliveryId(f"{str(delivery_id)[:80]!r} is not a Zendesk delivery id")
        return self.root / delivery_id

    def load(self, delivery_id: str) -> ZendeskDelivery | None:
        """The delivery, or None when it is absent or incomplete (no archive.json)."""
        directory = self.delivery_dir(delivery_id)
        marker = directory / ARCHIVE_MARKER
        if directory.is_symlink() or not marker.is_file():
            return None
        meta = json.loads(marker.read_text(encoding="utf-8"))
        comments_marker = directory / COMMENTS_MARKER
        comments = json.loads(comments_marker.read_text(encoding="utf-8")) if comments_marker.is_file() else None
        window = meta.get("window")
        return ZendeskDelivery(
            delivery_id=delivery_id,
            kind=meta["kind"],
            directory=directory,
            files=meta["files"],
            archived_at=datetime.fromisoformat(meta["archivedAt"]),
            origin=meta.get("origin") or {},
            refused=tuple((r["file"], r["reason"]) for r in meta.get("refused", ())),
            window=(datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])) if window else None,
            comments=comments,
            meta=meta,
        )

    def deliveries(self) -> list[ZendeskDelivery]:
        """Every complete delivery, oldest archived first."""
        if not self.root.is_dir():
            return []
        found = [self.load(p.name) for p in sorted(self.root.iterdir()) if DELIVERY_ID.fullmatch(p.name)]
        return sorted((d for d in found if d is not None), key=lambda d: (d.archived_at, d.delivery_id))

    def verify(self, delivery: ZendeskDelivery) -> bool:
        """Every archived file (the kept API answers, and the comments once fetched) present with its
        size and sha256."""
        expected = [(delivery.file_path(n), f) for n, f in delivery.files.items()]
        expected += [(delivery.directory / RESPONSES_DIR / n, f) for n, f in delivery.meta.get("responses", {}).items()]
        if delivery.comments is not None:
            expected.append((delivery.directory / COMMENTS_FILE, delivery.comments))
        for path, facts in expected:
            if path.is_symlink() or not path.is_file() or path.stat().st_size != facts["bytes"]:
                return False
            if file_facts(path)["sha256"] != facts["sha256"]:
                return False
        return True

    # -- the landing folder -------------------------------------------------------------------
    def archive_from_landing(self, landing_dir: Path | str) -> LandingResult:
        """Archive every export file in the landing folder as one delivery (see the module
        docstring); a drop archived before is found by its files' sha256s and not copied again."""
        result = LandingResult()
        accepted = _landing_files(Path(landing_dir), result.refused)
        if not accepted:
            return result
        landed = {path.name: file_facts(path) for path in accepted}
        delivery_id = export_delivery_id(landed)
        existing = self.load(delivery_id)
        if existing is not None and self.verify(existing):
            result.delivery = existing
            _log.info("landing drop already archived as %s", delivery_id)
            return result
        remove_stale_scratch(self.scratch_root, STALE_SCRATCH_SECONDS)
        with scratch_dir(self.scratch_root) as scratch:
            folder = scratch / delivery_id
            (folder / FILES_DIR).mkdir(parents=True)
            for path in accepted:
                target = folder / FILES_DIR / path.name
                copy_regular_file(path, target)
                if file_facts(target) != landed[path.name]:
                    raise LandingExportError(
                        f"{path.name} changed while it was archived (an upload still in progress?); "
                        f"nothing of this drop is archived: archive it again once the upload is complete"
                    )
            meta = {
                "deliveryId": delivery_id,
                "kind": EXPORT,
                "archivedAt": datetime.now(UTC).isoformat(),
                "files": landed,
                "origin": {"landingDir": str(landing_dir), "landedAs": {name: name for name in landed}},
                "refused": [{"file": name, "reason": reason} for name, reason in result.refused],
            }
            result.delivery = self._finish(folder, meta, scratch)
        result.fresh = True
        _log.info("landing drop archived as %s: %d files, %d refused", delivery_id, len(landed), len(result.refused))
        return result

    # -- the API -----------------------------------------------------------------------------
    def archive_incremental(
        self,
        client: ZendeskClient,
        start: datetime,
        end: datetime,
        *,
        per_page: int | None = None,
        refresh: bool = False,
    ) -> tuple[ZendeskDelivery, bool]:
        """Archive the tickets the incremental export shows as changed in [start, end) (their
        `generated_timestamp`, else `updated_at`), the users they name and all their comments, as
        one delivery; returns it and whether it was fetched now. A window archived before is
        reused (no call) unless `refresh`. Pages are read from `start` until `end_of_stream` or a
        page that reaches past `end` (the export is ordered by generated time); tickets outside
        the window are left to the window that holds them (counted in archive.json)."""
        if start.tzinfo is None or end.tzinfo is None or not start < end:
            raise ValueError("start and end must be timezone-aware, start before end")
        delivery_id = incremental_id(start, end)
        existing = self.load(delivery_id)
        if existing is not None and not refresh and self.verify(existing):
            return existing, False
        lo, hi = start.timestamp(), end.timestamp()
        remove_stale_scratch(self.scratch_root, STALE_SCRATCH_SECONDS)
        with scratch_dir(self.scratch_root) as scratch:
            folder = scratch / delivery_id
            (folder / FILES_DIR).mkdir(parents=True)
            pages, ticket_ids, user_ids, outside = [], [], {}, 0
            with (folder / FILES_DIR / TICKETS_FILE).open("w", encoding="utf-8") as out:
                for page in client.incremental_ticket_pages(start_time=start, per_page=per_page):
                    past_end = False
                    for ticket in page.tickets:
                        at = _changed_at(ticket)
                        if at is not None and at >= hi:
                            past_end = True
                        if at is None or not lo <= at < hi:
                            outside += 1
                            continue
                        out.write(_record_line(ticket))
                        ticket_ids.append(ticket.id)
                        for user_id in (ticket.requester_id, ticket.submitter_id, ticket.assignee_id):
                            user_ids.setdefault(user_id, None)
                    kept = f"incremental-{len(pages) + 1:04d}.json"
                    (folder / RESPONSES_DIR).mkdir(exist_ok=True)
                    (folder / RESPONSES_DIR / kept).write_bytes(page.raw)
                    pages.append({"tickets": len(page.tickets), "afterCursor": page.after_cursor,
                                  "endOfStream": page.end_of_stream, "response": kept})
                    if past_end:
                        break
            with (folder / COMMENTS_FILE).open("w", encoding="utf-8") as out:
                for ticket_id, comments in _fetch_comments(client, dict.fromkeys(ticket_ids)):
                    _write_comments(out, ticket_id, comments)
                    user_ids.update(dict.fromkeys(c.author_id for c in comments or ()))
            wanted = [i for i in user_ids if i is not None and i > 0]  # -1: Zendesk's system user
            users = client.users(wanted)
            with (folder / FILES_DIR / USERS_FILE).open("w", encoding="utf-8") as out:
                out.writelines(_record_line(user) for user in users)
            found = {u.id for u in users}
            comments_facts = _comments_facts(folder / COMMENTS_FILE, len(dict.fromkeys(ticket_ids)))
            atomic_write_text(folder / COMMENTS_MARKER, json.dumps(comments_facts, indent=1, sort_keys=True))
            meta = {
                "deliveryId": delivery_id,
                "kind": INCREMENTAL,
                "archivedAt": datetime.now(UTC).isoformat(),
                "files": {name: file_facts(folder / FILES_DIR / name) for name in (TICKETS_FILE, USERS_FILE)},
                "responses": {p["response"]: file_facts(folder / RESPONSES_DIR / p["response"]) for p in pages},
                "origin": {"api": repr(client), "startTime": int(lo)},
                "window": {"start": start.astimezone(UTC).isoformat(), "end": end.astimezone(UTC).isoformat()},
                "pages": pages,
                "afterCursor": pages[-1]["afterCursor"] if pages else None,
                "endOfStream": bool(pages and pages[-1]["endOfStream"]),
                "tickets": len(ticket_ids),
                "ticketsOutsideWindow": outside,
                "usersNotFound": sorted(set(wanted) - found),
                "refused": [],
            }
            delivery = self._finish(folder, meta, scratch)
        _log.info("incremental %s archived: %d tickets in %d pages", delivery_id, len(ticket_ids), len(pages))
        return delivery, True

    def archive_comments(self, client: ZendeskClient, delivery: ZendeskDelivery) -> ZendeskDelivery:
        """Fetch and archive the comments of every ticket of an export delivery whose line
        carries none (`comments` absent), once: a delivery whose comments are archived is
        returned as it is, without a call. Resumable: tickets finished by an interrupted run are
        not fetched again."""
        if delivery.comments is not None:
            return delivery
        wanted: dict[int, None] = {}
        for name in sorted(delivery.files):
            for entry in read_export_file(delivery.file_path(name)):
                if isinstance(entry, ExportRecord) and isinstance(entry.record, ZendeskTicket) and entry.record.comments is None:
                    wanted[entry.record.id] = None
        partial = delivery.directory / COMMENTS_PARTIAL
        done = _resume(partial)
        todo = {i: None for i in wanted if i not in done}
        _log.info("delivery %s: fetching the comments of %d tickets (%d already fetched)", delivery.delivery_id, len(todo), len(done))
        with partial.open("a", encoding="utf-8") as out:
            for ticket_id, comments in _fetch_comments(client, todo):
                _write_comments(out, ticket_id, comments)
                out.flush()  # a ticket is done once its `fetched` line is written
        facts = _comments_facts(partial, len(wanted))
        partial.replace(delivery.directory / COMMENTS_FILE)
        atomic_write_text(delivery.directory / COMMENTS_MARKER, json.dumps(facts, indent=1, sort_keys=True))
        loaded = self.load(delivery.delivery_id)
        assert loaded is not None
        return loaded

    # -- internals ---------------------------------------------------------------------------
    def _finish(self, folder: Path, meta: dict[str, Any], scratch: Path) -> ZendeskDelivery:
        """Write archive.json last and rename the folder into place; an incomplete folder already
        there is moved aside into the scratch folder (removed with it) first."""
        atomic_write_text(folder / ARCHIVE_MARKER, json.dumps(meta, indent=1, sort_keys=True))
        def theirs_is_good() -> bool:  # a concurrent run archived the same first
            existing = self.load(meta["deliveryId"])
            return existing is not None and self.verify(existing)

        move_into_place(folder, self.delivery_dir(meta["deliveryId"]), scratch, theirs_is_good)
        loaded = self.load(meta["deliveryId"])
        assert loaded is not None
        return loaded


def file_facts(path: Path) -> dict[str, Any]:
    """{bytes, sha256} of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def export_delivery_id(files: dict[str, dict[str, Any]]) -> str:
    """The id a landing drop is archived under, from its files' names and sha256 (`file_facts`):
    the same drop always gets the same id (a reviewer can name its lines before it is archived)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0" + files[name]["sha256"].encode() + b"\n")
    return f"export-{digest.hexdigest()[:24]}"


def _landing_files(landing: Path, refused: list[tuple[str, str]]) -> list[Path]:
    """The landing folder's export files, in name order; everything else named in `refused`."""
    if not landing.is_dir():
        return []
    accepted = []
    for path in sorted(landing.iterdir()):
        name = path.name
        if name.startswith("."):
            continue  # uploads in progress, system files
        shown = name if name.isprintable() and len(name) <= MAX_NAME else repr(name[:MAX_NAME])
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            refused.append((shown, "is a symbolic link; links in the landing folder are not followed (copy the file here)"))
        elif stat.S_ISDIR(mode):
            refused.append((shown, "is a folder; drop the export's files flat in the landing folder"))
        elif not stat.S_ISREG(mode):
            refused.append((shown, "is not a regular file"))
        elif shown != name:
            refused.append((shown, f"has a name with control characters or longer than {MAX_NAME} characters; rename it"))
        elif not _export_name(name):
            refused.append((name, f"is not an export file ({', '.join(PLAIN_SUFFIXES)}, the same gzipped, or a .zip of them)"))
        elif name.lower().endswith(".zip") and (problem := _zip_problem(path)):
            refused.append((name, problem))
        else:
            accepted.append(path)
    return accepted


def _export_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((*PLAIN_SUFFIXES, ".zip")) or (lower.endswith(".gz") and lower[:-3].endswith(PLAIN_SUFFIXES))


def _zip_problem(path: Path) -> str | None:
    """Why a landing ZIP is refused whole (unreadable, a link, an encrypted member, an unsafe
    path), or None. Inflation limits are the reader's (export.InflateLimits), checked when staged."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                safe_member_parts(info)
    except UnsafeZipMember as exc:
        return f"{exc}; the ZIP is refused as a whole"
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"is not a readable ZIP ({type(exc).__name__}: {exc})"
    return None


def _changed_at(ticket: ZendeskTicket) -> float | None:
    """When the incremental export says the ticket changed: generated_timestamp, else updated_at."""
    if ticket.generated_timestamp is not None:
        return float(ticket.generated_timestamp)
    if ticket.updated_at is not None and ticket.updated_at.tzinfo is not None:
        return ticket.updated_at.timestamp()
    return None


def _record_line(record: Any) -> str:
    """A record as the NDJSON line it came as: every field it was given, none it was not."""
    return json.dumps(record.model_dump(mode="json", exclude_unset=True), ensure_ascii=False) + "\n"


def _fetch_comments(client: ZendeskClient, ticket_ids: Iterable[int]) -> Iterable[tuple[int, list[Any] | None]]:
    for ticket_id in ticket_ids:
        yield ticket_id, client.ticket_comments(ticket_id)


def _write_comments(out: IO[str], ticket_id: int, comments: list[Any] | None) -> None:
    for comment in comments or ():
        out.write(json.dumps({"ticket_id": ticket_id, "comment": comment.model_dump(mode="json", exclude_unset=True)},
                             ensure_ascii=False) + "\n")
    out.write(json.dumps({"ticket_id": ticket_id, "fetched": None if comments is None else len(comments)}) + "\n")


def _resume(partial: Path) -> set[int]:
    """The tickets an interrupted fetch finished; the file is cut after the last of them (a
    ticket's comments without its `fetched` line are fetched again)."""
    done: set[int] = set()
    if not partial.exists():
        return done
    keep = 0
    with partial.open("rb") as fh:
        offset = 0
        for raw in fh:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break
            try:
                obj = json.loads(raw)
            except ValueError:
                break
            if isinstance(obj, dict) and "fetched" in obj and isinstance(obj.get("ticket_id"), int):
                done.add(obj["ticket_id"])
                keep = offset
    with partial.open("r+b") as fh:
        fh.truncate(keep)
        os.fsync(fh.fileno())
    return done


def _comments_facts(path: Path, tickets: int) -> dict[str, Any]:
    comments = not_found = 0
    for line in read_jsonl(path):
        obj = line.obj or {}
        if "comment" in obj:
            comments += 1
        elif "fetched" in obj and obj["fetched"] is None:
            not_found += 1
    return {"file": COMMENTS_FILE, **file_facts(path), "tickets": tickets, "comments": comments,
            "ticketsNotFound": not_found, "fetchedAt": datetime.now(UTC).isoformat()}
