"""Unthread's domain rules: validating writes and building the stored objects.

The HTTP layer (app.py) parses requests and calls this; this module never sees HTTP. Each
validation message names the field, the bad value and the rule, because the people reading them are
rehearsing a migration and need to know what to fix.

Strict where the facts file documents a rule (enums, priorities 3/5/7/9, the type-specific channel
fields, the two message body forms); lenient where it does not (unknown request fields are ignored,
duplicate names are allowed). Every unconfirmed choice is marked "assumed". In strict mode
(strict.py) the unconfirmed write fields are refused and messages are stored without an author.
"""

from __future__ import annotations

import mimetypes
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError
from .store import Store
from .strict import CONVERSATION_CREATE_REFUSED, CONVERSATION_PATCH_REFUSED, message_view, refuse_unknown

CONVERSATION_TYPES = ("slack", "email", "triage")
STATUSES = ("open", "in_progress", "on_hold", "closed")
PRIORITIES = (3, 5, 7, 9)
ASSIGNEE_TYPES = ("user", "team")


@dataclass(frozen=True)
class Upload:
    """One attachment part, already size-checked by the HTTP layer."""

    name: str
    mimetype: str
    data: bytes


@dataclass(frozen=True)
class Limits:
    max_files_per_message: int = 10
    max_file_bytes: int = 20 * 1024 * 1024
    max_markdown_chars: int = 40_000


def now_iso() -> str:
    """ISO-8601 UTC with milliseconds, as Unthread's timestamps look."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- field checks (each returns the value or raises 400 naming the field) -------------------------


def bad(field: str, value: Any, rule: str) -> ApiError:
    return ApiError(400, f"{field}: {rule}, got {_show(value)}")


def opt_str(p: dict[str, Any], key: str, field: str | None = None) -> str | None:
    value = p.get(key)
    if value is not None and not isinstance(value, str):
        raise bad(field or key, value, "must be a string or null")
    return value


def req_str(p: dict[str, Any], key: str, field: str | None = None) -> str:
    value = p.get(key)
    if key not in p or value is None:
        raise ApiError(400, f"{field or key}: is required")
    if not isinstance(value, str) or not value.strip():
        raise bad(field or key, value, "must be a non-empty string")
    return value


def opt_bool(p: dict[str, Any], key: str, default: bool) -> bool:
    value = p.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(key, value, "must be true or false")
    return value


def opt_str_list(p: dict[str, Any], key: str) -> list[str]:
    value = p.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(key, value, "must be a list of strings")
    return value


def opt_obj_list(p: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = p.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise bad(key, value, "must be a list of objects")
    return value


def opt_crm(p: dict[str, Any]) -> dict[str, str] | None:
    value = p.get("externalCrmMetadata")
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise bad("externalCrmMetadata", value, 'must be {"id": "<string>"} or null')
    return {"id": value["id"]}


def opt_str_map(p: dict[str, Any], key: str) -> dict[str, str] | None:
    value = p.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad(key, value, "must be an object mapping strings to strings")
    return value


def opt_enum(p: dict[str, Any], key: str, allowed: tuple[Any, ...]) -> Any:
    value = p.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or value not in allowed:
        raise bad(key, value, f"must be one of {', '.join(map(str, allowed))} or null")
    return value


def check_markdown(text: str, field: str, limits: Limits) -> str:
    if len(text) > limits.max_markdown_chars:
        raise ApiError(400, f"{field}: {len(text)} characters exceeds the limit of {limits.max_markdown_chars}")
    return text


# -- the service ----------------------------------------------------------------------------------


class Unthread:
    """Domain operations over a Store; users and workspace items are read-only reference data."""

    def __init__(self, store: Store, limits: Limits, strict: bool = False):
        self.store = store
        self.limits = limits
        self.strict = strict
        self.users = {u["id"]: u for u in store.all_users()}
        self.users_by_email = {u["email"].lower(): u for u in self.users.values() if isinstance(u.get("email"), str)}

    # -- workspace references --

    def _workspace_ref(self, kind: str, key: str, value: str | None) -> dict[str, Any] | None:
        if value is None:
            return None
        item = self.store.workspace_item(kind, value)
        if item is None:
            raise ApiError(400, f"{key}: no {kind[:-1]} with id {value!r} exists in this workspace")
        return item

    def _user_ref(self, key: str, value: str | None) -> None:
        if value is not None and value not in self.users:
            raise ApiError(400, f"{key}: no user with id {value!r} exists in this workspace")

    def _customer_ref(self, value: str | None) -> None:
        if value is not None and not self.store.exists("customers", value):
            raise ApiError(400, f"customerId: no customer with id {value!r} exists")

    def _tags(self, p: dict[str, Any]) -> list[dict[str, str]]:
        """assumed: tags are set as a list of existing tag ids on create and patch (unconfirmed)."""
        ids = opt_str_list(p, "tags")
        found = self.store.get_many("tags", ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise ApiError(400, f"tags: no tag with id {missing[0]!r} exists")
        return [{"id": i, "name": found[i]["name"]} for i in dict.fromkeys(ids)]

    # -- customers --

    def _customer_fields(self, p: dict[str, Any], creating: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if creating or "name" in p:
            out["name"] = req_str(p, "name")
        for key in ("slackChannelId", "triageChannelId", "defaultTriageChannelId", "slackTeamId"):
            if creating or key in p:
                out[key] = opt_str(p, key)
        if creating or "emailDomains" in p:
            out["emailDomains"] = opt_str_list(p, "emailDomains")
        if creating or "disableAutomatedTicketing" in p:
            out["disableAutomatedTicketing"] = opt_bool(p, "disableAutomatedTicketing", False)
        if creating or "externalCrmMetadata" in p:
            out["externalCrmMetadata"] = opt_crm(p)
        if "slackChannelId" in out:
            # assumed: the channel is not required to exist (unconfirmed); known ones are described.
            channel = self.store.workspace_item("slackChannels", out["slackChannelId"] or "")
            out["slackChannel"] = {"name": channel["name"], "isPrivate": False} if channel else None
        return out

    def create_customer(self, p: dict[str, Any]) -> dict[str, Any]:
        now = now_iso()
        doc = {
            "id": str(uuid.uuid4()),
            "primarySupportAssigneeId": None,
            "primarySupportAssigneeType": None,
            "secondarySupportAssigneeId": None,
            "secondarySupportAssigneeType": None,
            "replyTimeoutMinutes": None,
            "botHandling": "off",
            "assignToTaggedUserEnabled": False,
            "tags": [],
            "autoresponder": None,
            "supportSteps": [],
            **self._customer_fields(p, creating=True),
            "createdAt": now,
            "updatedAt": now,
        }
        self.store.insert("customers", doc)
        return doc

    def update_customer(self, customer_id: str, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._existing("customers", customer_id, "customer")
        doc.update(self._customer_fields(p, creating=False), updatedAt=now_iso())
        self.store.replace("customers", doc)
        return doc

    # -- accounts (paths INFERRED, facts file §4.2) --

    def _account_fields(self, p: dict[str, Any], creating: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if creating or "name" in p:
            out["name"] = req_str(p, "name")
        for key in ("imageUrl", "primarySupportAssigneeId", "secondarySupportAssigneeId"):
            if creating or key in p:
                out[key] = opt_str(p, key)
        for key in ("primarySupportAssigneeType", "secondarySupportAssigneeType"):
            if creating or key in p:
                out[key] = opt_enum(p, key, ASSIGNEE_TYPES)
        for key in ("emailsAndDomains", "slackChannelIds", "slackTeamIds"):
            if creating or key in p:
                out[key] = opt_str_list(p, key)
        for key in ("customFields", "supportSteps"):
            if creating or key in p:
                out[key] = opt_obj_list(p, key)
        if creating or "externalCrmMetadata" in p:
            out["externalCrmMetadata"] = opt_crm(p)
        if "slackChannelIds" in out:
            out["slackChannels"] = [self._account_channel(i) for i in out["slackChannelIds"]]
        if "slackTeamIds" in out:
            out["slackTeams"] = [{"id": i, "name": None, "icon": None} for i in out["slackTeamIds"]]
        return out

    def _account_channel(self, channel_id: str) -> dict[str, Any]:
        """assumed: unknown channel ids are kept (described with a null name), not refused."""
        channel = self.store.workspace_item("slackChannels", channel_id)
        return {
            "id": channel_id,
            "name": channel["name"] if channel else None,
            "isPrivate": False,
            "isShared": False,
            "archivedAt": None,
            "slackTeamId": None,
        }

    def create_account(self, p: dict[str, Any]) -> dict[str, Any]:
        now = now_iso()
        doc = {
            "id": str(uuid.uuid4()),
            "tags": [],
            "createdBy": None,
            "updatedBy": None,
            **self._account_fields(p, creating=True),
            "createdAt": now,
            "updatedAt": now,
        }
        self.store.insert("accounts", doc)
        return doc

    def update_account(self, account_id: str, p: dict[str, Any]) -> dict[str, Any]:
        doc = self._existing("accounts", account_id, "account")
        doc.update(self._account_fields(p, creating=False), updatedAt=now_iso())
        self.store.replace("accounts", doc)
        return doc

    # -- tags (paths UNCONFIRMED, facts file §4.4) --

    def create_tag(self, p: dict[str, Any]) -> dict[str, Any]:
        """assumed: `POST /tags {name}`; duplicate names are allowed (unconfirmed)."""
        now = now_iso()
        doc = {"id": str(uuid.uuid4()), "name": req_str(p, "name"), "createdAt": now, "updatedAt": now}
        self.store.insert("tags", doc)
        return doc

    # -- conversations --

    def _existing(self, resource: str, object_id: str, label: str) -> dict[str, Any]:
        doc = self.store.get(resource, object_id)
        if doc is None:
            raise ApiError(404, f"{label} {object_id!r} not found")
        return doc

    def _on_behalf_of(self, p: dict[str, Any], field: str = "onBehalfOf") -> dict[str, Any] | None:
        value = p.get("onBehalfOf")
        if value is None:
            return None
        if not isinstance(value, dict):
            raise bad(field, value, "must be an object {email?, name?, id?}")
        for key in ("email", "name", "id"):
            if value.get(key) is not None and not isinstance(value[key], str):
                raise bad(f"{field}.{key}", value[key], "must be a string")
        return {k: value[k] for k in ("email", "name", "id") if value.get(k) is not None}

    def _channels(self, p: dict[str, Any], kind: str) -> dict[str, Any]:
        """The type-specific channel fields (facts file §3.1): each id must exist in the workspace."""
        channel_id = opt_str(p, "channelId")
        triage_id = opt_str(p, "triageChannelId")
        inbox_id = opt_str(p, "emailInboxId")
        self._workspace_ref("slackChannels", "channelId", channel_id)
        self._workspace_ref("triageChannels", "triageChannelId", triage_id)
        self._workspace_ref("emailInboxes", "emailInboxId", inbox_id)
        if kind == "slack" and channel_id is None:
            raise ApiError(400, "channelId: is required when type is 'slack'")
        if kind == "triage" and triage_id is None:
            raise ApiError(400, "triageChannelId: is required when type is 'triage'")
        if kind == "email" and inbox_id is None:
            raise ApiError(400, "emailInboxId: is required when type is 'email'")
        # assumed: a triage conversation's channel is its triage channel.
        effective = channel_id if kind == "slack" else triage_id
        return {"channelId": effective, "triageChannelId": triage_id, "emailInboxId": inbox_id}

    def create_conversation(self, p: dict[str, Any], uploads: list[Upload]) -> dict[str, Any]:
        if self.strict:
            refuse_unknown(p, CONVERSATION_CREATE_REFUSED)
        kind = p.get("type")
        if kind is None:
            raise ApiError(400, "type: is required (one of slack, email, triage)")
        if kind not in CONVERSATION_TYPES:
            raise bad("type", kind, "must be one of slack, email, triage")
        markdown = check_markdown(req_str(p, "markdown"), "markdown", self.limits)
        status = opt_enum(p, "status", STATUSES) or "open"
        on_behalf_of = self._on_behalf_of(p)
        if kind == "email" and not (on_behalf_of and (on_behalf_of.get("email") or on_behalf_of.get("id"))):
            raise ApiError(400, "onBehalfOf: an email or id is required when type is 'email'")
        customer_id = opt_str(p, "customerId")
        self._customer_ref(customer_id)
        assignee = opt_str(p, "assignedToUserId")
        self._user_ref("assignedToUserId", assignee)
        notes = opt_str(p, "notes")
        doc_fields = {
            "title": opt_str(p, "title"),
            "status": status,
            "priority": opt_enum(p, "priority", PRIORITIES),
            "customerId": customer_id,
            "assignedToUserId": assignee,
            **self._channels(p, kind),
            "sourceType": kind,
            "onBehalfOf": on_behalf_of,
            "notes": notes,
            "excludeAnalytics": opt_bool(p, "excludeAnalytics", False),
            "metadata": opt_str_map(p, "metadata"),
            "tags": self._tags(p),
        }
        self._check_uploads(uploads)
        return self._insert_conversation(doc_fields, markdown, on_behalf_of, uploads)

    def _insert_conversation(
        self, fields: dict[str, Any], markdown: str, on_behalf_of: dict[str, Any] | None, uploads: list[Upload]
    ) -> dict[str, Any]:
        now = now_iso()
        conversation_id = str(uuid.uuid4())
        message = self._message_doc(conversation_id, markdown, on_behalf_of, False, None, None)
        files = self._write_uploads(uploads)
        message["files"] = [f for f, _ in files]
        doc = {
            "id": conversation_id,
            "friendlyId": 0,
            **fields,
            "wasManuallyCreated": True,  # assumed: API-created conversations count as manual
            "createdAt": now,
            "updatedAt": now,
            "statusUpdatedAt": now,
            "closedAt": now if fields["status"] == "closed" else None,
            **dict.fromkeys(("wakeUpAt", "snoozedAt", "lockedAt", "summary", "sentiment", "ticketTypeId")),
            **dict.fromkeys(
                (
                    "responseTime",
                    "responseTimeWorking",
                    "resolutionTime",
                    "resolutionTimeWorking",
                    "waitingOnAgentTime",
                    "waitingOnCustomerTime",
                    "ticketType",
                    "submitterUser",
                )
            ),
            "ticketTypeFields": {},
            "followers": [],
            "collaborators": [],
            "titleOverwritten": False,
            "resolvedTitle": [],
            "initialMessageId": message["id"],
            "initialMessage": message,
        }
        with self.store.transaction() as db:
            doc["friendlyId"] = self.store.next_sequence(db, "friendlyId")
            self.store.insert_in(db, "conversations", doc)
            self.store.insert_in(db, "messages", message, conversation_id)
            for record, _ in files:
                self.store.insert_file_in(db, record, conversation_id, message["id"])
        return doc

    def update_conversation(self, conversation_id: str, p: dict[str, Any]) -> dict[str, Any]:
        """PATCH: only the keys present change; maps (metadata, ticketTypeFields) are replaced whole
        (INFERRED from LangChain's client merging them itself, facts file §3.3)."""
        doc = self._existing("conversations", conversation_id, "conversation")
        if self.strict:
            refuse_unknown(p, CONVERSATION_PATCH_REFUSED)
        before = dict(doc)
        now = now_iso()
        if "status" in p:
            if p["status"] is None:
                raise bad("status", None, "must be one of open, in_progress, on_hold, closed")
            status = opt_enum(p, "status", STATUSES)
            if status != doc["status"]:
                doc.update(status=status, statusUpdatedAt=now, closedAt=now if status == "closed" else None)
        if "title" in p:
            doc["title"] = opt_str(p, "title")
        if "priority" in p:
            doc["priority"] = opt_enum(p, "priority", PRIORITIES)
        if "assignedToUserId" in p:
            doc["assignedToUserId"] = opt_str(p, "assignedToUserId")
            self._user_ref("assignedToUserId", doc["assignedToUserId"])
        if "customerId" in p:
            doc["customerId"] = opt_str(p, "customerId")
            self._customer_ref(doc["customerId"])
        if "metadata" in p:
            doc["metadata"] = opt_str_map(p, "metadata")
        if "tags" in p:
            doc["tags"] = self._tags(p)
        if "ticketTypeId" in p:
            doc["ticketTypeId"] = opt_str(p, "ticketTypeId")
        if "ticketTypeFields" in p:
            value = p["ticketTypeFields"]
            if value is not None and not isinstance(value, dict):
                raise bad("ticketTypeFields", value, "must be an object mapping field ids to values")
            doc["ticketTypeFields"] = value or {}
        if doc != before:
            doc["updatedAt"] = now
            self.store.replace("conversations", doc)
        return doc

    # -- messages --

    def _message_body(self, p: dict[str, Any]) -> str:
        """Current form `{body: {type: "markdown", value}}` or legacy `{markdown}` (facts file §5.1).
        assumed: when both are sent, `body` wins."""
        if "body" in p and p["body"] is not None:
            body = p["body"]
            if not isinstance(body, dict):
                raise bad("body", body, 'must be an object {"type": "markdown", "value": "..."}')
            if body.get("type") != "markdown":
                raise bad("body.type", body.get("type"), "must be 'markdown'")
            return check_markdown(req_str(body, "value", "body.value"), "body.value", self.limits)
        if "markdown" in p and p["markdown"] is not None:
            return check_markdown(req_str(p, "markdown"), "markdown", self.limits)
        raise ApiError(400, "body: is required ({\"body\": {\"type\": \"markdown\", \"value\": ...}} or {\"markdown\": ...})")

    def create_message(self, conversation_id: str, p: dict[str, Any], uploads: list[Upload]) -> dict[str, Any]:
        conversation = self._existing("conversations", conversation_id, "conversation")
        text = self._message_body(p)
        on_behalf_of = self._on_behalf_of(p)
        # assumed: isPrivateNote can be set on create (unconfirmed; stored messages carry it).
        # Strict mode ignores it (unconfirmed on create).
        private = False if self.strict else opt_bool(p, "isPrivateNote", False)
        self._check_uploads(uploads)
        last_ts = self.store.last_message_ts(conversation_id)
        message = self._message_doc(
            conversation_id, text, on_behalf_of, private, conversation["initialMessage"]["ts"], last_ts
        )
        files = self._write_uploads(uploads)
        message["files"] = [f for f, _ in files]
        with self.store.transaction() as db:
            self.store.insert_in(db, "messages", message, conversation_id)
            for record, _ in files:
                self.store.insert_file_in(db, record, conversation_id, message["id"])
        # assumed: a new message does not touch the conversation's updatedAt (unconfirmed).
        return message

    def _message_doc(
        self,
        conversation_id: str,
        text: str,
        on_behalf_of: dict[str, Any] | None,
        private: bool,
        thread_ts: str | None,
        last_ts: str | None,
    ) -> dict[str, Any]:
        ts = next_ts(last_ts)
        when = datetime.fromtimestamp(int(ts.split(".")[0]), UTC)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + ts.split(".")[1][:3] + "Z"
        user = self._resolve_user(on_behalf_of)
        doc = {
            "id": str(uuid.uuid4()),
            "conversationId": conversation_id,
            "ts": ts,
            "threadTs": thread_ts or ts,
            "timestamp": stamp,
            "createdAt": stamp,  # assumed: messages carry createdAt (= timestamp) for the default order
            "updatedAt": stamp,
            "text": text,
            "htmlContent": None,
            "resolvedContent": None,
            "subtype": None,
            "botId": None,
            "botName": None,
            "userId": user["id"] if user else None,
            "userTeamId": None,
            "user": user,
            "sentByUser": None,
            "onBehalfOf": on_behalf_of,
            "isPrivateNote": private,
            "metadata": None,
            "files": [],
        }
        return message_view(doc) if self.strict else doc

    def _resolve_user(self, on_behalf_of: dict[str, Any] | None) -> dict[str, Any] | None:
        """The workspace user the message is posted as: by onBehalfOf.id, else by email; else null
        (an external customer). assumed: matching is exact on id, case-insensitive on email."""
        if not on_behalf_of:
            return None
        user = self.users.get(on_behalf_of.get("id") or "")
        if user is None and on_behalf_of.get("email"):
            user = self.users_by_email.get(on_behalf_of["email"].lower())
        if user is None:
            return None
        return {k: user.get(k) for k in ("id", "name", "email", "slackId", "photo")}

    # -- attachments --

    def _check_uploads(self, uploads: list[Upload]) -> None:
        if len(uploads) > self.limits.max_files_per_message:
            raise ApiError(
                400,
                f"attachments: {len(uploads)} files sent, at most {self.limits.max_files_per_message} per message",
            )
        for i, up in enumerate(uploads):
            if len(up.data) > self.limits.max_file_bytes:
                raise ApiError(
                    413,
                    f"attachments[{i}] ({up.name!r}): {len(up.data)} bytes exceeds the limit of "
                    f"{self.limits.max_file_bytes} bytes",
                )

    def _write_uploads(self, uploads: list[Upload]) -> list[tuple[dict[str, Any], Upload]]:
        """Write bytes first: a crash between here and the DB commit leaves an orphan file, never a
        file record without bytes."""
        out = []
        for up in uploads:
            record = {
                "id": str(uuid.uuid4()),
                "name": up.name,
                "size": len(up.data),
                "mimetype": up.mimetype or mimetypes.guess_type(up.name)[0] or "application/octet-stream",
            }
            self.store.file_path(record["id"]).write_bytes(up.data)
            out.append((record, up))
        return out


def next_ts(last_ts: str | None) -> str:
    """A Slack-style `seconds.micros` ts from the clock, bumped past `last_ts` so a conversation's
    messages have strictly increasing ts even within one microsecond."""
    now = datetime.now(UTC)
    micros = int(now.timestamp()) * 1_000_000 + now.microsecond
    if last_ts:
        sec, frac = last_ts.split(".")
        micros = max(micros, int(sec) * 1_000_000 + int(frac.ljust(6, "0")[:6]) + 1)
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
