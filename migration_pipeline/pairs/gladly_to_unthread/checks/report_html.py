"""Gladly -> Unthread's reconciliation report as one self-contained HTML file (the pieces are
lib/reconcile/report_html.py). No Dagster import.

Charts: source vs staged vs in tickets vs loaded vs read back per day, quarantine reasons,
dead-letter reasons, ticket size distribution; tables: the checks, unmatched agents, the missing
items with the stage where each stopped, and every problem list. What it reads of a
reconciliation is `ReconciliationView` (the pair's `Reconciliation` is one).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import plotly.graph_objects as go

from migration_pipeline.lib.files import atomic_write_text
from migration_pipeline.lib.reconcile.report_html import (  # noqa: F401  (MAX_ROWS: the tables' cut, re-exported)
    MAX_ROWS,
    CheckOutcome,
    document,
    link,
    reasons_figure,
    section as _section,
    table as _table,
)

STAGES = ("source", "staged", "in_tickets", "loaded", "read_back")


Rows = Sequence[Mapping[str, Any]]


class ReconciliationView(Protocol):
    """What the report reads of a reconciliation (the first pair's `Reconciliation` is one): the
    window, the counts per stage, and the lists of what went wrong, each row a mapping. A list
    named in `full_lists` is also read by that name (for its number of rows)."""

    @property
    def window(self) -> tuple[str, str]: ...
    @property
    def by_day(self) -> Rows: ...
    @property
    def source_items(self) -> int: ...
    @property
    def staged(self) -> int: ...
    @property
    def quarantined_lines(self) -> int: ...
    @property
    def in_tickets(self) -> int: ...
    @property
    def loaded(self) -> int: ...
    @property
    def read_back(self) -> int: ...
    @property
    def variance(self) -> float: ...
    @property
    def tickets_in_window(self) -> int: ...
    @property
    def conversations_checked(self) -> int: ...
    @property
    def conversations_expected(self) -> int: ...
    @property
    def messages_attributed(self) -> int: ...
    @property
    def agents_seen(self) -> int: ...
    @property
    def quarantine_reasons(self) -> Counter: ...
    @property
    def dead_letter_reasons(self) -> Counter: ...
    @property
    def ticket_sizes(self) -> Sequence[int]: ...
    @property
    def dead_letters(self) -> Rows: ...
    @property
    def unmatched_agents(self) -> Rows: ...
    @property
    def missing(self) -> Rows: ...
    @property
    def losses(self) -> Rows: ...
    @property
    def unaccepted_losses(self) -> Rows: ...
    @property
    def out_of_order(self) -> Rows: ...
    @property
    def duplicates(self) -> Rows: ...
    @property
    def attribution_mismatches(self) -> Rows: ...
    @property
    def conversation_customer_mismatches(self) -> Rows: ...
    @property
    def duplicate_customers(self) -> Rows: ...
    @property
    def merged_customers_on_target(self) -> Rows: ...
    @property
    def customers_missing_on_target(self) -> Rows: ...
    @property
    def conversations_gone(self) -> Rows: ...


def day_figure(rec: ReconciliationView) -> go.Figure:
    """Items per UTC day at each stage: a gap between two bars is where records went missing."""
    days = [d["day"] for d in rec.by_day]
    fig = go.Figure(
        [go.Bar(name=stage.replace("_", " "), x=days, y=[d.get(stage, 0) for d in rec.by_day]) for stage in STAGES]
    )
    fig.update_layout(
        title="Items per day: source vs staged vs in tickets vs loaded vs read back",
        barmode="group", xaxis_title="UTC day", yaxis_title="items", legend_orientation="h", height=420,
    )
    return fig


def ticket_size_figure(sizes: Sequence[int]) -> go.Figure:
    """Histogram of items per ticket (every ticket touching the window)."""
    fig = go.Figure(go.Histogram(x=list(sizes), nbinsx=min(60, max(10, len(set(sizes))))))
    fig.update_layout(title=f"Ticket size distribution ({len(sizes)} tickets)", xaxis_title="items per ticket",
                      yaxis_title="tickets", height=380)
    return fig


def render_html(
    rec: ReconciliationView,
    *,
    checks: Iterable[CheckOutcome] = (),
    run_id: str | None = None,
    generated_at: str | None = None,
    full_lists: Mapping[str, str] | None = None,
) -> str:
    """The whole report as one HTML document (plotly.js inlined in the first chart only).
    `full_lists`: each list's Parquet file (by `rec` attribute), as a link relative
    to the HTML file: listed at the end, and linked under each table cut at MAX_ROWS."""
    charts: list[str] = []
    files = dict(full_lists or {})

    def chart(fig: go.Figure) -> None:
        charts.append(
            fig.to_html(full_html=False, include_plotlyjs=not charts, config={"displaylogo": False, "responsive": True})
        )

    chart(day_figure(rec))
    sections = [_section("Per day", charts[-1])]
    if rec.quarantine_reasons:
        chart(reasons_figure(rec.quarantine_reasons, "Quarantined lines by reason", "lines"))
        sections.append(_section("Quarantine", charts[-1]))
    else:
        sections.append(_section("Quarantine", "<p>No quarantined line.</p>"))
    if rec.dead_letter_reasons:
        chart(reasons_figure(rec.dead_letter_reasons, "Dead letters (refused by the target) by reason", "writes"))
        sections.append(_section("Dead letters", charts[-1] + _table(
            ["source key", "attempts", "reason"],
            [[d["source_key"], d["attempts"], d["reason"]] for d in rec.dead_letters], full_list=files.get("dead_letters"),
        )))
    else:
        sections.append(_section("Dead letters", "<p>No write was refused by the target.</p>"))
    if rec.ticket_sizes:
        chart(ticket_size_figure(rec.ticket_sizes))
        sections.append(_section("Tickets", charts[-1]))
    sections.append(_section(
        f"Unmatched agents ({len(rec.unmatched_agents)} of {rec.agents_seen})",
        "<p>Agents who wrote items in this window but have no Unthread user with their email: their "
        "messages are posted as the placeholder user, or under their name.</p>"
        + _table(["agent", "name", "email", "active in Gladly", "items"],
                 [[a["agent_id"], a["name"], a["email"], "yes" if a["active"] else "no", a["items"]]
                  for a in rec.unmatched_agents], full_list=files.get("unmatched_agents")),
    ))
    sections.append(_section(
        f"Missing from Unthread ({len(rec.missing)})",
        _table(["item", "day", "stage", "reason"], [[m["item_id"], m.get("day"), m["stage"], m["reason"]] for m in rec.missing],
               full_list=files.get("missing")),
    ))
    if rec.losses:
        open_ = rec.unaccepted_losses
        sections.append(_section(
            f"Not in Unthread: every item, line and write ({len(rec.losses)}; {len(open_)} not accepted)",
            "<p>Each must be loaded, or accepted in the reviewed accepted-losses file, for the "
            "every_source_item_accounted_for check to pass.</p>"
            + _table(["loss", "stage", "reason", "accepted because"],
                     [[x["key"], x["stage"], x["reason"], x.get("accepted") or "not accepted"]
                      for x in open_ + [x for x in rec.losses if x.get("accepted")]],
                     row_class=lambda row: "ok" if row[3] != "not accepted" else "bad", full_list=files.get("losses")),
        ))
    problems = [
        ("out_of_order", "Messages out of source order", ["ticket", "conversation"],
         [[o["ticket_id"], o["conversation_id"]] for o in rec.out_of_order]),
        ("duplicates", "Duplicate messages", ["item", "conversation", "copies"],
         [[d["item_id"], d["conversation_id"], d["copies"]] for d in rec.duplicates]),
        ("attribution_mismatches", "Messages from the wrong person", ["item", "conversation", "message", "expected", "found"],
         [[a["item_id"], a["conversation_id"], a["message_id"], a["expected"], a["found"]] for a in rec.attribution_mismatches]),
        ("conversation_customer_mismatches", "Conversations under the wrong customer",
         ["ticket", "conversation", "Gladly customer", "expected", "found"],
         [[c["ticket_id"], c["conversation_id"], c["gladly_customer"], c["expected_customer"], c["found_customer"]]
          for c in rec.conversation_customer_mismatches]),
        ("duplicate_customers", "Duplicate Unthread customers", ["Gladly id", "Unthread customers"],
         [[d["gladly_id"], ", ".join(d["unthread_ids"])] for d in rec.duplicate_customers]),
        ("merged_customers_on_target", "Merged-away Gladly profiles with an Unthread customer",
         ["Gladly id", "merged into", "Unthread customers"],
         [[m["gladly_id"], m["merged_into"], ", ".join(m["unthread_ids"])] for m in rec.merged_customers_on_target]),
        ("customers_missing_on_target", "Loaded customers not found on Unthread", ["Gladly id"],
         [[c["gladly_id"]] for c in rec.customers_missing_on_target]),
        ("conversations_gone", "Conversations gone from Unthread", ["ticket", "conversation"],
         [[g["ticket_id"], g["conversation_id"]] for g in rec.conversations_gone]),
    ]
    for name, title, columns, rows in problems:
        if rows:
            sections.append(_section(f"{title} ({len(rows)})", _table(columns, rows, full_list=files.get(name))))

    checks = list(checks)
    classes = {"PASSED": "ok", "WARN": "warn", "FAILED": "bad"}
    guarantees = [c for c in checks if not (c.limit and not c.passed)]
    limits = [c for c in checks if c.limit and not c.passed]
    check_table = _section("Data guarantees: nothing lost, duplicated, out of order or misattributed", _table(
        ["check", "result", "detail"],
        [[c.name, c.result, c.detail] for c in guarantees],
        row_class=lambda row: classes[row[1]],
    )) if checks else ""
    if limits:
        check_table += _section("Workspace limits: what this Unthread workspace does not offer (warnings, no data lost)", _table(
            ["check", "result", "detail"], [[c.name, c.result, c.detail] for c in limits], row_class=lambda row: classes[row[1]],
        ))
    title = f"Reconciliation {rec.window[0][:10]} .. {rec.window[1][:10]}"
    summary = _table(
        ["source", "staged", "quarantined lines", "in tickets", "loaded", "read back", "variance",
         "tickets", "conversations checked", "messages attributed"],
        [[rec.source_items, rec.staged, rec.quarantined_lines, rec.in_tickets, rec.loaded, rec.read_back,
          f"{rec.variance:.4%}", rec.tickets_in_window, f"{rec.conversations_checked} of {rec.conversations_expected}",
          rec.messages_attributed]],
    )
    meta = " · ".join(x for x in (f"window {html.escape(rec.window[0])} .. {html.escape(rec.window[1])} (UTC, end exclusive)",
                                  f"run {html.escape(run_id)}" if run_id else "",
                                  f"generated {html.escape(generated_at)}" if generated_at else "") if x)
    return document(title, meta, [summary, check_table, *sections, _files_section(rec, files)])


def write_html(path: Path, rec: ReconciliationView, **kwargs: Any) -> Path:
    """Render the report and write it atomically (a reader never sees half a file)."""
    return atomic_write_text(path, render_html(rec, **kwargs))


def _files_section(rec: ReconciliationView, files: Mapping[str, str]) -> str:
    """Every list's Parquet file with its number of rows."""
    if not files:
        return ""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{len(getattr(rec, name))}</td><td>{link(href)}</td></tr>"
                   for name, href in files.items())
    return _section("Full lists (Parquet, every row)",
                    f"<table><thead><tr><th>list</th><th>rows</th><th>file</th></tr></thead><tbody>{rows}</tbody></table>")
