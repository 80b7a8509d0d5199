"""Dry run: build every Unthread payload a real load would send and write it to files instead.

`DryRunUnthreadClient` implements the client methods the loader calls. Creates and patches are
recorded as JSON lines, one file per kind (`customers.jsonl`, `tags.jsonl`, `conversations.jsonl`,
`messages.jsonl`, `statuses.jsonl`, `conversation_updates.jsonl`), and answered with synthetic ids, so the loader runs exactly
its real code path: same rendering, same splitting of long bodies, same order. Nothing is sent:
by default not even a read (the user list used to map agents is empty, so agents show as
unmatched); pass `reader` to allow read-only requests (`POST /users/list`) so agent mapping matches
a real run.

`DryRunLoader` keeps its ledger in memory on top of the real one (read-only), so a dry run after a
partial load lists only what is still to send, and never touches the real ledger or the leases.
Attachments are not downloaded: the file names and declared sizes are listed.
No Dagster import.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from migration_pipeline.lib import markers
from migration_pipeline.lib.http import CallStats
from migration_pipeline.lib.staging.db import StagingDatabase
from migration_pipeline.vendors.unthread.client import UnthreadClient, Upload
from migration_pipeline.lib.ledger import OverlayLedger
from migration_pipeline.vendors.unthread.loader import LoadSettings, UnthreadLoader

KINDS = ("customers", "conversations", "messages", "statuses", "conversation_updates", "tags")


class DryRunUnthreadClient:
    """Records what would be sent under `out_dir`; answers creates with synthetic ids."""

    def __init__(self, out_dir: Path, reader: UnthreadClient | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.reader = reader
        self.stats = reader.stats if reader is not None else CallStats()  # requests actually sent
        self.counts = dict.fromkeys(KINDS, 0)
        self._files = {kind: (self.out_dir / f"{kind}.jsonl").open("a", encoding="utf-8") for kind in KINDS}
        self._messages: dict[str, list[dict[str, Any]]] = {}  # synthetic conversation id -> messages
        self._conversation_keys: dict[str, str] = {}

    def _record(self, kind: str, record: dict[str, Any]) -> str:
        self.counts[kind] += 1
        synthetic = f"dry-run-{kind[:-1]}-{self.counts[kind]:06d}"
        self._files[kind].write(json.dumps({"id": synthetic, **record}, ensure_ascii=False, default=str) + "\n")
        self._files[kind].flush()
        return synthetic

    @staticmethod
    def _files_listed(files: list[Upload] | None) -> list[dict[str, Any]]:
        return [{"name": name, "mimeType": mime} for name, _content, mime in files or []]

    # -- writes: recorded, never sent ----------------------------------------------------------
    def create_customer(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = (payload.get("externalCrmMetadata") or {}).get("id")
        return {"id": self._record("customers", {"key": key, "payload": payload}), **payload}

    def create_conversation(self, payload: dict[str, Any], files: list[Upload] | None = None) -> dict[str, Any]:
        key = (payload.get("metadata") or {}).get("sourceKey")
        conversation_id = self._record("conversations", {"key": key, "payload": payload, "files": self._files_listed(files)})
        self._conversation_keys[conversation_id] = key
        initial = {"id": f"{conversation_id}-initial", "text": payload.get("markdown") or ""}
        self._messages[conversation_id] = [initial]
        return {"id": conversation_id, "initialMessage": initial, **payload}

    def create_message(self, conversation_id: str, payload: dict[str, Any], files: list[Upload] | None = None) -> dict[str, Any]:
        text = (payload.get("body") or {}).get("value") or payload.get("markdown") or ""
        found = markers.find(text)
        message_id = self._record(
            "messages",
            {
                "key": found[-1].text if found else None,
                "conversationId": conversation_id,
                "conversationKey": self._conversation_keys.get(conversation_id),
                "payload": payload,
                "files": self._files_listed(files),
            },
        )
        self._messages.setdefault(conversation_id, []).append({"id": message_id, "text": text})
        return {"id": message_id, "conversationId": conversation_id}

    def create_tag(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"id": self._record("tags", {"key": payload.get("name"), "payload": payload}), **payload}

    def patch_conversation(self, conversation_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        # A status patch goes to statuses.jsonl; any other update (tags, metadata) to conversation_updates.jsonl.
        self._record(
            "statuses" if set(payload) == {"status"} else "conversation_updates",
            {"conversationId": conversation_id, "conversationKey": self._conversation_keys.get(conversation_id), "payload": payload},
        )
        return {"id": conversation_id, **payload}

    # -- reads: answered locally, or by the reader when one is allowed -------------------------
    def list_users(self) -> list[dict[str, Any]]:
        return self.reader.list_users() if self.reader is not None else []

    def find_one(self, path: str, field: str, value: Any) -> dict[str, Any] | None:
        # Only called for an intent a crashed real run left: without reads, assume it is not there.
        return None

    def iter_messages(self, conversation_id: str) -> Iterator[dict[str, Any]]:
        yield from self._messages.get(conversation_id, [])

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        if self.reader is not None:
            self.reader.close()

    def summary(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), **self.counts, "requests_sent": self.stats.requests}


def _no_download(_item_id: str, _attachment_id: str, **_limits: Any) -> bytes:
    return b""  # a dry run lists attachments; it does not fetch them from the source


class DryRunLoader(UnthreadLoader):
    """The real loader over a `DryRunUnthreadClient`, an in-memory ledger and no leases."""

    def __init__(self, db: StagingDatabase, client: DryRunUnthreadClient, settings: LoadSettings):
        super().__init__(db, client, settings, fetch_attachment=_no_download)  # type: ignore[arg-type]
        self.ledger = OverlayLedger(db, settings.run_id)

    @contextmanager
    def lease(self, key: str) -> Iterator[None]:
        yield  # nothing is sent, so a concurrent real run cannot be raced

    def renew_leases(self) -> None:
        return None

    def record_transfers(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # nothing is uploaded, so no attachment_transfers rows

    def verify_transfers(self, *_args: Any, **_kwargs: Any) -> None:
        return None
