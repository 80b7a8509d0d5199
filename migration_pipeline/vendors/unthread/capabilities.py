"""What this Unthread workspace supports, probed once instead of assumed. No Dagster import.

Unthread publishes no field tables (facts file §0, §9): tags, file read-back, `isPrivateNote` on
create, metadata on update, the message author in read-back and conversation deletion are all
UNCONFIRMED. The preflight probes each once with harmless requests (a read, and writes on one
labelled probe conversation that is deleted again where the workspace allows it) and records the
answer in `target_capabilities`. The load then uses only what was found, and when a write of an
optional field is refused at run time it is sent again without that field and the refusal is
recorded the same way, so no later run repeats a call known to fail.

A capability is either *blocking* (without it the pipeline cannot prove exactly-once, so the
load does not start) or *optional* (the load degrades, and the reconciliation shows a warning
with the reason instead of failing).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.staging.db import StagingDatabase, now_text, target_capabilities

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Capability:
    name: str
    uses: str  # what the load uses it for
    without: str  # what happens on a workspace without it (shown in warnings and the report)
    blocking: bool = False


CUSTOMER_STAMP = "customer_stamp"
CONVERSATION_METADATA = "conversation_metadata"
METADATA_LOOKUP = "metadata_lookup"
METADATA_ON_UPDATE = "metadata_on_update"
TAGS = "tags"
TAGS_ON_CREATE = "tags_on_create"
TAGS_ON_UPDATE = "tags_on_update"
PRIVATE_NOTES = "private_notes"
MESSAGE_AUTHOR = "message_author"
FILE_READ_BACK = "file_read_back"
CONVERSATION_DELETE = "conversation_delete"

CATALOG: dict[str, Capability] = {
    c.name: c
    for c in (
        Capability(CUSTOMER_STAMP, "each customer is stamped with its source id (externalCrmMetadata.id) and found by it "
                   "(POST /customers/list where) after an unanswered create",
                   "a customer create whose answer was lost could not be found again, so exactly-once cannot be "
                   "proven: the load does not start", blocking=True),
        Capability(CONVERSATION_METADATA, "each conversation is stamped with its source key (metadata.sourceKey) on create",
                   "a create whose answer was lost could not be found again, so exactly-once cannot be proven: "
                   "the load does not start", blocking=True),
        Capability(METADATA_LOOKUP, "a conversation is found by metadata.sourceKey (POST /conversations/list where) "
                   "after an unanswered create", "a lost create answer could not be resolved without risking a "
                   "duplicate: the load does not start", blocking=True),
        Capability(TAGS, "Gladly topics become Unthread tags (POST /tags, POST /tags/list)",
                   "topic names are kept in each conversation's metadata (gladlyTags) and listed in the report"),
        Capability(TAGS_ON_CREATE, "tags are set by id when a conversation is created",
                   "tags are set by a PATCH right after the create, where the workspace takes them"),
        Capability(TAGS_ON_UPDATE, "a later change of a ticket's topics PATCHes the conversation's tags",
                   "topic names are kept in the conversation's metadata (gladlyTags) instead of tags"),
        Capability(METADATA_ON_UPDATE, "a later change of a ticket's topics PATCHes the conversation's metadata",
                   "topic changes after the first load are listed in the report, not written"),
        Capability(PRIVATE_NOTES, "Gladly notes and calls are posted with isPrivateNote",
                   "notes and calls are posted as messages labelled as internal notes (the label is in the text); "
                   "the report lists how many"),
        Capability(MESSAGE_AUTHOR, "read-back messages show who they were posted as (user / onBehalfOf)",
                   "attribution is checked on the messages whose read-back shows an author; the rest are counted "
                   "as not verifiable on this workspace"),
        Capability(FILE_READ_BACK, "every uploaded file is downloaded again and its sha256 compared with the source",
                   "checksums are not verifiable on this workspace: each file's source sha256 is recorded and the "
                   "file is matched by name and size on the message where the read-back lists files"),
        Capability(CONVERSATION_DELETE, "rollback deletes the conversations a run created (DELETE /conversations/{id})",
                   "rollback cannot delete conversations on this workspace; it lists them for deletion by hand"),
    )
}

PROBE_KEY = "probe:capabilities"
PROBE_TITLE = "Migration capability probe (safe to delete)"
PROBE_TEXT = (
    "Created by the migration's preflight to learn which API fields this workspace accepts. It holds no "
    "customer data and can be deleted."
)
PROBE_FILE = ("migration-probe.txt", b"migration capability probe\n", "text/plain")
NOT_READY = (404, 409, 425)  # a just-uploaded file may not be downloadable yet (facts §1)


class ProbeIncomplete(Exception):
    """The workspace did not answer a probe (5xx, timeouts after every retry): nothing recorded
    for that capability; the preflight fails with the reason and the next run probes again."""


@dataclass(frozen=True)
class Finding:
    name: str
    supported: bool
    detail: str
    found_by: str
    probed_at: str

    @property
    def capability(self) -> Capability:
        return CATALOG[self.name]


class CapabilityStore:
    """The recorded findings (table `target_capabilities`), read once and updated in place. A
    capability never probed counts as supported: the load then finds out on first use."""

    def __init__(self, db: StagingDatabase | None):
        self.db = db
        self._findings: dict[str, Finding] = {}
        if db is not None:
            with db.engine.connect() as conn:
                for row in conn.execute(sa.select(target_capabilities)).mappings():
                    if row["name"] in CATALOG:
                        self._findings[row["name"]] = Finding(**row)

    def supports(self, name: str) -> bool:
        finding = self._findings.get(name)
        return finding is None or finding.supported

    def known(self, name: str) -> bool:
        return name in self._findings

    def findings(self) -> list[Finding]:
        return [self._findings[n] for n in CATALOG if n in self._findings]

    def missing(self) -> list[Finding]:
        """The capabilities found absent, in catalogue order."""
        return [f for f in self.findings() if not f.supported]

    def record(self, name: str, supported: bool, detail: str, found_by: str = "probe") -> None:
        finding = Finding(name, supported, detail[:1000], found_by, now_text())
        previous = self._findings.get(name)
        self._findings[name] = finding
        if previous is not None and previous.supported == supported:
            return
        if not supported:
            log.warning("Unthread workspace: %s not supported (%s); %s", name, detail, CATALOG[name].without)
        if self.db is not None:
            with self.db.begin() as conn:
                self.db.upsert(conn, target_capabilities, [finding.__dict__])

    def refused(self, name: str, exc: VendorAPIError, what: str) -> None:
        """A write carrying `what` was refused and the same write without it was accepted."""
        self.record(name, False, f"{exc.method} {exc.path} refused {what}: HTTP {exc.status} {exc.detail[:200]}", "load")

    def forget(self) -> None:
        """Drop every finding (a re-probe: the workspace may have changed)."""
        self._findings.clear()
        if self.db is not None:
            with self.db.begin() as conn:
                conn.execute(target_capabilities.delete().where(target_capabilities.c.name != PROBE_KEY))


def _absent(exc: VendorAPIError) -> bool:
    """A definite "no": the workspace answered and refused (4xx other than 429)."""
    return not exc.retryable


def _incomplete(exc: VendorAPIError, what: str) -> ProbeIncomplete:
    return ProbeIncomplete(f"probing {what} got no definite answer ({exc}); re-run the preflight")


def _said(exc: VendorAPIError) -> str:
    return f"{exc.method} {exc.path} answered HTTP {exc.status}: {exc.detail[:200]}"


def without_refused_fields(
    store: CapabilityStore,
    send: Callable[[dict[str, Any]], dict[str, Any]],
    payload: dict[str, Any],
    optional: Mapping[str, str],
    rewind: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """`send(payload)` where `optional` maps capability -> payload key the workspace may refuse.

    Keys of capabilities known to be absent are left out. If the workspace refuses the write
    (a 4xx) while it carries optional keys, the same write is sent again without one of them at
    a time, then without all (`rewind` first, for file parts): the first variant accepted names
    the keys that were the cause, and their capabilities are recorded absent. If every variant is
    refused, the first refusal is the write's own and is raised. A refused write creates nothing,
    so sending it again cannot duplicate anything."""
    keys = {cap: key for cap, key in optional.items() if key in payload}
    dropped = {key for cap, key in keys.items() if not store.supports(cap)}
    body = {k: v for k, v in payload.items() if k not in dropped}
    carried = {cap: key for cap, key in keys.items() if key not in dropped}
    try:
        return send(body)
    except VendorAPIError as exc:
        if exc.retryable or not carried:
            raise
        refusal = exc
    variants = [{cap: key} for cap, key in carried.items()]
    if len(carried) > 1:
        variants.append(carried)
    for without in variants:
        rewind()
        try:
            result = send({k: v for k, v in body.items() if k not in without.values()})
        except VendorAPIError as exc:
            if exc.retryable:
                raise
            continue
        for cap, key in without.items():
            store.refused(cap, refusal, f"`{key}`")
        return result
    raise refusal


# -- the probes --------------------------------------------------------------------------------


class Prober:
    """Runs the probes not yet recorded, against one client, on one probe conversation."""

    def __init__(self, client: Any, db: StagingDatabase, store: CapabilityStore, *, triage_channel_id: str, user_id: str | None):
        self.client, self.db, self.store = client, db, store
        self.triage_channel_id, self.user_id = triage_channel_id, user_id

    def run(self) -> list[Finding]:
        """Probe what is unknown; returns the findings made now (nothing when all are known)."""
        todo = [n for n in CATALOG if not self.store.known(n)]
        if not todo:
            return []
        before = {f.name for f in self.store.findings()}
        if not self.store.known(TAGS):
            self._probe_tags()
        if not self.store.known(CUSTOMER_STAMP):
            self._probe_customer()
        needs_conversation = [n for n in todo if n not in (TAGS, CUSTOMER_STAMP)]
        if needs_conversation:
            self._probe_on_conversation()
        return [f for f in self.store.findings() if f.name not in before]

    def _probe_tags(self) -> None:
        try:
            self.client.request("POST", "/tags/list", json={"limit": 1})
        except VendorAPIError as exc:
            if not _absent(exc):
                raise _incomplete(exc, "tags") from exc
            self.store.record(TAGS, False, _said(exc))
            for dependent in (TAGS_ON_CREATE, TAGS_ON_UPDATE):
                self.store.record(dependent, False, "the workspace has no tag API (POST /tags/list)")
            return
        self.store.record(TAGS, True, "POST /tags/list answered")

    # a conversation made for probing, reused across runs --------
    def _probe_conversation(self) -> dict[str, Any]:
        row = self._probe_record()
        if row and row["state"] == "done" and row["target_id"]:
            found = self.client.get_conversation(row["target_id"])
            if found is not None:
                return found
        payload: dict[str, Any] = {
            "type": "triage", "triageChannelId": self.triage_channel_id, "title": PROBE_TITLE,
            "markdown": PROBE_TEXT, "status": "open", "metadata": {"sourceKey": PROBE_KEY, "probe": "created"},
        }
        if self.user_id:
            payload["onBehalfOf"] = {"id": self.user_id}
        if self.store.supports(TAGS) and not self.store.known(TAGS_ON_CREATE):
            payload["tags"] = []

        def create() -> dict[str, Any]:
            return without_refused_fields(
                self.store, self.client.create_conversation, payload, {TAGS_ON_CREATE: "tags", CONVERSATION_METADATA: "metadata"}
            )

        def find() -> dict[str, Any] | None:  # no lookup by metadata: the metadata probes will say so
            return self._find_or_none("/conversations/list", "metadata.sourceKey", PROBE_KEY)

        self._write_probe_record("intent", None)
        try:
            created = _create_once(create, find, unknown=bool(row and row["state"] == "intent"))
        except VendorAPIError as exc:
            raise _incomplete(exc, "a probe conversation") if exc.retryable else ProbeIncomplete(
                f"the probe conversation was refused ({_said(exc)}): check UNTHREAD_TRIAGE_CHANNEL_ID"
            ) from exc
        self._write_probe_record("done", created["id"])
        if "tags" in payload and self.store.supports(TAGS_ON_CREATE):
            self.store.record(TAGS_ON_CREATE, True, "POST /conversations accepted tags")
        return created

    def _find_or_none(self, path: str, field: str, value: str) -> dict[str, Any] | None:
        """A probe object looked up after an unanswered create; a refused lookup (the filter is
        what is being probed) is "not found", an unanswered one is raised."""
        try:
            return self.client.find_one(path, field, value)
        except VendorAPIError as exc:
            if exc.retryable:
                raise
            return None

    def _probe_customer(self) -> None:
        """Create a labelled customer stamped like the loader stamps them, read it back, find it
        by the stamp, delete it again (customer DELETE is documented)."""
        stamp = f"{PROBE_KEY}:{uuid.uuid4().hex[:12]}"

        def find() -> dict[str, Any] | None:
            return self._find_or_none("/customers/list", "externalCrmMetadata.id", stamp)

        try:
            created = _create_once(
                lambda: self.client.create_customer({"name": PROBE_TITLE, "externalCrmMetadata": {"id": stamp}}), find
            )
            try:
                found = self.client.find_one("/customers/list", "externalCrmMetadata.id", stamp)
            except VendorAPIError as exc:
                if not _absent(exc):
                    raise
                self.store.record(CUSTOMER_STAMP, False, _said(exc))
            else:
                ok = bool(found and found.get("id") == created["id"])
                self.store.record(CUSTOMER_STAMP, ok, "found by externalCrmMetadata.id" if ok
                                  else "a customer is not found by the externalCrmMetadata.id it was created with")
            try:
                self.client.delete_customer(created["id"])
            except VendorAPIError as exc:  # a leftover labelled customer is harmless; say so
                log.warning("the probe customer %s stays (%s)", created["id"], exc)
        except VendorAPIError as exc:
            raise _incomplete(exc, "customer stamps") if exc.retryable else ProbeIncomplete(
                f"the probe customer was refused ({_said(exc)})"
            ) from exc

    # The probe conversation's id sits in target_capabilities under PROBE_KEY (detail = the id, or
    # "" while a create is unanswered), not in the ledger: it is no migrated object, so rollback,
    # the reconciliation and the trace never see it.
    def _probe_record(self) -> dict[str, Any] | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(target_capabilities).where(target_capabilities.c.name == PROBE_KEY)).mappings().first()
        if row is None:
            return None
        return {"state": "done" if row["detail"] else "intent", "target_id": row["detail"] or None}

    def _write_probe_record(self, state: str, target_id: str | None) -> None:
        row = {"name": PROBE_KEY, "supported": state == "done", "detail": target_id or "", "found_by": "probe",
               "probed_at": now_text()}
        with self.db.begin() as conn:
            self.db.upsert(conn, target_capabilities, [row])

    def _probe_on_conversation(self) -> None:
        conversation = self._probe_conversation()
        cid = conversation["id"]
        key = (conversation.get("metadata") or {}).get("sourceKey")
        try:
            fetched = self.client.get_conversation(cid) or {}
            kept = (fetched.get("metadata") or {}).get("sourceKey")
            if not self.store.known(CONVERSATION_METADATA):
                self.store.record(CONVERSATION_METADATA, bool(kept),
                                  "metadata.sourceKey read back" if kept else "metadata sent on create is not read back")
            if not self.store.known(METADATA_LOOKUP):
                self._probe_lookup(cid, kept)
            if not self.store.known(METADATA_ON_UPDATE):
                self._probe_patch(cid, METADATA_ON_UPDATE, {"metadata": {"sourceKey": kept or key or PROBE_KEY, "probe": "updated"}},
                                  lambda doc: (doc.get("metadata") or {}).get("probe") == "updated")
            if self.store.supports(TAGS) and not self.store.known(TAGS_ON_UPDATE):
                self._probe_patch(cid, TAGS_ON_UPDATE, {"tags": []}, lambda doc: True)
            if any(not self.store.known(n) for n in (MESSAGE_AUTHOR, PRIVATE_NOTES, FILE_READ_BACK)):
                self._probe_message(cid)
            if not self.store.known(CONVERSATION_DELETE):
                self._probe_delete(cid)
        except VendorAPIError as exc:
            raise _incomplete(exc, "the probe conversation") from exc

    def _probe_lookup(self, cid: str, key: str | None) -> None:
        if not key:
            self.store.record(METADATA_LOOKUP, False, "no metadata kept on conversations, so none to look up by")
            return
        try:
            found = self.client.find_one("/conversations/list", "metadata.sourceKey", key)
        except VendorAPIError as exc:
            if not _absent(exc):
                raise
            self.store.record(METADATA_LOOKUP, False, _said(exc))
            return
        ok = bool(found and found.get("id") == cid)
        self.store.record(METADATA_LOOKUP, ok, "found by metadata.sourceKey" if ok else "where metadata.sourceKey did not find it")

    def _probe_patch(self, cid: str, name: str, body: dict[str, Any], kept: Callable[[dict[str, Any]], bool]) -> None:
        try:
            self.client.patch_conversation(cid, body)
        except VendorAPIError as exc:
            if not _absent(exc) or exc.status == 404:  # 404: the probe conversation went away meanwhile
                raise _incomplete(exc, name) from exc
            self.store.record(name, False, _said(exc))
            return
        doc = self.client.get_conversation(cid) or {}
        ok = kept(doc)
        self.store.record(name, ok, f"PATCH {', '.join(body)} accepted" + ("" if ok else ", but not read back"))

    def _probe_message(self, cid: str) -> None:
        marker = f"migration-probe:{uuid.uuid4().hex[:12]}"
        payload: dict[str, Any] = {"body": {"type": "markdown", "value": f"{PROBE_TEXT}\n\n`{marker}`"}, "isPrivateNote": True}
        if self.user_id:
            payload["onBehalfOf"] = {"id": self.user_id}

        def find() -> dict[str, Any] | None:
            return next((m for m in self.client.iter_messages(cid) if marker in (m.get("text") or "")), None)

        created = _create_once(lambda: without_refused_fields(
            self.store, lambda body: self.client.create_message(cid, body, [PROBE_FILE]), payload, {PRIVATE_NOTES: "isPrivateNote"},
        ), find)
        message = find() or created
        if not self.store.known(PRIVATE_NOTES):
            private = message.get("isPrivateNote") is True
            self.store.record(PRIVATE_NOTES, private, "isPrivateNote read back" if private else "isPrivateNote accepted but read back as not private")
        if not self.store.known(MESSAGE_AUTHOR):
            user = message.get("user") or {}
            shown = bool(user.get("id") or user.get("email") or message.get("userId") or message.get("onBehalfOf"))
            if not self.user_id:
                self.store.record(MESSAGE_AUTHOR, shown, "no user to post as: judged from the read-back fields only")
            else:
                self.store.record(MESSAGE_AUTHOR, shown, "the author is read back" if shown else "read-back messages carry no author")
        if not self.store.known(FILE_READ_BACK):
            self._probe_file(cid, message, created)

    def _probe_file(self, cid: str, message: dict[str, Any], created: dict[str, Any]) -> None:
        files = message.get("files") or created.get("files") or []
        if not files:
            self.store.record(FILE_READ_BACK, False, "the uploaded file is not listed on the message")
            return
        expected = hashlib.sha256(PROBE_FILE[1]).hexdigest()
        last: VendorAPIError | None = None
        for attempt in range(3):
            try:
                content = self.client.download_file(cid, files[0]["id"])
            except VendorAPIError as exc:
                if exc.retryable:
                    raise
                last = exc
                if exc.status in NOT_READY and attempt < 2:
                    time.sleep(1.0)
                    continue
                break
            same = hashlib.sha256(content).hexdigest() == expected
            self.store.record(FILE_READ_BACK, same, "file read back byte for byte" if same else "file read back with other bytes")
            return
        assert last is not None
        self.store.record(FILE_READ_BACK, False, _said(last))

    def _probe_delete(self, cid: str) -> None:
        """Close the probe conversation, then try to delete it (the path is unconfirmed, and an
        unknown route may answer 404 like a missing conversation: only a GET tells)."""
        self.client.patch_conversation(cid, {"status": "closed"})
        said = "DELETE /conversations/{id} answered"
        try:
            self.client.delete_conversation(cid)
        except VendorAPIError as exc:
            if not _absent(exc):
                raise
            said = _said(exc)
        gone = self.client.get_conversation(cid) is None
        self.store.record(CONVERSATION_DELETE, gone, "the probe conversation was deleted" if gone
                          else f"{said}; the conversation is still there (closed, titled {PROBE_TITLE!r})")


def _create_once(create: Callable[[], dict[str, Any]], find: Callable[[], dict[str, Any] | None], *,
                 unknown: bool = False, attempts: int = 4) -> dict[str, Any]:
    """A probe write sent at most once: after an unanswered attempt (5xx, lost response) the
    object is looked for before the write is sent again, as the loader's ledger protocol does."""
    last: VendorAPIError | None = None
    for _ in range(attempts):
        if unknown:
            found = find()
            if found is not None:
                return found
        try:
            return create()
        except VendorAPIError as exc:
            if not exc.retryable:
                raise
            unknown, last = True, exc
    assert last is not None
    raise last


def render(findings: list[Finding]) -> Iterator[str]:
    """One line per finding for the preflight report."""
    for f in findings:
        cap = f.capability
        if f.supported:
            yield f"ok    {f.name}: {cap.uses}"
        else:
            yield f"{'FAIL' if cap.blocking else 'warn'}  {f.name} not supported ({f.detail}): {cap.without}"
