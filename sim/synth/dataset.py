"""The on-disk dataset format shared by the messy data generator and the Gladly emulator.

A dataset is a folder. The generator (`migration-pipeline generate`, `sim.synth.writers.gladly`)
writes it; the Gladly emulator (`migration-pipeline emulator gladly --data DIR`) serves it; users
can hand-edit it or build their own to rehearse a migration on data shaped like theirs.

    DIR/
      manifest.json                    ground truth written by the generator (see below);
                                       the emulator does not need it
      gladly/
        organization.json              {id, name, loginDomain, timezone, gladlyUrl}   (optional)
        schedule.json                  [Schedule]  {id, frequency: DAILY|HOURLY, type: CONVERSATIONS,
                                                    nextStartAt, updatedAt}
        agents.json                    [{id, name, emailAddress}]  current agents (REST /agents);
                                       inactive agents are absent here but appear in old items
        topics.json                    [{id, name, disabled, parentId?}]  (REST /topics)
        customers.jsonl                one REST customer profile per line:
                                       {id, name, address?, emails:[{original, normalized, primary}],
                                        phones:[{original, normalized, regionCode, primary, type?}],
                                        externalCustomerIds?, customAttributes, createdAt, updatedAt}
        merges.json                    {"<merged-away id>": "<surviving id>"}; GET profile of a
                                       merged-away id answers 301 with errors[].meta{old,new}
        conversations.jsonl            one REST Conversation per line: {id, customerId, createdAt,
                                        inboxId, status, topicIds, customAttributes, agentId?,
                                        closedAt?}
        transcripts.jsonl              optional: {itemId, paragraphs:[...], customerId,
                                        numberOfSpeakers, language, createdAt, updatedAt}
        attachments/<attachmentId>     attachment bytes; the item content's attachments[] entry
                                       {id, contentType, filename, fileSize} names them
        recordings/<itemId>.mp3        optional call/voicemail recordings
        jobs/<jobId>/job.json          the Export Job exactly as the API returns it:
                                       {id, scheduleId, status, updatedAt,
                                        parameters:{type, startAt, endAt}, files:[...]}
        jobs/<jobId>/<name>.jsonl      the job's NDJSON files, served byte for byte (they may hold
                                       malformed lines on purpose)
      unthread/
        workspace.json                 what already exists in the target Unthread workspace, seeded
                                       into the Unthread emulator: {users:[{id, name, email,
                                       slackId?, photo?}], triageChannels:[{id, name}],
                                       emailInboxes:[{id, email}], slackChannels:[{id, name}]}

Conversation items served by the REST item endpoints are the union of every job's
`conversation_items.jsonl` lines (deduplicated by item id, malformed lines ignored), so the REST
API keeps answering after a job's files expire, as Gladly's does.

Export jobs are visible to the API when `updatedAt <= now` and `updatedAt > now - 14 days`
(the emulator's clock: the wall clock unless pinned with `--now`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Lives in core (the pipeline reads export files with it); importable here for the generator's users.
from migration_pipeline.lib.jsonl import iter_jsonl  # noqa: F401

FORMAT_VERSION = 1
EXPORT_FILES = ("agents.jsonl", "conversation_items.jsonl", "customers.jsonl", "topics.jsonl")
RETENTION_DAYS = 14


class DatasetLayout:
    """Paths inside a dataset folder; one place so writer and reader never disagree."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def gladly(self) -> Path:
        return self.root / "gladly"

    @property
    def organization(self) -> Path:
        return self.gladly / "organization.json"

    @property
    def schedule(self) -> Path:
        return self.gladly / "schedule.json"

    @property
    def agents(self) -> Path:
        return self.gladly / "agents.json"

    @property
    def topics(self) -> Path:
        return self.gladly / "topics.json"

    @property
    def customers(self) -> Path:
        return self.gladly / "customers.jsonl"

    @property
    def merges(self) -> Path:
        return self.gladly / "merges.json"

    @property
    def conversations(self) -> Path:
        return self.gladly / "conversations.jsonl"

    @property
    def transcripts(self) -> Path:
        return self.gladly / "transcripts.jsonl"

    @property
    def attachments_dir(self) -> Path:
        return self.gladly / "attachments"

    @property
    def recordings_dir(self) -> Path:
        return self.gladly / "recordings"

    @property
    def jobs_dir(self) -> Path:
        return self.gladly / "jobs"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def job_file(self, job_id: str, name: str) -> Path:
        return self.job_dir(job_id) / name

    @property
    def unthread_workspace(self) -> Path:
        return self.root / "unthread" / "workspace.json"

    def job_ids(self) -> list[str]:
        if not self.jobs_dir.is_dir():
            return []
        return sorted(p.name for p in self.jobs_dir.iterdir() if (p / "job.json").is_file())


def read_json(path: Path, default: Any = None) -> Any:
    if not path.exists():
        return default
    with path.open("r", encoding="utf-8") as fh:
        return json.load(fh)


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(value, fh, ensure_ascii=False, indent=1, sort_keys=True)
    tmp.replace(path)
