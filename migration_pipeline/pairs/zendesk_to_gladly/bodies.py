"""Zendesk comment bodies as Gladly's import shows them: plain text, links kept. No Dagster import.

An imported item is shown as text, so HTML is rendered to readable plain text (`html_to_text`)
rather than markdown: `[text](url)`, `**` and `#` would show as written. markdownify lays the text
out (paragraphs, line breaks, lists, quotes, table rows) with every markup character dropped; a
link becomes "text (url)"; `data:` and `cid:` links (inline bytes, no address) are left out.
Attachments, which the import cannot carry, are listed under a heading at the end of the body.

Rendering is most of the cost of writing import files (BeautifulSoup's parse and markdownify's
walk, 0.2-1 ms a comment), so `Renderer` renders a stream of comments in worker processes, in
order, when a range is big enough to pay for starting them; the text is the same either way.
This module imports only what the workers need.
"""

from __future__ import annotations

import html as html_entities
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from bs4 import BeautifulSoup
from markdownify import MarkdownConverter, chomp

_DROPPED = ("head", "style", "script", "title", "meta", "template")  # their text is not the message's
_DROPPED_RE = re.compile(r"<(?:head|style|script|title|meta|template)\b", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]*>")


def _address(value: Any) -> str | None:
    """A link's address worth showing: not empty, not an in-page anchor, not inline bytes."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    return None if value.startswith("#") or value[:5].lower() in ("data:", "cid:") else value


class _PlainText(MarkdownConverter):
    """markdownify's layout (paragraphs, line breaks, `- ` lists, `> ` quotes, `|` table rows)
    without markup: emphasis, code and headings are their text, a link "text (url)" (the url
    alone when it is the text), an image "[image: alt] (url)"."""

    def _text(self, el, text, parent_tags):
        return text

    convert_b = convert_strong = convert_em = convert_i = convert_u = convert_mark = _text
    convert_del = convert_s = convert_code = convert_kbd = convert_samp = convert_sub = convert_sup = _text

    def convert_hN(self, n, el, text, parent_tags):
        return text if "_inline" in parent_tags else f"\n\n{text.strip()}\n\n"

    def convert_pre(self, el, text, parent_tags):
        return f"\n\n{text.strip(chr(10))}\n\n" if text else ""

    def convert_tr(self, el, text, parent_tags):
        return "|" + text + "\n"

    def convert_a(self, el, text, parent_tags):
        prefix, suffix, text = chomp(text)
        href = _address(el.get("href"))
        if href is None or text in (href, href.removeprefix("mailto:")):
            return f"{prefix}{text or href or ''}{suffix}"
        return f"{prefix}{text} ({href}){suffix}" if text else f"{prefix}{href}{suffix}"

    def convert_img(self, el, text, parent_tags):
        alt = " ".join(str(el.get("alt") or "").split())
        src = _address(el.get("src"))
        shown = f"[image: {alt}]" if alt else "[image]"
        return f"{shown} ({src})" if src else shown


_CONVERTER = _PlainText(bullets="-", escape_asterisks=False, escape_underscores=False, escape_misc=False,
                        autolinks=False, wrap=True, wrap_width=None)


def _tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip()


def html_to_text(html: str) -> str:
    """An HTML body as readable plain text with its links kept (see the module docstring)."""
    soup = BeautifulSoup(html, "html.parser")
    if _DROPPED_RE.search(html):  # a search of the tree costs more than the conversion
        for el in soup.find_all(_DROPPED):
            el.decompose()
    return _tidy(_CONVERTER.convert_soup(soup))


def _attachment_line(attachment: Mapping[str, Any]) -> str:
    name = " ".join(str(attachment.get("filename") or "").split()) or f"attachment {attachment.get('source_id')}"
    url = _address(attachment.get("url"))
    return f"- {name} ({url})" if url else f"- {name}"


def content(html: str | None, text: str | None, attachments: Sequence[Mapping[str, Any]] | None,
            heading: str | None) -> str:
    """What a comment says: its HTML as text (else its text), then its attachments listed under
    `heading` (None: not listed); empty when it says nothing."""
    body = html_to_text(html) if html else ""
    if not body and text:
        body = _tidy(text)
    if attachments and heading is not None:
        listing = "\n".join([heading, *map(_attachment_line, attachments)])
        body = f"{body}\n\n{listing}" if body else listing
    return body


def says_something(html: str | None, text: str | None, attachments: Sequence[Mapping[str, Any]] | None,
                   heading: str | None) -> bool:
    """Whether `content` is not empty, rendering the HTML only when a look cannot tell: text left
    between the tags of HTML without comments or dropped elements is always rendered."""
    if attachments and heading is not None:
        return True
    if html and "<!--" not in html and not _DROPPED_RE.search(html) and html_entities.unescape(_TAG_RE.sub("", html)).strip():
        return True
    return bool(html and html_to_text(html)) or bool(text and _tidy(text))


# -- rendering a stream ------------------------------------------------------------------------------
Body = tuple[str | None, str | None, Sequence[Mapping[str, Any]] | None]  # (html, text, attachments)
T = TypeVar("T")
# Comments per task sent to a worker: large enough that pickling is a small share, small enough that
# the rows waiting for their bodies stay few (IN_FLIGHT tasks per worker).
CHUNK, IN_FLIGHT = 256, 3
# Below this many comments a range is rendered in the writing process: starting workers (a fresh
# interpreter importing bs4 and markdownify, ~0.3 s each) would cost more than it saves.
MIN_PARALLEL = 4000


def _render_all(bodies: list[Body], heading: str | None) -> list[str]:
    return [content(html, text, attachments, heading) for html, text, attachments in bodies]


def render_workers(asked: int) -> int:
    """Processes to render with: `asked`, or one per CPU this process may use when 0."""
    if asked > 0:
        return asked
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Renderer:
    """Renders the bodies of chunks of rows in the chunks' order: in this process, or in `workers`
    processes (spawned: forking a process that holds database connections and Dagster's threads is
    unsafe) when `workers` > 1. Use as a context manager; the workers stop when it closes."""

    def __init__(self, heading: str | None, workers: int = 1):
        self.heading, self.workers = heading, max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Renderer:
        if multiprocessing.current_process().daemon:
            self.workers = 1  # a daemonic process may not start processes: render here
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def render(self, chunks: Iterable[list[T]], body: Callable[[T], Body]) -> Iterator[tuple[list[T], list[str]]]:
        """Each chunk with its rows' rendered bodies, in the chunks' order. With workers, up to
        IN_FLIGHT chunks a worker are read ahead of the one handed back."""
        if self._pool is None:
            for chunk in chunks:
                yield chunk, _render_all([body(r) for r in chunk], self.heading)
            return
        pending: deque[tuple[list[T], Future[list[str]]]] = deque()
        for chunk in chunks:
            pending.append((chunk, self._pool.submit(_render_all, [body(r) for r in chunk], self.heading)))
            if len(pending) >= IN_FLIGHT * self.workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def chunked(rows: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    chunk: list[T] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
