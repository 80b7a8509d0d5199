"""Message bodies to Slack-compatible markdown: HTML converted with markdownify, quoted replies and
signatures trimmed by versioned rules, inline base64 images pulled out as attachments. No Dagster
import, no vendor knowledge: a source hands in HTML or text, a target gets markdown and files.

Rules live in `migration_pipeline/config/content_rules.yaml` (with a `version:`); a copy of your
own is used when `MIGRATION_CONTENT_RULES_FILE` (or an explicit path) points at it. Nothing is
trimmed silently: the result says what was cut (one line in the message, counts for the report),
and a body the rules would empty is kept whole.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from bs4 import BeautifulSoup, NavigableString, Tag
from markdownify import MarkdownConverter

RULES_ENV = "MIGRATION_CONTENT_RULES_FILE"
BLOCKS = ("p", "div", "blockquote", "td", "li", "font", "span", "pre", "h1", "h2", "h3", "h4", "h5", "h6")
DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)$", re.S | re.I)
_TOKEN = "INLINEIMAGE{}TOKEN"


@dataclass(frozen=True)
class NamedRule:
    name: str
    value: Any  # a CSS selector string or a compiled pattern


@dataclass(frozen=True)
class ContentRules:
    """The trimming rules and their version (recorded with what they trimmed)."""

    version: str
    quote_remove: tuple[NamedRule, ...] = ()
    quote_cut_from: tuple[NamedRule, ...] = ()
    quote_cut_from_text: tuple[NamedRule, ...] = ()
    plain_quote_prefix: str | None = None  # a trailing run of lines starting with it is a quote
    signature_remove: tuple[NamedRule, ...] = ()
    signature_delimiter: re.Pattern[str] | None = None
    signature_lines: tuple[re.Pattern[str], ...] = ()
    trimmed_note: str = "✂️ _Trimmed: {what}._"
    source: str = "package"

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "mapping") -> ContentRules:
        if not isinstance(data, dict) or not data.get("version"):
            raise ValueError(f"content rules ({source}) need a `version:`")
        quote, sig = data.get("quote") or {}, data.get("signature") or {}
        flags = re.IGNORECASE | re.DOTALL

        def named(entries: Any, key: str, compile_: bool = False) -> tuple[NamedRule, ...]:
            out = []
            for entry in entries or ():
                if not isinstance(entry, dict) or not entry.get("name") or not entry.get(key):
                    raise ValueError(f"content rules ({source}): each rule needs `name` and `{key}`, got {entry!r}")
                out.append(NamedRule(str(entry["name"]), re.compile(entry[key], flags) if compile_ else str(entry[key])))
            return tuple(out)

        delimiter = sig.get("delimiter")
        return cls(
            version=str(data["version"]),
            quote_remove=named(quote.get("remove_selectors"), "css"),
            quote_cut_from=named(quote.get("cut_from_selectors"), "css"),
            quote_cut_from_text=named(quote.get("cut_from_text"), "pattern", compile_=True),
            plain_quote_prefix=str(quote["plain_quote_prefix"]) if quote.get("plain_quote_prefix") else None,
            signature_remove=named(sig.get("remove_selectors"), "css"),
            signature_delimiter=re.compile(delimiter, re.IGNORECASE) if delimiter else None,
            signature_lines=tuple(re.compile(p, re.IGNORECASE) for p in sig.get("lines") or ()),
            trimmed_note=str(data.get("trimmed_note") or cls.trimmed_note),
            source=source,
        )


def load_rules(path: str | os.PathLike[str] | None = None) -> ContentRules:
    """The rules from `path`, else from $MIGRATION_CONTENT_RULES_FILE, else the packaged file."""
    chosen = str(path) if path else os.environ.get(RULES_ENV) or None
    return _load_rules_cached(chosen)


@lru_cache(maxsize=8)
def _load_rules_cached(path: str | None) -> ContentRules:
    if path:
        return ContentRules.from_mapping(yaml.safe_load(Path(path).read_text(encoding="utf-8")), source=path)
    text = resources.files("migration_pipeline.config").joinpath("content_rules.yaml").read_text(encoding="utf-8")
    return ContentRules.from_mapping(yaml.safe_load(text), source="package")


@dataclass(frozen=True)
class InlineImage:
    """An image that was embedded in the HTML as a data: URI, now a file to upload."""

    filename: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Converted:
    """A body ready for the target: markdown, the files pulled out of it, and what was trimmed."""

    markdown: str
    images: list[InlineImage] = field(default_factory=list)
    trimmed: Counter[str] = field(default_factory=Counter)  # rule name -> times it cut something
    undecodable_images: int = 0

    @property
    def quote_trimmed(self) -> bool:
        return any(not k.startswith("signature:") for k in self.trimmed)

    @property
    def signature_trimmed(self) -> bool:
        return any(k.startswith("signature:") for k in self.trimmed)


class _Converter(MarkdownConverter):
    """markdownify with Slack-friendly choices: `-` bullets, ATX headings, tables as pipe rows."""

    def convert_td(self, el, text, parent_tags):  # keep a cell's `|` from breaking the row
        span = el.get("colspan")
        extra = int(span) - 1 if isinstance(span, str) and span.isdigit() and int(span) > 1 else 0
        return " " + text.strip().replace("|", "\\|").replace("\n", " ") + " |" + "  |" * extra

    def convert_th(self, el, text, parent_tags):
        return self.convert_td(el, text, parent_tags)


def _markdown(soup: BeautifulSoup) -> str:
    converter = _Converter(heading_style="ATX", bullets="-", escape_misc=False, strip=["o:p"])
    text = converter.convert_soup(soup)
    text = re.sub(r"[ \t]+\n", "\n", text.replace("\xa0", " "))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _cut_from(el: Tag) -> None:
    """Remove `el` and everything after it in document order (its ancestors stay)."""
    node: Any = el
    while node is not None and node.name not in ("body", "html", "[document]"):
        for sibling in list(node.next_siblings):
            sibling.extract()
        node = node.parent
    el.extract()


def _innermost_match(soup: BeautifulSoup, pattern: re.Pattern[str]) -> Tag | None:
    """The first block element (document order) whose text matches and no child block does."""
    matches = [el for el in soup.find_all(BLOCKS) if pattern.search(el.get_text(" ", strip=True))]
    for el in matches:
        if not any(pattern.search(d.get_text(" ", strip=True)) for d in el.find_all(BLOCKS)):
            return el
    return None


def _extract_images(soup: BeautifulSoup) -> tuple[list[InlineImage], int]:
    images, bad = [], 0
    for img in soup.find_all("img"):
        match = DATA_URI.match((img.get("src") or "").strip())
        if not match:
            continue
        ctype = (match.group("type") or "application/octet-stream").lower()
        try:
            data = base64.b64decode(re.sub(r"\s+", "", match.group("data")), validate=True)
        except (binascii.Error, ValueError):
            bad += 1
            img.replace_with(NavigableString("[an inline image that could not be decoded was dropped here]"))
            continue
        n = len(images) + 1
        ext = mimetypes.guess_extension(ctype) or ".bin"
        alt = re.sub(r"[^\w.-]+", "-", (img.get("alt") or "").strip()).strip("-.")
        stem = alt.rsplit(".", 1)[0] if alt else "image"
        images.append(InlineImage(f"inline-{n}-{stem}{ext}", ctype, data))
        img.replace_with(NavigableString(" " + _TOKEN.format(n) + " "))
    return images, bad


def _trim_text(text: str, rules: ContentRules, trimmed: Counter[str]) -> str:
    """Line rules over plain text (or converted markdown): quote headers, `>` runs, signatures."""
    lines = text.split("\n")
    for rule in rules.quote_cut_from_text:
        for i in range(len(lines)):
            window = " ".join(lines[i : i + 2]).strip()
            if rule.value.search(window):
                if any(line.strip() for line in lines[:i]):
                    lines = lines[:i]
                    trimmed[f"quote:{rule.name}"] += 1
                break
    prefix = rules.plain_quote_prefix
    end = len(lines)
    while prefix and end > 0 and (lines[end - 1].lstrip().startswith(prefix) or not lines[end - 1].strip()):
        end -= 1
    if prefix and end < len(lines) and any(lines[k].lstrip().startswith(prefix) for k in range(end, len(lines))):
        if any(line.strip() for line in lines[:end]):
            lines = lines[:end]
            trimmed["quote:plain_prefix"] += 1
    if rules.signature_delimiter is not None:
        for i, line in enumerate(lines):
            if rules.signature_delimiter.match(line) and any(x.strip() for x in lines[:i]):
                lines = lines[:i]
                trimmed["signature:delimiter"] += 1
                break
    kept = []
    for line in lines:
        if any(p.match(line) for p in rules.signature_lines):
            trimmed["signature:line"] += 1
        else:
            kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _note(converted: Converted, rules: ContentRules) -> str:
    parts = []
    if converted.quote_trimmed:
        parts.append("quoted reply")
    if converted.signature_trimmed:
        parts.append("signature")
    return rules.trimmed_note.format(what=" and ".join(parts)) if parts else ""


def html_to_markdown(html: str, rules: ContentRules | None = None, *, trim: bool = True) -> Converted:
    """Convert an HTML body; with `trim`, cut quoted replies and signatures by `rules`.

    Inline `data:` images become `InlineImage`s and a reference line where they stood; images in
    a trimmed quote go with it (they belonged to the quoted, earlier message)."""
    rules = rules or load_rules()
    soup = BeautifulSoup(html, "html.parser")
    for el in soup.find_all(["head", "style", "script", "title", "meta", "xml"]):
        el.decompose()
    trimmed: Counter[str] = Counter()
    if trim:
        for rule in rules.quote_remove:
            for el in soup.select(rule.value):
                if el.parent is not None:
                    el.decompose()
                    trimmed[f"quote:{rule.name}"] += 1
        for rule in rules.signature_remove:
            for el in soup.select(rule.value):
                if el.parent is not None:
                    el.decompose()
                    trimmed[f"signature:{rule.name}"] += 1
        for rule in rules.quote_cut_from:
            el = soup.select_one(rule.value)
            if el is not None:
                _cut_from(el)
                trimmed[f"quote:{rule.name}"] += 1
        for rule in rules.quote_cut_from_text:
            el = _innermost_match(soup, rule.value)
            if el is not None:
                _cut_from(el)
                trimmed[f"quote:{rule.name}"] += 1
    images, bad = _extract_images(soup)
    text = _markdown(soup)
    if trim:
        text = _trim_text(text, rules, trimmed)
        if not re.sub(r"INLINEIMAGE\d+TOKEN", "", text).strip():
            # The rules would leave nothing (a bare forward, say): keep the message whole.
            return html_to_markdown(html, rules, trim=False)
    for n, image in enumerate(images, start=1):
        text = text.replace(_TOKEN.format(n), f"\n\n🖼️ Inline image {n}: `{image.filename}` (attached to this message)\n\n")
    text = re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip()
    converted = Converted(text, images, trimmed, bad)
    note = _note(converted, rules)
    if note:
        converted.markdown = f"{converted.markdown}\n\n{note}"
    return converted


def text_to_markdown(text: str, rules: ContentRules | None = None, *, trim: bool = True) -> Converted:
    """A plain-text body as it is (markdown shows it as written), quotes and signatures trimmed."""
    rules = rules or load_rules()
    trimmed: Counter[str] = Counter()
    body = text.replace("\r\n", "\n").strip()
    if trim:
        cut = _trim_text(body, rules, trimmed)
        if cut:
            body = cut
        else:
            trimmed.clear()
    converted = Converted(body, [], trimmed)
    note = _note(converted, rules)
    if note:
        converted.markdown = f"{converted.markdown}\n\n{note}"
    return converted
