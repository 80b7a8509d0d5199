"""Preflight: checks that must pass before the first write to an Unthread workspace. No Dagster.

Blocking (the load does not start):
- the credentials work: one cheap authenticated read (`POST /users/list`, limit 1); the reason is
  named from the status (401/403, unreachable, ...), never with the key;
- the triage channel the conversations are created in is configured (Unthread documents no
  channel list, so its existence is proven by the first create, not here);
- a configured placeholder user exists in the workspace.
- what the workspace supports of the UNCONFIRMED surface, probed once (capabilities.py) and
  recorded in `target_capabilities`; a later run reads the record and sends no probe. Without a
  blocking capability (metadata kept and found on conversations) the load cannot prove
  exactly-once and does not start; an optional one missing is a warning with what the load does
  instead.
Listed, not blocking: agents with no Unthread user of the same email (they post as the placeholder
user, or by name without one), and the reminder to pause the workspace's automations and
autoresponders during the import (the API cannot read or switch them).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import sqlalchemy as sa

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.staging.db import StagingDatabase, agents, exclusive
from migration_pipeline.vendors.unthread.capabilities import PROBE_KEY, CapabilityStore, Finding, ProbeIncomplete, Prober, render
from migration_pipeline.vendors.unthread.client import UnthreadClient

AUTOMATIONS_WARNING = (
    "Pause the target workspace's automations, autoresponders, SLAs and notifications while the import "
    "runs: every migrated conversation is a new conversation to Unthread, and the API cannot switch them off."
)


@dataclass
class PreflightReport:
    passed_checks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    matched_agents: int = 0
    unmatched_agents: list[dict[str, Any]] = field(default_factory=list)
    offline: bool = False
    capabilities: list[Finding] = field(default_factory=list)  # every finding on record
    probed_now: list[str] = field(default_factory=list)  # names probed by this run

    @property
    def missing_capabilities(self) -> list[Finding]:
        return [f for f in self.capabilities if not f.supported]

    @property
    def passed(self) -> bool:
        return not self.failures

    def render(self) -> str:
        lines = [f"preflight {'PASSED' if self.passed else 'FAILED'}{' (offline: configuration only)' if self.offline else ''}"]
        lines += [f"  ok    {c}" for c in self.passed_checks]
        lines += [f"  FAIL  {f}" for f in self.failures]
        lines += [f"  warn  {w}" for w in self.warnings]
        if self.capabilities:
            probed = f"probed now: {', '.join(self.probed_now)}" if self.probed_now else "all on record, nothing probed"
            lines.append(f"  workspace capabilities ({probed}):")
            lines += [f"    {line}" for line in render(self.capabilities)]
        if self.unmatched_agents:
            lines.append(f"  unmatched agents ({len(self.unmatched_agents)}):")
            lines += [f"    - {a['id']} {a['name'] or ''} <{a['email'] or 'no email'}>" for a in self.unmatched_agents]
        return "\n".join(lines) + "\n"


def _reason(exc: Exception) -> str:
    if isinstance(exc, VendorAPIError):
        if exc.status in (401, 403):
            return f"Unthread rejected the API key (HTTP {exc.status} on {exc.method} {exc.path}): check UNTHREAD_API_KEY"
        if exc.status == 404:
            return f"{exc.method} {exc.path} answered 404: check UNTHREAD_BASE_URL (it should end in /api)"
        if exc.status is None:
            return f"Unthread could not be reached ({exc.method} {exc.path}): check UNTHREAD_BASE_URL and the network"
        return f"Unthread answered HTTP {exc.status} on {exc.method} {exc.path}: {exc.detail[:200]}"
    if isinstance(exc, httpx.HTTPError):
        return f"Unthread could not be reached ({exc.__class__.__name__}): check UNTHREAD_BASE_URL and the network"
    return f"preflight request failed ({exc.__class__.__name__})"


def run_preflight(
    client: UnthreadClient | None,
    db: StagingDatabase | None,
    *,
    triage_channel_id: str | None,
    placeholder_user_id: str | None,
    offline: bool = False,
    reprobe: bool = False,
) -> PreflightReport:
    """Run every check; `offline` (dry runs) checks the configuration only and sends nothing.
    Capabilities are probed only where none is on record (`reprobe` forgets the record first)."""
    report = PreflightReport(offline=offline)
    if triage_channel_id and triage_channel_id.strip():
        report.passed_checks.append(f"triage channel configured ({triage_channel_id})")
    else:
        report.failures.append("no triage channel configured: set UNTHREAD_TRIAGE_CHANNEL_ID to the channel id")
    report.warnings.append(AUTOMATIONS_WARNING)
    if offline or client is None:
        report.warnings.append("credentials, placeholder user and agent mapping not checked (offline)")
        return report

    try:
        users = client.list_users()  # one authenticated read (a page per 100 users)
    except (VendorAPIError, httpx.HTTPError) as exc:
        report.failures.append(_reason(exc))
        return report
    report.passed_checks.append(f"credentials work ({len(users)} Unthread users visible)")
    by_id = {u["id"]: u for u in users}
    by_email = {u["email"].strip().lower(): u for u in users if isinstance(u.get("email"), str)}

    if placeholder_user_id:
        if placeholder_user_id in by_id:
            report.passed_checks.append(f"placeholder user {placeholder_user_id} exists")
        else:
            report.failures.append(f"placeholder user {placeholder_user_id} is not a user of this workspace")
    else:
        report.warnings.append(
            "no placeholder user configured (UNTHREAD_PLACEHOLDER_USER_ID): messages of unmatched agents post under the agent's name"
        )

    if db is not None:
        with db.engine.connect() as conn:
            staged = conn.execute(sa.select(agents.c.source_id, agents.c.name, agents.c.email).order_by(agents.c.source_id)).all()
        for agent in staged:
            if (agent.email or "").strip().lower() in by_email:
                report.matched_agents += 1
            else:
                report.unmatched_agents.append({"id": agent.source_id, "name": agent.name, "email": agent.email})
        report.passed_checks.append(
            f"agents mapped by email: {report.matched_agents} of {len(staged)} ({len(report.unmatched_agents)} unmatched, listed)"
        )
        if not report.failures and triage_channel_id:
            _probe(report, client, db, triage_channel_id, placeholder_user_id or next(iter(by_id), None), reprobe)
    return report


def _probe(report: PreflightReport, client: UnthreadClient, db: StagingDatabase, triage: str, user_id: str | None, reprobe: bool) -> None:
    # One prober at a time (two runs starting together would share, and delete, one probe
    # conversation); the record is read under the lease, so the second finds the first's answers.
    owner = f"preflight:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with exclusive(db, PROBE_KEY, owner, ttl_seconds=120.0):
        store = CapabilityStore(db)
        if reprobe:
            store.forget()
        try:
            report.probed_now = [f.name for f in Prober(client, db, store, triage_channel_id=triage, user_id=user_id).run()]
        except (ProbeIncomplete, httpx.HTTPError) as exc:
            report.failures.append(f"capability probe incomplete: {exc}")
    report.capabilities = store.findings()
    for finding in report.missing_capabilities:
        cap = finding.capability
        (report.failures if cap.blocking else report.warnings).append(
            f"workspace lacks {finding.name} ({finding.detail}): {cap.without}"
        )
    if not report.missing_capabilities and report.capabilities:
        report.passed_checks.append(f"workspace supports all {len(report.capabilities)} probed capabilities")
