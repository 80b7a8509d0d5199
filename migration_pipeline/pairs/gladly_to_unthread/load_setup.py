"""What the Unthread loader is given, built one way for the `unthread_loaded_records` asset and the
CLI's `sample` / `dry-run`: its settings from the `unthread` resource, and the Gladly fetchers."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from migration_pipeline.vendors.gladly.client import GladlyClient
from migration_pipeline.vendors.unthread.loader import LoadSettings
from migration_pipeline.vendors.unthread.resources import UnthreadResource


def loader_settings(unthread: UnthreadResource, run_id: str) -> LoadSettings:
    """The loader's settings: every field the resource holds (channels, inbox, mappings, pacing of
    creates, leases, file limit), and the run id stamped on the ledger rows."""
    return LoadSettings(
        triage_channel_id=unthread.triage_channel_id,
        placeholder_user_id=unthread.placeholder_user_id,
        customer_mode=unthread.customer_mode,
        create_attempts=unthread.max_attempts,
        create_backoff_seconds=unthread.backoff_initial_seconds,
        lease_ttl_seconds=unthread.lease_ttl_seconds,
        max_file_bytes=unthread.max_file_bytes,
        email_inbox_id=unthread.email_inbox_id,
        slack_channel_id=unthread.slack_channel_id,
        mappings_file=unthread.mappings_file,
        content_rules_file=unthread.content_rules_file,
        run_id=run_id,
    )


def gladly_fetchers(source: GladlyClient, data_root: Path) -> dict[str, Callable[..., Any]]:
    """`fetch_attachment` and `fetch_transcript` for `UnthreadLoader`. Attachments are streamed to
    anonymous temp files on the data volume (nothing is left behind even by a crash), never held
    whole in memory; call notes get Gladly's voice transcript."""
    return {
        "fetch_attachment": partial(source.download_attachment, scratch_dir=data_root / "tmp" / "attachments"),
        "fetch_transcript": source.voice_transcript,
    }
