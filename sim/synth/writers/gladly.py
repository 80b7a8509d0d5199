"""The Gladly writer: renders the neutral world (`sim.synth.world`) as a dataset folder (see
`sim.synth.dataset`) that looks like a real Gladly organization's export history, with every kind
of mess a migration must survive.

What it produces, in one pass over the customers:

* export jobs as Gladly's scheduler makes them (`gladly_jobs`: one per day or per hour,
  COMPLETED, `updatedAt` about two hours after the window, some with nanosecond fractions), plus a
  Support-scheduled one-time job that re-covers the expired days with a deliberate one-day
  overlap, a FAILED attempt and an IN_PROGRESS re-export (both extra: no data depends on them),
  and one empty window (the world's quiet day) whose job lists only agents/topics;
* each job's NDJSON files (agents/topics snapshots, the customers its items reference, the items
  whose timestamp falls in the window), with deliberate line-level mess;
* the REST side (profiles, merges, conversations, agents, topics, schedule, organization,
  transcripts, attachment and recording bytes) and the Unthread workspace seed;
* `manifest.json`: the ground truth (parameters, counts, jobs with line counts and sha256, and
  where every kind of mess is).

Each customer's episodes become one lifelong timeline (`gladly_timeline.TimelineBuilder`); a
second record of one person (`Customer.duplicate_of`) is a merged-away profile.

Determinism: every random draw comes from a `random.Random` seeded from (seed, purpose, index);
ids are hashes of (seed, kind, key); nothing iterates a set; the wall clock is only read for the
default `end`. Memory: one customer's timeline at a time, bounded per-job bookkeeping, and mess
lists capped at `MESS_EXAMPLES_CAP` entries (their `count` stays exact).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any

from sim.synth import content as C
from sim.synth.dataset import FORMAT_VERSION, RETENTION_DAYS, DatasetLayout, write_json
from sim.synth.world import (
    DAY_MS, HOUR_MS, MESS_EXAMPLES_CAP, SECOND_MS, MessLog, build_world, date_ms, derive_seed, dumps, fmt_ms, fmt_nanos,
    make_id,
)
from sim.synth.writers.gladly_jobs import Frequency, Job, JobFileWriter, JobPlan, plan_jobs
from sim.synth.writers.gladly_timeline import (  # noqa: F401 - UNKNOWN_CONTENT_TYPE is part of this API
    CHANNEL_MIX, UNKNOWN_CONTENT_TYPE, GladlyAgent, GladlyOrg, Profile, TimelineBuilder,
)

DEFAULT_ITEMS_PER_CUSTOMER = 25.0
TURNS_PER_EPISODE = 4.5
ADDED_PER_EPISODE = 1.5  # items Gladly adds to an episode's turns: a topic change, the close
AS_OF_OFFSET_MS = 6 * HOUR_MS  # the instant the dataset depicts: `end` + 6 h, after the last daily job
MEGA_MIN_ITEMS = 1000  # the busy customer's one conversation holds more items than this

# Required fields per content type, as bold in §3.4 of the Gladly notes (plus the ones this
# generator always writes because the pipeline depends on them, e.g. PHONE_CALL recording fields
# on answered, recorded calls are checked separately).
REQUIRED_CONTENT_FIELDS: dict[str, tuple[str, ...]] = {
    "CHAT_MESSAGE": ("type", "sessionId", "content", "messageType"),
    "CONVERSATION_STATUS_CHANGE": ("type", "status"),
    "CUSTOMER_ACTIVITY": ("type", "activityType"),
    "EMAIL": ("type", "from", "to", "subject", "content"),
    "FACEBOOK_MESSAGE": ("type", "pageId", "userId", "content"),
    "CONVERSATION_NOTE": ("type",),
    "PHONE_CALL": ("type", "from", "to", "startedAt"),
    "SMS": ("type", "from", "to", "content"),
    "TOPIC_CHANGE": ("type",),
    "VOICEMAIL": ("type",),
    "INSTAGRAM_DIRECT": ("type", "content"),
    "WHATSAPP": ("type", "content"),
}
CONTENT_TYPES: tuple[str, ...] = tuple(REQUIRED_CONTENT_FIELDS)
REQUIRED_ITEM_FIELDS = ("id", "customerId", "timestamp", "content")

MESS_KINDS = (
    "merged_profiles", "customers_without_email", "invalid_emails", "mixed_case_emails",
    "conversations_over_1000_items", "identical_timestamps", "out_of_order_lines", "malformed_lines",
    "unknown_content_types", "bodies_over_25000_chars", "html_with_signature", "html_with_quoted_reply",
    "plain_with_quoted_reply", "inline_base64_images", "attachments", "unicode_emoji_rtl", "unicode_names",
    "reopen_after_dormancy", "channel_switches", "hierarchical_topics", "disabled_topics", "inactive_agents",
    "items_without_conversation", "empty_jobs", "job_status_mess", "overlapping_jobs",
    "recording_duration_as_string", "sidekick_items",
)


class Ledger:
    """Counts and mess, accumulated as customers are written; becomes the manifest."""

    def __init__(self) -> None:
        self.mess: dict[str, MessLog] = {k: MessLog() for k in MESS_KINDS}
        self.content_examples: dict[str, list[str]] = {}
        self.by_type: Counter[str] = Counter()
        self.by_day: Counter[str] = Counter()
        self.items_total = 0
        self.conversations = 0
        self.attachments = 0
        self.attachment_bytes = 0
        self.recordings = 0
        self.transcripts = 0

    def count_item(self, item: dict[str, Any]) -> None:
        ctype = item["content"]["type"]
        self.items_total += 1
        self.by_type[ctype] += 1
        self.by_day[item["timestamp"][:10]] += 1
        examples = self.content_examples.setdefault(ctype, [])
        if len(examples) < 5:
            examples.append(item["id"])
        c = item["content"]
        if ctype in ("PHONE_CALL", "VOICEMAIL") and isinstance(c.get("recordingDuration"), str):
            self.mess["recording_duration_as_string"].add({"itemId": item["id"]})
        if item["initiator"].get("id") == "SIDEKICK_V2":
            self.mess["sidekick_items"].add({"itemId": item["id"]})


def _write_lines(fh: IO[str], values: Iterable[Any]) -> None:
    for v in values:
        fh.write(dumps(v))
        fh.write("\n")


def _rest_profile(org: GladlyOrg, profile: Profile, last_ms: int) -> dict[str, Any]:
    """The REST customer profile (§4.1); a surviving profile also carries its merged-away emails/phones."""
    rng = random.Random(derive_seed(org.seed, "profile", profile.index))
    c = profile.customer
    emails = [{"original": e, "normalized": e.strip().lower(), "primary": i == 0} for i, e in enumerate(c.emails)]
    phones = [{"original": p.original, "normalized": p.e164, "regionCode": p.region, "primary": i == 0, "type": p.type}
              for i, p in enumerate(c.phones)]
    for idx in sorted(k for k, v in org.merges.items() if v == profile.index):
        other = org.world.customer(idx)
        seen = {e["normalized"] for e in emails}
        emails += [{"original": e, "normalized": e.strip().lower(), "primary": False}
                   for e in other.emails if e.strip().lower() not in seen]
        seen_p = {p["normalized"] for p in phones}
        phones += [{"original": p.original, "normalized": p.e164, "regionCode": p.region, "primary": False, "type": ""}
                   for p in other.phones if p.e164 not in seen_p]
    created = c.created_ms
    updated = max(created + SECOND_MS, last_ms + rng.randint(0, 3600) * SECOND_MS)
    out: dict[str, Any] = {"id": profile.id, "name": c.name}
    if c.address:
        out["address"] = c.address
    out["emails"] = emails
    out["phones"] = phones
    if c.external_id:
        out["externalCustomerIds"] = {"ABC12345": c.external_id}
    out["customAttributes"] = dict(c.attributes)
    out["createdAt"] = fmt_ms(created)
    out["updatedAt"] = fmt_nanos(updated, rng.randrange(1_000_000)) if rng.random() < 0.2 else fmt_ms(updated)
    return out


def _customer_mess(ledger: Ledger, profile: Profile, org: GladlyOrg) -> None:
    c = profile.customer
    if c.email_mess == "none":
        ledger.mess["customers_without_email"].add({"customerId": profile.id})
    elif c.email_mess == "invalid":
        ledger.mess["invalid_emails"].add({"customerId": profile.id, "email": c.emails[0]})
    elif c.email_mess == "mixed_case":
        ledger.mess["mixed_case_emails"].add({"customerId": profile.id, "email": c.emails[0]})
    if c.unicode_name:
        ledger.mess["unicode_names"].add({"customerId": profile.id, "name": c.name})
    if profile.merged_into is not None:
        ledger.mess["merged_profiles"].add({"mergedId": profile.id,
                                            "survivingId": org.customer_id(profile.merged_into)})


def _route(org: GladlyOrg, plan: JobPlan, ts: list[int]) -> list[tuple[Job, list[int]]]:
    """Which job files each item of a timeline goes to: (job, item positions), in job order."""
    groups: list[tuple[Job, list[int]]] = []
    last: Job | None = None
    for pos, ms in enumerate(ts):
        job = plan.scheduled[(ms - org.start_ms) // plan.window_ms]
        if job is not last:
            groups.append((job, []))
            last = job
        groups[-1][1].append(pos)
    ot = plan.one_time
    if ot is not None:
        positions = [pos for pos, ms in enumerate(ts) if ot.start_ms <= ms < ot.end_ms]
        if positions:
            groups.append((ot, positions))
    return groups


def _serialize(item: dict[str, Any], rng: random.Random) -> str:
    """An item line; now and then with another key order (it carries no meaning, §3.4)."""
    if rng.random() < 0.02:
        item = {k: item[k] for k in ("content", *[k for k in item if k != "content"])}
    return dumps(item)


def _write_customer(org: GladlyOrg, plan: JobPlan, profile: Profile, b: TimelineBuilder, writer: JobFileWriter,
                    ledger: Ledger) -> None:
    """Write one customer's items (with the line-level mess its profile carries) into job files.

    Line-level mess, all recorded with job, file and line number:
    * out of order: in the profile's first scheduled job, two adjacent lines of one conversation
      swapped, so the later line has the earlier timestamp;
    * the showcase customer's first job gets a truncated copy of its first item line and of its
      customer line (the intact lines follow), and its last scheduled job an extra item line
      without `customerId` (not an item: the pipeline must quarantine it).
    """
    rng = random.Random(derive_seed(org.seed, "lines", profile.index))
    customer_line = dumps(profile.export_line())
    groups = _route(org, plan, b.ts)
    last_scheduled = max((g for g, (job, _) in enumerate(groups) if job.kind == "scheduled"), default=-1)
    # Line-level mess goes where the pipeline can still download it: the last group whose job is
    # not yet expired (an expired job's lines would only be reachable through the one-time job).
    mess_group = max(
        (g for g, (job, _) in enumerate(groups) if not job.expired(org.as_of_ms)), default=last_scheduled
    )
    showcase = profile.customer.scenario == "showcase"
    swapped = False
    for g, (job, positions) in enumerate(groups):
        job.has_items = True
        order = list(positions)
        moved: tuple[int, str] | None = None  # (index in order, item id) of the out-of-order line
        if profile.customer.swap_lines and not swapped and job.kind == "scheduled":
            for k in range(len(order) - 1):
                a, c = b.items[order[k]], b.items[order[k + 1]]
                if (a.get("conversationId") and a.get("conversationId") == c.get("conversationId")
                        and b.ts[order[k]] < b.ts[order[k + 1]]):
                    order[k], order[k + 1] = order[k + 1], order[k]
                    moved, swapped = (k + 1, a["id"]), True
                    break
        lines = [_serialize(b.items[pos], rng) for pos in order]
        cust_lines = [customer_line]
        malformed: list[tuple[int, str, str, str | None]] = []  # (index in lines, file, reason, itemId)
        shift = 0
        if showcase and g == mess_group:
            lines.insert(0, lines[0][: len(lines[0]) // 2])
            malformed.append((0, "conversation_items.jsonl", "truncated_json", b.items[order[0]]["id"]))
            cust_lines.insert(0, customer_line[: len(customer_line) // 2])
            malformed.append((0, "customers.jsonl", "truncated_json", None))
            shift = 1
        if showcase and g == mess_group:
            orphan = dict(b.items[order[-1]])
            orphan.pop("customerId")
            orphan.pop("conversationId", None)
            orphan["id"] = make_id(org.seed, "malformed", profile.index)
            lines.append(dumps(orphan))
            malformed.append((len(lines) - 1, "conversation_items.jsonl", "missing_required_field:customerId",
                              orphan["id"]))
        first_cust = writer.write(job.id, "customers.jsonl", cust_lines)
        first_item = writer.write(job.id, "conversation_items.jsonl", lines)
        for idx, fname, reason, item_id in malformed:
            line_no = (first_item if fname == "conversation_items.jsonl" else first_cust) + idx
            entry: dict[str, Any] = {"job": job.id, "file": fname, "line": line_no, "reason": reason}
            if item_id:
                entry["itemId"] = item_id
            ledger.mess["malformed_lines"].add(entry)
        if moved is not None:
            ledger.mess["out_of_order_lines"].add({"job": job.id, "file": "conversation_items.jsonl",
                                                   "line": first_item + moved[0] + shift, "itemId": moved[1]})


def _timeline_mess(ledger: Ledger, b: TimelineBuilder) -> None:
    """Mess that is a property of the finished timeline: identical timestamps, huge conversations."""
    last: dict[str, tuple[int, str]] = {}
    for item, ms in zip(b.items, b.ts):
        cid = item.get("conversationId")
        if not cid:
            continue
        prev = last.get(cid)
        if prev is not None and prev[0] == ms:
            ledger.mess["identical_timestamps"].add({"conversationId": cid, "itemIds": [prev[1], item["id"]],
                                                     "timestamp": item["timestamp"]})
        last[cid] = (ms, item["id"])
    for conv in b.conversations:
        if conv.item_count > 1000:
            ledger.mess["conversations_over_1000_items"].add({"conversationId": conv.id, "items": conv.item_count})
    for kind, entry in b.mess:
        ledger.mess[kind].add(entry)


def _write_binaries(layout: DatasetLayout, b: TimelineBuilder, ledger: Ledger) -> None:
    for spec in b.attachments:
        rng = random.Random(spec.seed)
        data = C.attachment_bytes(rng, spec.magic, spec.size)
        (layout.attachments_dir / spec.id).write_bytes(data)
        ledger.attachments += 1
        ledger.attachment_bytes += len(data)
    for item_id, seconds in b.recordings:
        (layout.recordings_dir / f"{item_id}.mp3").write_bytes(C.recording_bytes(seconds))
        ledger.recordings += 1


# =========================================================================== entry point


def generate(out: Path, *, customers: int, days: int, seed: int = 0, end: date | None = None,
             frequency: Frequency = "daily", one_time_job: bool | None = None,
             items_per_customer: float = DEFAULT_ITEMS_PER_CUSTOMER,
             progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write a messy Gladly dataset for `customers` customers over the `days` before `end` (UTC).

    Same arguments, same bytes. Returns the manifest (also written to `manifest.json`).
    `one_time_job` defaults to `days > 13`; `progress` receives the number of items written.
    """
    if customers < 0 or days < 1:
        raise ValueError("customers must be >= 0 and days >= 1")
    if frequency not in ("daily", "hourly"):
        raise ValueError(f"frequency must be 'daily' or 'hourly', not {frequency!r}")
    end = end or datetime.now(timezone.utc).date()
    one_time_job = days > 13 if one_time_job is None else one_time_job
    end_ms = date_ms(end)
    start_ms = end_ms - days * DAY_MS
    as_of_ms = end_ms + AS_OF_OFFSET_MS
    layout = DatasetLayout(Path(out))
    for path in (layout.gladly, layout.attachments_dir, layout.recordings_dir, layout.jobs_dir,
                 layout.unthread_workspace.parent):
        path.mkdir(parents=True, exist_ok=True)
    if any(layout.jobs_dir.iterdir()) or layout.customers.exists():
        raise FileExistsError(f"{out} already holds a dataset; generate into an empty folder")

    turns = min(TURNS_PER_EPISODE, max(1.0, items_per_customer - ADDED_PER_EPISODE))  # short episodes for sparse data
    world = build_world(seed, customers, start_ms, end_ms, agents=min(80, max(6, customers // 50)), quiet_day=True,
                        channel_mix=CHANNEL_MIX,
                        episodes_per_customer=items_per_customer / (turns + ADDED_PER_EPISODE), turns_per_episode=turns,
                        busy=True)
    org = GladlyOrg.of(world, as_of_ms)
    plan = plan_jobs(seed, start_ms, end_ms, as_of_ms, frequency, one_time_job)
    writer = JobFileWriter(layout)
    ledger = Ledger()
    _write_snapshots(org, plan, writer)

    reported = 0
    with layout.customers.open("w", encoding="utf-8", newline="\n") as rest_customers, \
            layout.conversations.open("w", encoding="utf-8", newline="\n") as rest_conversations, \
            layout.transcripts.open("w", encoding="utf-8", newline="\n") as rest_transcripts:
        for profile in org.profiles():
            b = TimelineBuilder(org, profile)
            b.build()
            _write_customer(org, plan, profile, b, writer, ledger)
            for item in b.items:
                ledger.count_item(item)
            _timeline_mess(ledger, b)
            _customer_mess(ledger, profile, org)
            if profile.merged_into is None:
                _write_lines(rest_customers, [_rest_profile(org, profile, b.ts[-1])])
            _write_lines(rest_conversations, (conv.rest() for conv in b.conversations))
            ledger.conversations += len(b.conversations)
            _write_lines(rest_transcripts, b.transcripts)
            ledger.transcripts += len(b.transcripts)
            _write_binaries(layout, b, ledger)
            if progress and ledger.items_total - reported >= 1000:
                reported = ledger.items_total
                progress(reported)
    writer.close()
    if progress:
        progress(ledger.items_total)

    manifest = _finish(layout, org, plan, writer, ledger, frequency, one_time_job, end, items_per_customer)
    return manifest


def _write_snapshots(org: GladlyOrg, plan: JobPlan, writer: JobFileWriter) -> None:
    """Every COMPLETED job's agents/topics snapshot: agents who were active at some point in the
    job's window (so agents who left later are in old snapshots, and absent from agents.json), and
    all topics, disabled ones included."""
    topic_lines = [dumps(t.export()) for t in org.topics]
    for job in plan.all():
        if job.status != "COMPLETED":
            continue
        at = job.end_ms
        writer.write(job.id, "agents.jsonl", [dumps(a.export()) for a in org.agents
                                              if a.active_from_ms <= at and (a.active_until_ms is None or a.active_until_ms > job.start_ms)])
        writer.write(job.id, "topics.jsonl", topic_lines)


def _finish(layout: DatasetLayout, org: GladlyOrg, plan: JobPlan, writer: JobFileWriter, ledger: Ledger,
            frequency: Frequency, one_time_job: bool, end: date, items_per_customer: float) -> dict[str, Any]:
    """Write job.json files, the REST singletons, the Unthread seed and the manifest."""
    seed = org.seed
    jobs_out = []
    for job in plan.all():
        write_json(layout.job_dir(job.id) / "job.json", job.api())
        files = job.files()
        jobs_out.append({
            "id": job.id, "kind": job.kind, "startAt": fmt_ms(job.start_ms), "endAt": fmt_ms(job.end_ms),
            "updatedAt": job.updated_at, "status": job.status, "files": files,
            "expired": job.expired(org.as_of_ms),
            "lines": {f: writer.lines.get((job.id, f), 0) for f in files},
            "sha256": {f: writer.hashes[(job.id, f)].hexdigest() for f in files if (job.id, f) in writer.hashes},
        })
        if job.status == "COMPLETED" and not job.has_items:
            ledger.mess["empty_jobs"].add({"job": job.id, "files": files})
        if job.status != "COMPLETED":
            ledger.mess["job_status_mess"].add({"job": job.id, "status": job.status, "files": files,
                                                "dataAlsoIn": next(s.id for s in plan.scheduled if s.start_ms == job.start_ms)})
    if plan.one_time is not None:
        ot = plan.one_time
        overlap = [s.id for s in plan.scheduled if s.start_ms < ot.end_ms and not s.expired(org.as_of_ms)]
        ledger.mess["overlapping_jobs"].add({"job": ot.id, "overlapsVisibleJobs": overlap,
                                             "coversExpiredJobs": [s.id for s in plan.scheduled if s.expired(org.as_of_ms)]})

    for t in org.topics:
        if t.parent_id:
            ledger.mess["hierarchical_topics"].add({"topicId": t.id, "parentId": t.parent_id})
        if t.disabled:
            ledger.mess["disabled_topics"].add({"topicId": t.id})
    for a in org.agents:
        if a.active_until_ms is not None and a.active_until_ms <= org.as_of_ms:
            ledger.mess["inactive_agents"].add({"agentId": a.id, "deactivatedAt": fmt_ms(a.active_until_ms)})

    current_agents = [a for a in org.agents if a.active_at(org.as_of_ms)]
    write_json(layout.agents, [a.export() for a in current_agents])
    write_json(layout.topics, [t.export() for t in org.topics])
    write_json(layout.merges, {org.customer_id(k): org.customer_id(v) for k, v in org.merges.items()})
    write_json(layout.schedule, [{"id": make_id(seed, "schedule"), "frequency": frequency.upper(), "type": "CONVERSATIONS",
                                  "nextStartAt": fmt_ms(org.end_ms), "updatedAt": fmt_nanos(org.start_ms - 90 * DAY_MS, 4321)}])
    write_json(layout.organization, {"id": make_id(seed, "organization"), "name": org.company,
                                     "loginDomain": "northwind-outfitters", "timezone": "America/New_York",
                                     "gladlyUrl": "https://northwind-outfitters.gladly.com"})
    write_json(layout.unthread_workspace, _unthread_workspace(org, current_agents))

    manifest = {
        "formatVersion": FORMAT_VERSION,
        "params": {"seed": seed, "end": end.isoformat(), "days": (org.end_ms - org.start_ms) // DAY_MS,
                   "customers": org.customers, "frequency": frequency, "itemsPerCustomer": items_per_customer,
                   "oneTimeJob": one_time_job, "startAt": fmt_ms(org.start_ms), "endAt": fmt_ms(org.end_ms),
                   "asOf": fmt_ms(org.as_of_ms), "retentionDays": RETENTION_DAYS,
                   "quietDay": fmt_ms(org.quiet_day_ms)[:10] if org.quiet_day_ms is not None else None},
        "counts": {
            "customers": org.customers, "survivingCustomers": org.customers - len(org.merges),
            "mergedCustomers": len(org.merges), "agents": len(org.agents), "currentAgents": len(current_agents),
            "topics": len(org.topics), "conversations": ledger.conversations, "items": ledger.items_total,
            "itemsByContentType": dict(sorted(ledger.by_type.items())), "itemsPerDay": dict(sorted(ledger.by_day.items())),
            "attachments": ledger.attachments, "attachmentBytes": ledger.attachment_bytes,
            "recordings": ledger.recordings, "transcripts": ledger.transcripts, "jobs": len(jobs_out),
            "exportBytes": writer.bytes_written,
        },
        "jobs": jobs_out,
        "mess": {**{k: v.to_json() for k, v in ledger.mess.items()},
                 "content_types": {k: ledger.content_examples[k] for k in sorted(ledger.content_examples)}},
        "notes": [
            "items counts are distinct valid items; malformed lines (mess.malformed_lines) are extra lines, not items",
            "job files group lines by customer; within one conversation lines are in timestamp order except mess.out_of_order_lines",
            "a job is expired when updatedAt <= asOf - retentionDays; the one-time job re-covers expired windows and overlaps the first visible one by a day",
            "merged-away customers keep their own items and export lines; their conversations belong to the surviving profile in conversations.jsonl",
            "mess.*.where is capped at %d entries; count is exact; complete says whether where lists them all" % MESS_EXAMPLES_CAP,
        ],
    }
    write_json(layout.manifest, manifest)
    return manifest


def _unthread_workspace(org: GladlyOrg, current_agents: list[GladlyAgent]) -> dict[str, Any]:
    """Unthread users for most (not all) current agents, some emails in other casing."""
    rng = random.Random(derive_seed(org.seed, "unthread"))
    users = []
    for i, a in enumerate(current_agents):
        if i % 7 == 6 or (len(current_agents) > 1 and i == len(current_agents) - 1):
            continue  # this agent has no Unthread account yet
        email = a.email
        if i % 4 == 1:
            local, _, dom = email.partition("@")
            email = f"{local.title()}@{dom}" if i % 8 == 1 else email.upper()
        user: dict[str, Any] = {"id": _uuid(org.seed, "unthread-user", a.id), "name": a.name, "email": email}
        if rng.random() < 0.8:
            user["slackId"] = "U0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(9))
        users.append(user)
    users.append({"id": _uuid(org.seed, "unthread-user", "admin"), "name": "Workspace Admin",
                  "email": f"admin@{org.domain}", "slackId": "U0ADMIN0001"})
    return {
        "users": users,
        "triageChannels": [{"id": "C0TRIAGE001", "name": "support-triage"}],
        "emailInboxes": [{"id": _uuid(org.seed, "unthread-inbox", "support"), "email": org.support_email}],
        "slackChannels": [{"id": "C0SUPPORT01", "name": "support"}],
    }


def _uuid(seed: int, *parts: object) -> str:
    h = hashlib.blake2b("|".join([str(seed), *map(str, parts)]).encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
