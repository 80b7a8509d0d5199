"""The Zendesk writer: renders the neutral world (`sim.synth.world`) as a messy Zendesk dataset —
the full JSON export as Zendesk hands it over, the state its API serves (including a later
delta), and `manifest.json`, the ground truth. Folder format: `sim.synth.zendesk_dataset`; vendor
facts: shared/vendor-apis/zendesk-freshdesk-gmail-exports.md §1.

Each episode is a ticket (`zendesk_tickets.render`): its requester is the episode's customer, its
comments are the turns. Customers are end users, the world's agents agents, its organizations
organizations. The full export is taken at `exportedAt` (an hour after `end`); the world's tail
(a day after `end`) is the delta: episodes that open there are new tickets, a customer who first
appears there is a new user; the writer also adds follow-ups to the two newest tickets and deletes
one, all visible only through the API once the emulator's clock has moved.

Planted mess (each in the manifest's `mess` with an exact count and where it is): requesters
without email (one with a sender address on the email it came from, one chat without any),
invalid emails, two users sharing an email in different case (the world's duplicate record),
deleted users (soft: inactive, still listed; permanent: referenced by tickets but absent from
export and API), private comments, HTML bodies with links, a body of 40,000+ characters, subjects
over 100 characters, non-Latin and empty subjects, `{{dc.*}}` raw subjects, tickets without
comments, chat transcripts, automatic comments (metadata.flags 4), literal `&nbsp;` in
plain_body, attachments (inline images among them), malformed export lines, and the delta.

Determinism: every draw comes from a `random.Random` seeded from (seed, purpose, index); ids are
sequential or derived from times; gzip and ZIP headers carry fixed times. Memory: one ticket's
timeline at a time (plus a small outline tuple per ticket, to number tickets by creation time).
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

from sim.synth import content as C
from sim.synth.dataset import write_json
from sim.synth.world import (
    MIN_PLANTED, Episode, MessLog, World, build_world, date_ms, derive_seed, dumps, episodes, fmt_s,
)
from sim.synth.writers.zendesk_files import ExportFiles, LineFile
from sim.synth.writers.zendesk_tickets import (  # noqa: F401 - LONG_BODY_CHARS is part of this API
    AGENT_ID_BASE, ATTACHMENT_ID_BASE, BASE_URL, CHANNEL_MIX, COMPANY, COMPANY_DOMAIN, HOUR, LONG_BODY_CHARS, MINUTE,
    ORG_ID_BASE, SUBDOMAIN, TICKET_ID_BASE, Event, Person, TicketBuild, TicketRenderer, _paragraphs, _zd_html, api_url,
    retime, ticket_version,
)
from sim.synth.zendesk_dataset import COMMENT_MODES, ZendeskLayout

FORMAT_VERSION = 1
DAY = 24 * HOUR
EXPORT_AFTER_END = HOUR  # the full export runs an hour after the history window ends
DELTA_AFTER_END = DAY
# No change this close to exportedAt or deltaAt: the incremental API hides the last minute.
QUIET = 5 * MINUTE
TICKETS_PER_CUSTOMER = 1.5
TURNS_PER_TICKET = 4.0
MIN_CUSTOMERS = MIN_PLANTED  # one customer per planted role

ExportComments = Literal["embedded", "absent", "both"]

MESS_KINDS = (
    "requesters_without_email", "invalid_emails", "shared_emails", "deleted_users", "non_latin_names",
    "private_comments", "html_bodies_with_links", "long_bodies", "long_subjects", "non_latin_subjects",
    "empty_subjects", "dynamic_content_subjects", "tickets_without_comments", "chat_transcripts",
    "automatic_comments", "literal_nbsp_in_plain_body", "attachments", "inline_images", "malformed_lines",
    "delta_new_tickets", "delta_updated_tickets", "delta_new_comments", "delta_deleted_tickets", "delta_new_users",
)


@dataclass
class Account:
    """The world as one Zendesk account sees it: its clock, users and organizations."""

    world: World
    exported_s: int
    delta_s: int
    agents: list[Person]
    customers: list[Person]  # the delta's newcomer last
    organizations: list[dict[str, Any]]

    @property
    def seed(self) -> int:
        return self.world.seed

    @property
    def start_s(self) -> int:
        return self.world.start_ms // 1000

    @property
    def end_s(self) -> int:
        return self.world.end_ms // 1000

    @classmethod
    def of(cls, world: World) -> Account:
        agents = [Person(index=a.index, id=AGENT_ID_BASE + a.index, name=a.name, email=f"{a.mailbox}@{COMPANY_DOMAIN}",
                         role="admin" if a.index == 0 else "agent", created_s=a.active_from_ms // 1000)
                  for a in world.agents]
        orgs = []
        for o in world.organizations:
            created = fmt_s(o.created_ms // 1000)
            orgs.append({
                "url": api_url("organizations", ORG_ID_BASE + o.index), "id": ORG_ID_BASE + o.index, "name": o.name,
                "shared_tickets": False, "shared_comments": False, "external_id": None,
                "created_at": created, "updated_at": created, "domain_names": [o.domain], "details": "", "notes": "",
                "group_id": None, "tags": [], "organization_fields": {},
            })
        end_s = world.end_ms // 1000
        return cls(world, end_s + EXPORT_AFTER_END, end_s + DELTA_AFTER_END, agents,
                   [Person.of(c) for c in world.people()], orgs)

    def fit(self, at: int) -> int:
        """A time of the quiet hour after `end` moves just past the export (into the delta)."""
        return self.exported_s + QUIET if self.end_s <= at < self.exported_s + QUIET else at


class Ledger:
    """Counts and mess, accumulated as tickets are written; becomes the manifest."""

    def __init__(self) -> None:
        self.mess: dict[str, MessLog] = {k: MessLog() for k in MESS_KINDS}
        self.counts: Counter[str] = Counter()
        self.comments_per_day: Counter[str] = Counter()
        self.tickets_of: dict[int, list[int]] = {}  # requester id -> ticket ids (for user mess)


def _ticket_line(version: dict[str, Any], comments: list[dict[str, Any]] | None) -> bytes:
    line = {k: v for k, v in version.items() if k != "generated_timestamp"}
    if comments is not None:
        line["comments"] = comments
    return dumps(line).encode("utf-8")


def _write_ticket(acct: Account, t: TicketBuild, exports: ExportFiles, api_tickets: LineFile, api_comments: LineFile,
                  ledger: Ledger) -> None:
    exported = [e for e in t.events if e.at <= acct.exported_s]
    in_export = t.created_s <= acct.exported_s
    ledger.tickets_of.setdefault(t.requester.id, []).append(t.id)
    if in_export:
        version = ticket_version(t, len(exported))
        comments = t.comments(acct.exported_s)
        lines = {"embedded": _ticket_line(version, comments), "absent": _ticket_line(version, None)}
        _plant_ticket_line_mess(t, exports, lines, ledger)
        exports.write("tickets", lines)
        api_tickets.write(dumps(version).encode("utf-8"))
        ledger.counts["tickets"] += 1
        for c in comments:
            ledger.counts["comments"] += 1
            ledger.counts["publicComments" if c["public"] else "privateComments"] += 1
            ledger.counts["attachments"] += len(c["attachments"])
            ledger.comments_per_day[c["created_at"][:10]] += 1
    delta_events = t.events[len(exported):]
    for upto in range(len(exported) + 1, len(t.events) + 1):
        api_tickets.write(dumps(ticket_version(t, upto)).encode("utf-8"))
        ledger.counts["deltaTicketVersions"] += 1
    for event in t.events:
        if event.comment is not None:
            api_comments.write(dumps({"ticket_id": t.id, "comment": event.comment}).encode("utf-8"))
    _record_ticket_mess(acct, t, in_export, delta_events, ledger)


def _plant_ticket_line_mess(t: TicketBuild, exports: ExportFiles, lines: dict[str, bytes], ledger: Ledger) -> None:
    """Before the long-subject ticket's line a truncated copy of it, before the empty-subject
    ticket's line a copy of it without `id`."""
    if "long_subject" in t.episode.marks:
        line = exports.write("tickets", {mode: data[: len(data) // 2] for mode, data in lines.items()})
        ledger.mess["malformed_lines"].add({"file": "tickets.json", "line": line, "reason": "truncated_json",
                                            "ticketId": t.id})
    if "empty_subject" in t.episode.marks:
        copy = {mode: re.sub(rb'"id":%d,' % t.id, b"", data, count=1) for mode, data in lines.items()}
        line = exports.write("tickets", copy)
        ledger.mess["malformed_lines"].add({"file": "tickets.json", "line": line, "reason": "missing_id",
                                            "ticketId": t.id})


def _record_ticket_mess(acct: Account, t: TicketBuild, in_export: bool, delta_events: list[Event], ledger: Ledger) -> None:
    where = {"ticketId": t.id}
    kept = {id(c) for c in t.comments()}
    for kind, comment, extra in t.mess:
        if comment is None:
            ledger.mess[kind].add({**where, **extra})
        elif id(comment) in kept:  # a comment past the delta never happened
            ledger.mess[kind].add({**where, "commentId": comment["id"], **extra})
    for c in t.comments():
        for a in c["attachments"]:
            entry = {**where, "commentId": c["id"], "attachmentId": a["id"], "fileName": a["file_name"]}
            ledger.mess["inline_images" if a["inline"] else "attachments"].add(entry)
    marks = t.episode.marks
    if len(t.subject) > 100:
        ledger.mess["long_subjects"].add({**where, "chars": len(t.subject)})
    if "non_latin_subject" in marks:
        ledger.mess["non_latin_subjects"].add({**where, "subject": t.subject})
    if "empty_subject" in marks:
        ledger.mess["empty_subjects"].add(where)
    if t.raw_subject != t.subject and t.raw_subject.startswith("{{dc."):
        ledger.mess["dynamic_content_subjects"].add({**where, "rawSubject": t.raw_subject, "subject": t.subject})
    if not t.comments():
        ledger.mess["tickets_without_comments"].add(where)
    if not in_export:
        ledger.mess["delta_new_tickets"].add({**where, "createdAt": fmt_s(t.created_s)})
    elif delta_events:
        ledger.mess["delta_updated_tickets"].add({**where, "events": [e.kind for e in delta_events]})
    for e in delta_events:
        if e.comment is not None:
            ledger.mess["delta_new_comments"].add({**where, "commentId": e.comment["id"], "createdAt": e.comment["created_at"]})
        if e.kind == "delete":
            ledger.mess["delta_deleted_tickets"].add({**where, "deletedAt": fmt_s(e.at)})


def _add_followup(acct: Account, t: TicketBuild) -> None:
    """A follow-up from the requester in the delta, unless the ticket already changes there."""
    if not t.events or t.events[-1].at > acct.exported_s:
        return
    rng = random.Random(derive_seed(acct.seed, "zd-followup", t.id))
    at = max(acct.exported_s + QUIET + rng.randrange((acct.delta_s - acct.exported_s) // 2), t.events[-1].at + 1)
    text = C.customer_text(rng)
    comment = {
        "id": 0, "type": "Comment", "author_id": t.requester.id, "body": text, "html_body": _zd_html(_paragraphs(text)),
        "plain_body": text, "public": True, "attachments": [], "audit_id": 0,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}}, "created_at": "",
        "metadata": {"system": {"client": "Mozilla/5.0", "ip_address": None, "location": None}, "custom": {}},
    }
    retime(comment, at, t.id)
    t.events.append(Event(at, "comment", comment))


def _delete_in_delta(acct: Account, t: TicketBuild) -> None:
    """The ticket is deleted in the delta (whatever else would have happened to it there); the
    incremental export still lists it, with status `deleted` (assumed: facts unconfirmed)."""
    t.events = [e for e in t.events if e.at <= acct.exported_s]
    t.events.append(Event(max(acct.delta_s - QUIET - HOUR, t.events[-1].at + 1 if t.events else 0), "delete"))


    def _add(self, at: int, comment: dict[str, Any] | None, *, by_agent: bool = False, status: str | None = None) -> None:
        self.t.events.append(Event(at, "comment" if comment else "status", comment, status, by_agent))


def _fit_to_windows(acct: Account, t: TicketBuild) -> None:
    """Move the events into the world's windows: an event of the quiet hour after `end` moves just
    past the export (so it is in the delta), nothing stays within QUIET of exportedAt or deltaAt,
    and what would come after the delta never happens. Order is kept."""
    kept: list[Event] = []
    last = -1
    for event in t.events:
        at = event.at
        if acct.end_s <= at < acct.exported_s + QUIET:
            at = acct.exported_s + QUIET
        at = max(at, last + 1)
        if at > acct.delta_s - QUIET:
            break
        if event.comment is not None and at != event.at:
            retime(event.comment, at, t.id)
        event.at, last = at, at
        kept.append(event)
    t.events = kept




# =========================================================================== entry point


def generate(out: Path, *, customers: int, days: int, seed: int = 0, end: date | None = None,
             export_comments: ExportComments = "both", tickets_per_customer: float = TICKETS_PER_CUSTOMER,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write a messy Zendesk dataset for `customers` end users over the `days` before `end` (UTC).

    Same arguments, same bytes. `export_comments` says whether the export's ticket lines embed
    `comments` ("embedded"), leave them to the API ("absent") or both, as two deliveries.
    Returns the manifest (also written to `manifest.json`); `progress` receives tickets written.
    """
    if customers < MIN_CUSTOMERS or days < 1:
        raise ValueError(f"customers must be >= {MIN_CUSTOMERS} (one per planted role) and days >= 1")
    if export_comments not in ("embedded", "absent", "both"):
        raise ValueError(f"export_comments must be embedded, absent or both, not {export_comments!r}")
    end = end or datetime.now(timezone.utc).date()
    layout = ZendeskLayout(Path(out))
    if layout.zendesk.exists() or layout.manifest.exists():
        raise FileExistsError(f"{out} already holds a dataset; generate into an empty folder")
    modes = COMMENT_MODES if export_comments == "both" else (export_comments,)
    end_ms = date_ms(end)
    world = build_world(seed, customers, end_ms - days * DAY * 1000, end_ms, agents=3 + customers // 25,
                        tail_ms=DELTA_AFTER_END * 1000,
                        episodes_per_customer=tickets_per_customer, turns_per_episode=TURNS_PER_TICKET,
                        channel_mix=CHANNEL_MIX)
    acct = Account.of(world)
    outlines = _outlines(acct)
    ledger = Ledger()
    exports = ExportFiles(layout, modes)
    layout.api_dir.mkdir(parents=True, exist_ok=True)
    api_tickets, api_comments = LineFile(layout.api_tickets), LineFile(layout.api_comments)

    _write_users(acct, exports, layout, ledger)
    for org in acct.organizations:
        exports.write("organizations", dumps(org).encode("utf-8"))
    _plant_org_line_mess(acct, exports, ledger)

    # The delta also changes exported tickets: the two newest get a follow-up, a middle one is deleted.
    ordinary = [o for o in outlines if o[1] != 0 and o[0] < acct.end_s]
    followups, victim = set(ordinary[-2:]), ordinary[len(ordinary) // 2]
    attachment_ids = iter(range(ATTACHMENT_ID_BASE, ATTACHMENT_ID_BASE + 10**9))
    dynamic = _dynamic_subject_episode(acct)
    for rank, outline in enumerate(outlines):
        created_s, customer, seq = outline
        episode = _episode(world, customer, seq)
        requester = acct.customers[customer]
        renderer = TicketRenderer(seed, episode, TICKET_ID_BASE + rank, created_s, requester,
                                  world.customer(customer).mail_style, acct.agents, lambda: next(attachment_ids),
                                  dynamic_subject=(customer, seq) == dynamic)
        t = renderer.build(showcase_first=customer == 0 and seq == 0)
        _fit_to_windows(acct, t)
        if outline in followups:
            _add_followup(acct, t)
        elif outline == victim:
            _delete_in_delta(acct, t)
        _write_ticket(acct, t, exports, api_tickets, api_comments, ledger)
        if progress and (rank + 1) % 500 == 0:
            progress(rank + 1)
    api_tickets.close()
    api_comments.close()
    if progress:
        progress(len(outlines))
    _record_user_mess(acct, ledger)
    files = exports.finish(acct.exported_s)
    return _finish(layout, acct, ledger, files, seed, days, end, export_comments, tickets_per_customer)


def _outlines(acct: Account) -> list[tuple[int, int, int]]:
    """(created_s, customer, seq) of every episode, in creation order: ticket ids follow it."""
    out = []
    for customer in acct.world.people():
        for ep in episodes(acct.world, customer):
            out.append((acct.fit(ep.opened_ms // 1000), customer.index, ep.seq))
    return sorted(out)


def _episode(world: World, customer: int, seq: int) -> Episode:
    """Episode `seq` of `customer`, drawn again (episodes are drawn in order, one at a time)."""
    return next(itertools.islice(episodes(world, world.customer(customer)), seq, None))


def _dynamic_subject_episode(acct: Account) -> tuple[int, int] | None:
    """The showcase customer's first episode without another planted subject gets a raw subject
    of dynamic content (`{{dc.*}}`), rendered for the requester."""
    return next(((0, ep.seq) for ep in episodes(acct.world, acct.world.customer(0))
                 if ep.turns and not set(ep.marks) & {"long_subject", "empty_subject", "non_latin_subject"}), None)


def _write_users(acct: Account, exports: ExportFiles, layout: ZendeskLayout, ledger: Ledger) -> None:
    """users.json of the export (agents and end users known at export time, permanently deleted
    ones absent; with a truncated copy of the showcase requester's line before it) and the API's
    users (the delta's newcomer too)."""
    with layout.api_users.open("wb") as api:
        for person in [*acct.agents, *acct.customers]:
            line = dumps(person.api()).encode("utf-8")
            if person.in_api:
                api.write(line + b"\n")
            if not person.in_api or person.created_s > acct.exported_s:
                continue
            if person.kind == "showcase":
                number = exports.write("users", line[: len(line) // 3])
                ledger.mess["malformed_lines"].add({"file": "users.json", "line": number, "reason": "truncated_json",
                                                    "userId": person.id})
            exports.write("users", line)
            ledger.counts["users"] += 1
            ledger.counts["agents" if person.role != "end-user" else "endUsers"] += 1


def _plant_org_line_mess(acct: Account, exports: ExportFiles, ledger: Ledger) -> None:
    """A copy of the first organization's line with a byte that is not UTF-8 in its name."""
    org = acct.organizations[0]
    line = dumps(org).encode("utf-8").replace(org["name"].encode(), org["name"].encode() + b"\xff", 1)
    number = exports.write("organizations", line)
    ledger.mess["malformed_lines"].add({"file": "organizations.json", "line": number, "reason": "invalid_utf8",
                                        "organizationId": org["id"]})
    ledger.counts["organizations"] = len(acct.organizations)


def _record_user_mess(acct: Account, ledger: Ledger) -> None:
    by_email: dict[str, list[Person]] = {}
    for person in acct.customers:
        tickets = ledger.tickets_of.get(person.id, [])
        where = {"userId": person.id, "ticketIds": tickets}
        for kind in person.mess:
            if kind == "requesters_without_email":
                ledger.mess[kind].add({**where, "senderAddress": person.sender_address})
            elif kind == "invalid_emails":
                ledger.mess[kind].add({**where, "email": person.email})
            else:
                ledger.mess[kind].add({**where, "name": person.name})
        if person.kind in ("soft_deleted", "permanently_deleted"):
            ledger.mess["deleted_users"].add({**where, "deletion": "soft" if person.kind == "soft_deleted" else "permanent"})
        if person.kind == "delta_new":
            ledger.mess["delta_new_users"].add({**where, "createdAt": fmt_s(person.created_s)})
        if person.email:
            by_email.setdefault(person.email.strip().lower(), []).append(person)
    for email in sorted(by_email):
        if len(by_email[email]) > 1:
            ledger.mess["shared_emails"].add({"email": email, "userIds": [p.id for p in by_email[email]],
                                              "asWritten": [p.email for p in by_email[email]]})


def _finish(layout: ZendeskLayout, acct: Account, ledger: Ledger, files: list[dict[str, Any]], seed: int, days: int,
            end: date, export_comments: str, tickets_per_customer: float) -> dict[str, Any]:
    account = {"subdomain": SUBDOMAIN, "url": BASE_URL, "name": COMPANY,
               "exportedAt": fmt_s(acct.exported_s), "deltaAt": fmt_s(acct.delta_s)}
    write_json(layout.account, account)
    counts = dict(sorted(ledger.counts.items()))
    counts["commentsPerDay"] = dict(sorted(ledger.comments_per_day.items()))
    counts["deltaNewTickets"] = ledger.mess["delta_new_tickets"].count
    counts["deltaUpdatedTickets"] = ledger.mess["delta_updated_tickets"].count
    counts["deltaNewComments"] = ledger.mess["delta_new_comments"].count
    manifest = {
        "formatVersion": FORMAT_VERSION,
        "source": "zendesk",
        "params": {"seed": seed, "end": end.isoformat(), "days": days, "customers": len(acct.customers) - 1,
                   "ticketsPerCustomer": tickets_per_customer, "exportComments": export_comments,
                   "startAt": fmt_s(acct.start_s), "endAt": fmt_s(acct.end_s), **account},
        "counts": counts,
        "exports": files,
        "mess": {k: v.to_json() for k, v in ledger.mess.items()},
        "notes": [
            "counts.tickets/comments/users describe the export (valid lines only; malformed lines are extra lines)",
            "malformed line numbers are the same in every delivery: the comment modes are line-aligned and gz/zip hold the same bytes",
            "the delta (mess.delta_*) is only in the API, from exportedAt on; move the emulator clock past deltaAt to see all of it",
            "mess.*.where is capped; count is exact; complete says whether where lists them all",
        ],
    }
    write_json(layout.manifest, manifest)
    return manifest


