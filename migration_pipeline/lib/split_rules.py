"""The splitting rules file: a versioned YAML document validated by pydantic.

The shipped default is `migration_pipeline/config/splitting_rules.yaml`; a run may point at
another file (`MIGRATION_SPLIT_RULES` in the settings, the split_tickets asset's `rules_file`, or
`migration-pipeline split-preview --rules`), always handed to `SplitRules.load` as a path. A bad file fails with its path and the field at fault.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from migration_pipeline.lib.rule_files import RulesFileError as RulesFileError  # raised by `SplitRules.load`
from migration_pipeline.lib.rule_files import load_rules_file

DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "config" / "splitting_rules.yaml"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = False


class TimeGapRule(_Rule):
    enabled: bool = True
    days: float = Field(default=7.0, gt=0)


class ReopenRule(_Rule):
    closed_days: float = Field(default=3.0, ge=0)


class ChannelSwitchRule(_Rule):
    ignore_channels: tuple[str, ...] = ("note", "system", "activity")


class TopicChangeRule(_Rule):
    pass


class SizeCapRule(_Rule):
    limit: int = Field(default=500, ge=1)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    time_gap: TimeGapRule = TimeGapRule()
    reopen_after_dormancy: ReopenRule = ReopenRule()
    channel_switch: ChannelSwitchRule = ChannelSwitchRule()
    topic_change: TopicChangeRule = TopicChangeRule()
    max_items_per_ticket: SizeCapRule = SizeCapRule()


class SplitRules(BaseModel):
    """One version of the rules. `rule_version` (what every ticket records) is the declared
    version plus a fingerprint of the rules, so an edit without a version bump still shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int | str
    rules: RuleSet = RuleSet()

    @cached_property
    def fingerprint(self) -> str:
        canonical = json.dumps(self.rules.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:6]

    @cached_property
    def rule_version(self) -> str:
        return f"v{str(self.version)[:20]}+{self.fingerprint}"

    @cached_property
    def gap(self) -> timedelta:
        return timedelta(days=self.rules.time_gap.days)

    def counts_as_channel(self, channel: str | None) -> bool:
        """Customer-facing channels the channel-switch rule compares (not notes, system events)."""
        return channel is not None and channel not in self.rules.channel_switch.ignore_channels

    def describe(self) -> list[str]:
        """One line per enabled rule, for previews and metadata."""
        r, lines = self.rules, []
        if r.time_gap.enabled:
            lines.append(f"time_gap: more than {r.time_gap.days:g} days of silence")
        if r.reopen_after_dormancy.enabled:
            lines.append(f"reopen_after_dormancy: OPEN again {r.reopen_after_dormancy.closed_days:g}+ days after CLOSED")
        if r.channel_switch.enabled:
            lines.append(f"channel_switch: other channel (ignoring {', '.join(r.channel_switch.ignore_channels)})")
        if r.topic_change.enabled:
            lines.append("topic_change: a topic the ticket does not have")
        if r.max_items_per_ticket.enabled:
            lines.append(f"max_items_per_ticket: {r.max_items_per_ticket.limit}")
        return lines

    @classmethod
    def time_gap_only(cls, gap: timedelta) -> SplitRules:
        return cls(
            version="timegap",
            rules=RuleSet(
                time_gap=TimeGapRule(days=gap.total_seconds() / 86400),
                reopen_after_dormancy=ReopenRule(enabled=False),
                max_items_per_ticket=SizeCapRule(enabled=False),
            ),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> SplitRules:
        """The rules in `path`, else the shipped default."""
        chosen = Path(path or DEFAULT_RULES_FILE)
        return load_rules_file(cls, chosen, "splitting rules")
