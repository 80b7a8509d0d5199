"""The pieces every pair's reconciliation report is made of: one self-contained HTML page
(`document`), sections, tables, the checks, charts per day and per reason. No Dagster import.

The file is what a migration lead signs off before cutover, so it must open anywhere, offline:
plotly.js is inlined once (in the first chart), nothing is fetched from a CDN, and the tables are
plain HTML. A table shows at most MAX_ROWS rows and then links the list's Parquet file, which
holds every row (lib/reconcile/full_lists.py). Each pair composes its own report from these
(pairs/gladly_to_unthread/checks/report_html.py, pairs/zendesk_to_gladly/assets/reconciliation.py).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

from migration_pipeline.lib.reconcile.full_lists import listed_note

MAX_ROWS = 1000  # rows per HTML table; the list's Parquet file holds them all


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


def reasons_figure(reasons: Counter, title: str, axis: str) -> go.Figure:
    """A horizontal bar per reason, the most frequent on top."""
    ordered = reasons.most_common()[::-1]
    fig = go.Figure(go.Bar(x=[n for _, n in ordered], y=[_short(r) for r, _ in ordered], orientation="h"))
    fig.update_layout(title=title, xaxis_title=axis, height=max(260, 40 * len(ordered) + 140), margin_l=320)
    return fig


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



def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _link(href: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(href)}</a>'


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


section, table, link = _section, _table, _link  # for reports composed outside this module
