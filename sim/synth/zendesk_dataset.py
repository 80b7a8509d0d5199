"""The on-disk format of a Zendesk dataset, shared by the generator (`sim.synth.writers.zendesk`) and the
Zendesk emulator (`sim.emulators.zendesk`).

A dataset is a folder; `migration-pipeline generate --source zendesk` writes it, the emulator
serves its `api/` part, and the `exports/` folders are what Zendesk hands over (a rehearsal drops
one of them in the landing folder `MIGRATION_DATA_DIR/landing/zendesk/`). Users may hand-edit it.

    DIR/
      manifest.json                  ground truth (counts, every planted mess and where it is)
      zendesk/
        account.json                 {subdomain, url, name, exportedAt, deltaAt}: the full export
                                     was taken at exportedAt (the emulator's clock starts there);
                                     the delta happened by deltaAt (move the clock past it)
        exports/<delivery>/          one full JSON export as handed over, per comment mode
                                     (`embedded`: ticket lines carry `comments`; `absent`: they do
                                     not, whether Zendesk embeds them is unconfirmed) and format:
          <mode>/                    tickets.json, users.json, organizations.json (plain NDJSON)
          <mode>-gz/                 the same files gzipped: tickets.json.gz, ...
          <mode>-zip/export.zip      the same three files, flat, in one ZIP
        api/                         the state the API serves (one JSON object per line):
          tickets.jsonl              ticket versions: the ticket as the incremental export returns
                                     it (with generated_timestamp); a ticket changed in the delta
                                     has one line per change; the emulator serves the newest
                                     version whose generated_timestamp is not after its clock
          comments.jsonl             {"ticket_id": N, "comment": {...}}, shown from created_at on
          users.jsonl                every user the API knows (shown from created_at on);
                                     permanently deleted users are absent

Every export line is API-shaped: `{"url":"https://SUB.zendesk.com/api/v2/tickets/123.json",...}`
(or `/users/`, `/organizations/`), so its type can be read from the line itself. Lines are in id
order; the malformed lines the manifest lists are identical in every delivery.
"""

from __future__ import annotations

from pathlib import Path

EXPORT_TYPES = ("tickets", "users", "organizations")
COMMENT_MODES = ("embedded", "absent")
ZIP_NAME = "export.zip"


class ZendeskLayout:
    """Paths inside a Zendesk dataset folder; one place so writer and reader never disagree."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def zendesk(self) -> Path:
        return self.root / "zendesk"

    @property
    def account(self) -> Path:
        return self.zendesk / "account.json"

    @property
    def exports_dir(self) -> Path:
        return self.zendesk / "exports"

    def plain_export(self, mode: str, kind: str) -> Path:
        return self.exports_dir / mode / f"{kind}.json"

    def gz_export(self, mode: str, kind: str) -> Path:
        return self.exports_dir / f"{mode}-gz" / f"{kind}.json.gz"

    def zip_export(self, mode: str) -> Path:
        return self.exports_dir / f"{mode}-zip" / ZIP_NAME

    @property
    def api_dir(self) -> Path:
        return self.zendesk / "api"

    @property
    def api_tickets(self) -> Path:
        return self.api_dir / "tickets.jsonl"

    @property
    def api_comments(self) -> Path:
        return self.api_dir / "comments.jsonl"

    @property
    def api_users(self) -> Path:
        return self.api_dir / "users.jsonl"
