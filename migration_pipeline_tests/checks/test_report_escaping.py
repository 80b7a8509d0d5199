"""Hostile text in the reports (issue 12, item 8): names, reasons and ids from Gladly, the staging
database or a vendor's error message end up in the markdown report, the markdown metadata the
Dagster UI renders, and the HTML report. None of them may break a table, start a heading, inject
HTML or a link; each stays readable. The markdown is checked by rendering it with a CommonMark +
GFM-tables parser (markdown-it-py), not by string matching alone."""

from __future__ import annotations

import re
from collections import Counter
from types import SimpleNamespace

from markdown_it import MarkdownIt

from migration_pipeline.pairs.gladly_to_unthread.assets.loaded_records import fidelity_metadata
from migration_pipeline.pairs.gladly_to_unthread.assets.reconciliation_report import render_markdown
from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import Reconciliation
from migration_pipeline.lib.reconcile.report_html import CheckOutcome
from migration_pipeline.pairs.gladly_to_unthread.checks.report_html import render_html
from migration_pipeline.lib.markdown import md_cell
from migration_pipeline.vendors.unthread.loader import LoadCounts

SCRIPT = "<script>alert(1)</script>"
HOSTILE = f"Eve | Mallory\n# Injected heading\r\n> quote\n- list {SCRIPT} `tick` [click](javascript:alert(2)) ![x](http://t.example/p.gif) a\\|b"


def _hostile_reconciliation() -> Reconciliation:
    rec = Reconciliation(window=("2026-03-01T00:00:00.000000Z", "2026-03-02T00:00:00.000000Z"))
    rec.source_items, rec.read_back = 3, 1
    rec.by_day = [{"day": "2026-03-01", "source": 3, "staged": 2, "in_tickets": 2, "loaded": 1, "read_back": 1}]
    rec.quarantine_reasons = Counter({HOSTILE: 2})
    rec.dead_letters = [{"source_key": f"message:{HOSTILE}", "attempts": 1, "reason": HOSTILE}]
    rec.dead_letter_reasons = Counter({HOSTILE: 1})
    rec.unmatched_agents = [{"agent_id": HOSTILE, "name": HOSTILE, "email": HOSTILE, "active": True, "items": 1}]
    rec.missing = [{"item_id": HOSTILE, "day": "2026-03-01", "stage": "staging", "reason": HOSTILE}]
    rec.losses = [
        {"key": f"item:{HOSTILE}", "kind": "item", "stage": "staging", "reason": HOSTILE, "accepted": None},
        {"key": f"line:{HOSTILE}/x.jsonl:3", "kind": "line", "stage": "staging", "reason": HOSTILE, "accepted": HOSTILE},
    ]
    return rec


def _rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def _assert_inert(markdown: str, headings: int, header_cells: list[int]) -> None:
    """No raw HTML and no link in the markdown as written or rendered, only the headings and
    tables the report makes, every row of a table with its header's number of cells."""
    assert SCRIPT not in markdown and "&lt;script&gt;" in markdown
    html = _rendered(markdown)
    assert "<script" not in html and "<a " not in html and "<img" not in html and "<blockquote" not in html
    assert "Injected heading" in html and not re.search(r"<h\d>[^<]*Injected", html)
    assert len(re.findall(r"<h\d>", html)) == headings
    tables = re.findall(r"<table>.*?</table>", html, re.S)
    assert sorted(len(re.findall(r"<th[ >]", t.split("</thead>", 1)[0])) for t in tables) == sorted(header_cells)
    for table in tables:
        head = len(re.findall(r"<th[ >]", table.split("</thead>", 1)[0]))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("</thead>", 1)[1], re.S):
            assert len(re.findall(r"<td[ >]", row)) == head, row
    # the text is still there to read
    assert "Eve \\| Mallory" in markdown or "Eve | Mallory" in html


def test_markdown_report_keeps_hostile_cells_inside_their_table_cells():
    rec = _hostile_reconciliation()
    outcomes = [CheckOutcome("variance_within_tolerance", False, HOSTILE)]
    markdown = render_markdown(rec, outcomes)
    # title + quarantine, dead letters, unmatched agents, missing, losses sections
    _assert_inert(markdown, headings=6, header_cells=[3, 6, 2, 3, 4, 3, 4])
    assert "Eve | Mallory" in _rendered(markdown)


def test_load_asset_markdown_metadata_escapes_agent_names_and_emails():
    loader = SimpleNamespace(mappings=SimpleNamespace(version="m1"), rules=SimpleNamespace(version="r1"))
    unmatched = [{"id": HOSTILE, "name": HOSTILE, "email": HOSTILE, "stand_in": HOSTILE}]
    markdown = fidelity_metadata(LoadCounts(), unmatched, loader)["unmatched_agent_list"].value
    _assert_inert(markdown, headings=0, header_cells=[4])


def test_md_cell_escapes_what_markdown_and_html_would_act_on():
    assert md_cell(None) == ""
    assert md_cell(42) == "42"
    assert md_cell("a|b") == "a\\|b"
    assert md_cell("a\\|b") == "a\\\\\\|b"  # a backslash cannot escape the pipe's escape
    assert md_cell("line1\nline2\r\nline3\u2028x\x00y") == "line1 line2 line3 x y"
    assert md_cell("<b>&amp;</b>") == "&lt;b&gt;&amp;amp;&lt;/b&gt;"
    assert md_cell("`x` [a](b)") == "\\`x\\` \\[a\\](b)"
    assert md_cell("plain-id_01 Ann O'Neil") == "plain-id_01 Ann O'Neil"  # ordinary text unchanged


def test_html_report_escapes_agent_names_quarantine_reasons_and_item_ids():
    """The HTML report escaped correctly before the markdown fix: this proves it, chart labels
    (plotly's JSON inside a script element) included."""
    rec = _hostile_reconciliation()
    breakout = f"</script>{SCRIPT}"
    rec.quarantine_reasons = Counter({breakout: 2, HOSTILE: 1})
    rec.dead_letter_reasons = Counter({breakout: 1})
    html = render_html(rec, checks=[CheckOutcome(HOSTILE, False, HOSTILE)], run_id=SCRIPT, generated_at=SCRIPT)
    assert SCRIPT not in html and breakout not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8  # agent id, name, email, item id, losses, reasons, run
    # every <script> element in the file is plotly's own: opened and closed the same number of times
    assert html.count("<script") == html.count("</script>")
    assert 'href="javascript:' not in html


def test_the_first_screen_separates_data_guarantees_from_workspace_limits():
    """A check failed only by what the workspace lacks is a warning in its own table, after the
    data guarantees; a real failure stays among the guarantees, marked FAILED."""
    rec = _hostile_reconciliation()
    outcomes = [
        CheckOutcome("no_duplicate_messages", True, "0 source items found more than once"),
        CheckOutcome("messages_in_source_order", False, "2 conversations out of order"),
        CheckOutcome("tag_coverage", False, "this workspace takes no tags", limit=True),
    ]
    markdown = render_markdown(rec, outcomes)
    guarantees, _, limits = markdown.partition("**Workspace limits**")
    assert "**Data guarantees**" in guarantees and limits
    assert "| messages_in_source_order | **FAILED** |" in guarantees and "tag_coverage" not in guarantees
    assert "| tag_coverage | WARN | this workspace takes no tags |" in limits
    html = render_html(rec, checks=outcomes)
    first, _, rest = html.partition("Workspace limits")
    assert ">FAILED<" in first and "tag_coverage" not in first
    assert ">WARN<" in rest and 'class="warn"' in rest
    # nothing limited: no limits table at all
    assert "Workspace limits" not in render_markdown(rec, outcomes[:2])
