"""Markdown cells that stay inert whatever text they carry. No Dagster import.

Agent names, customer and item ids, quarantine reasons and a vendor's error messages reach
markdown tables (the reconciliation report's .md file, `MetadataValue.md` values the Dagster UI
renders). Unescaped, a `|` splits a cell, a newline ends the table and lets the next line be a
heading or a quote, `<script>` lands in the file as HTML, and `[x](javascript:...)` or
`![](http://...)` become a link or a remote image. `md_cell` is the one place that turns any
value into text that renders as itself inside one table cell.
"""

from __future__ import annotations

import html
import re
from typing import Any

# Line breaks of every kind (a markdown renderer or a browser may break on any of them) and the
# other control characters: each becomes one space, so a cell is always one line.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Backslash first (so it cannot escape the escapes that follow), then what starts code, a link
# or an image, and the cell separator.
_MARKUP = re.compile(r"([\\`\[\]|])")


def md_cell(value: Any) -> str:
    """`value` as the text of one markdown table cell: one line, HTML special characters as
    entities, backslash, backtick, brackets and pipe backslash-escaped. None is empty."""
    if value is None:
        return ""
    text = _BREAKS.sub(" ", str(value))
    text = html.escape(text, quote=False)
    return _MARKUP.sub(r"\\\1", text)


def md_row(values: list[Any] | tuple[Any, ...]) -> str:
    """One markdown table row, every cell through `md_cell`."""
    return "| " + " | ".join(md_cell(v) for v in values) + " |"
