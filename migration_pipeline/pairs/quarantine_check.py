"""The quarantine-rate check's verdict, shared by every pair: quarantined source lines a reviewer
has not accepted (accepted-losses file) as a share of the lines read; a warning while within the
limit (MIGRATION_MAX_QUARANTINE_RATE), an error past it, which stops a run when the check is
blocking. Each pair finds its own lines (export jobs, deliveries) and describes where it looked."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import dagster as dg

from migration_pipeline.lib.reconcile.accepted_losses import ACCEPTED_LOSSES_FILE, line_key
from migration_pipeline.settings import MigrationSettings

MAX_LISTED = 50  # lines named in the check's metadata
QUARANTINE_RATE_ENV = "MIGRATION_MAX_QUARANTINE_RATE"


def max_quarantine_rate() -> float:
    """The share of a window's source lines that may be quarantined (and not accepted) before the
    run stops at staging: $MIGRATION_MAX_QUARANTINE_RATE (settings), default 1%."""
    return MigrationSettings.from_env().max_quarantine_rate


MAX_QUARANTINE_RATE = max_quarantine_rate()  # read once, when the definitions load

Line = tuple[str, str, int]  # (job or delivery, file, line)


def quarantine_rate_result(quarantined: Mapping[Line, str], lines: int, accepted: Mapping[str, str], max_rate: float,
                           scope: str, metadata: Mapping[str, Any] | None = None) -> dg.AssetCheckResult:
    """The verdict on `quarantined` lines (-> reason) out of `lines` read; `scope` says where they
    were read ("the window's 3 export jobs"), for the description when nothing is open."""
    open_lines = sorted((k, reason) for k, reason in quarantined.items() if line_key(*k) not in accepted)
    lines = max(lines, len(quarantined))
    rate = len(open_lines) / lines if lines else 0.0
    over = rate > max_rate
    by_reason = Counter(reason[:200] for _, reason in open_lines)
    if open_lines:
        reasons = "; ".join(f"{reason} ({n})" for reason, n in by_reason.most_common(3))
        description = (f"{len(open_lines)} of {lines} lines ({rate:.3%}) quarantined and not accepted, "
                       f"{'over' if over else 'within'} the {max_rate:.2%} limit ({QUARANTINE_RATE_ENV}): {reasons}")
    else:
        description = f"no quarantined line in the {lines} lines of {scope}" + (
            f" but the {len(quarantined)} accepted in {ACCEPTED_LOSSES_FILE}" if quarantined else "")
    return dg.AssetCheckResult(
        passed=not open_lines,
        severity=dg.AssetCheckSeverity.ERROR if over else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            **(metadata or {}),
            "lines": dg.MetadataValue.int(lines),
            "quarantined": dg.MetadataValue.int(len(quarantined)),
            "accepted": dg.MetadataValue.int(len(quarantined) - len(open_lines)),
            "not_accepted": dg.MetadataValue.int(len(open_lines)),
            "rate": dg.MetadataValue.float(rate),
            "max_rate": dg.MetadataValue.float(max_rate),
            "by_reason": dg.MetadataValue.json(dict(by_reason.most_common())),
            "by_file": dg.MetadataValue.json(dict(Counter(file for (_, file, _), _ in open_lines))),
            "not_accepted_lines": dg.MetadataValue.json(
                [{"key": line_key(*k), "reason": reason} for k, reason in open_lines[:MAX_LISTED]]),
        },
    )
