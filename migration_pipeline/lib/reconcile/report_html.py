"""The reconciliation report as one self-contained HTML file with plotly charts. No Dagster import.

The file is what a migration lead signs off before cutover, so it must open anywhere, offline:
plotly.js is inlined once (in the first chart), nothing is fetched from a CDN, and the tables
are plain HTML. Charts: source vs staged vs in tickets vs loaded vs read back per day,
quarantine reasons, dead-letter reasons, ticket size distribution; tables: the checks, unmatched
agents, and the missing items with the stage where each stopped. A table shows at most MAX_ROWS
rows and then links the list's Parquet file, which holds every row (lib/reconcile/full_lists.py).
What it reads of a reconciliation is `ReconciliationView`; the pair passes its own object.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import plotly.graph_objects as go

from migration_pipeline.lib.reconcile.full_lists import listed_note
from migration_pipeline.lib.files import atomic_write_text

STAGES = ("source", "staged", "in_tickets", "loaded", "read_back")
MAX_ROWS = 1000  # rows per HTML table; the list's Parquet file holds them all


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


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result. `limit`: a failed check caused by something the target workspace does
    not offer (no data lost, duplicated, out of order or misattributed): shown as a warning, and
    its Dagster check result has WARN severity, so the run stays green."""

    name: str
    passed: bool
    detail: str
    limit: bool = False

    @property
    def result(self) -> str:
        return "PASSED" if self.passed else "WARN" if self.limit else "FAILED"


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


def reasons_figure(reasons: Counter, title: str, axis: str) -> go.Figure:
    """A horizontal bar per reason, the most frequent on top."""
    ordered = reasons.most_common()[::-1]
    fig = go.Figure(go.Bar(x=[n for _, n in ordered], y=[_short(r) for r, _ in ordered], orientation="h"))
    fig.update_layout(title=title, xaxis_title=axis, height=max(260, 40 * len(ordered) + 140), margin_l=320)
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


def document(title: str, meta_html: str, parts: Iterable[str]) -> str:
    """A whole self-contained report page: title, a meta line (already HTML), then the parts."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=\"meta\">{meta_html}</p>"
        f"{''.join(parts)}</body></html>\n"
    )


def checks_section(checks: Sequence[CheckOutcome], heading: str) -> str:
    classes = {"PASSED": "ok", "WARN": "warn", "FAILED": "bad"}
    return _section(heading, _table(["check", "result", "detail"], [[c.name, c.result, c.detail] for c in checks],
                                    row_class=lambda row: classes[row[1]]))


def stages_chart(per_day: Mapping[str, Mapping[str, int]], stages: Sequence[str], title: str) -> str:
    """Records per UTC day at each stage (plotly.js inlined): a gap between bars is a loss."""
    days = sorted(per_day)
    fig = go.Figure([go.Bar(name=s.replace("_", " "), x=days, y=[per_day[d].get(s, 0) for d in days]) for s in stages])
    fig.update_layout(title=title, barmode="group", xaxis_title="UTC day", yaxis_title="records", legend_orientation="h", height=420)
    return fig.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False, "responsive": True})



def write_html(path: Path, rec: ReconciliationView, **kwargs: Any) -> Path:
    """Render the report and write it atomically (a reader never sees half a file)."""
    return atomic_write_text(path, render_html(rec, **kwargs))


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _link(href: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(href)}</a>'


def _files_section(rec: ReconciliationView, files: Mapping[str, str]) -> str:
    """Every list's Parquet file with its number of rows."""
    if not files:
        return ""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{len(getattr(rec, name))}</td><td>{_link(href)}</td></tr>"
                   for name, href in files.items())
    return _section("Full lists (Parquet, every row)",
                    f"<table><thead><tr><th>list</th><th>rows</th><th>file</th></tr></thead><tbody>{rows}</tbody></table>")


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], row_class=None, full_list: str | None = None) -> str:
    """An HTML table of the first MAX_ROWS rows; past them, where all of them are (`full_list`,
    a link relative to the report)."""
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows[:MAX_ROWS]:
        cls = f' class="{row_class(row)}"' if row_class else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>")
    note = listed_note(len(body), len(rows), full_list and _link(full_list))
    more = f"<p>{note}.</p>" if note else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330;max-width:1200px}
h1{margin-bottom:.2rem}.meta{color:#5b6473;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d6dae1;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}tr.ok td:nth-child(2){color:#17803d;font-weight:600}
tr.bad td:nth-child(2){color:#c0262d;font-weight:600}tr.warn td:nth-child(2){color:#a15c00;font-weight:600}section{margin-top:1.5rem}
"""


section, table = _section, _table  # for reports composed outside this module
