"""Message bodies to Slack-compatible markdown: HTML converted with markdownify, quoted replies and
signatures trimmed by versioned rules, inline base64 images pulled out as attachments. No Dagster
import; the only vendor knowledge is the source marker (`core.markers`), which a body may not forge:
a source hands in HTML or text, a target gets markdown and files.

Rules live in `migration_pipeline/config/content_rules.yaml` (with a `version:`); a copy of your
own is used when given its path (the settings' MIGRATION_CONTENT_RULES_FILE). Nothing is
trimmed silently: the result says what was cut (one line in the message, counts for the report),
and a body the rules would empty is kept whole.

Whatever a customer wrote is made inert before it reaches Unthread and Slack (`neutralize_text`):
Slack's `<!channel>` / `<@U1>` / `<#C1>` / `<url|label>` syntax and raw HTML tags are escaped as
`&lt;…&gt;` (Slack's documented escape; markdown shows it as `<…>` too), a bare `@channel` /
`@here` / `@everyone` gets a zero-width space after its `@`, a link or image whose scheme is not
http/https/mailto/tel becomes its label plus a note, and a `gladly-item:` source marker inside a
body is broken so that only the loader's own marker identifies the message. Each is counted by
kind in `Converted.neutralized`; the text still reads as written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html as html_entities
import mimetypes
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import quote

import soupsieve
from bs4 import BeautifulSoup, NavigableString, Tag
from markdownify import MarkdownConverter
from pydantic import AfterValidator

from migration_pipeline.lib.markers import (
    FORGED_RE as _FORGED_MARKER,  # the loader's source marker, forged
)
from migration_pipeline.lib.rule_files import (
    NonEmpty,
    RulesDocument,
    load_rules_file,
    packaged_file,
    template,
    validate_rules,
)

BLOCKS = ("p", "div", "blockquote", "td", "li", "font", "span", "pre", "h1", "h2", "h3", "h4", "h5", "h6")
DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)$", re.S | re.I)
_TOKEN = "INLINEIMAGE{}TOKEN"

# -- neutralizing content that would act in Slack or in a markdown view ----------------------------
SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
ZWSP = "\u200b"  # zero-width space: invisible, but `@\u200bchannel` is no longer a mention
BROADCASTS = frozenset({"channel", "here", "everyone", "group"})  # Slack's `<!...>` that notify many
NEUTRALIZED_KINDS = {  # kind -> what the report calls it
    "broadcast": "broadcast mentions (@channel, @here, @everyone)",
    "mention": "user, user-group and channel mentions",
    "unsafe_link": "links or images with an unsafe scheme (javascript:, data:, file: ...)",
    "html": "raw HTML tags",
    "markup": "other Slack or HTML markup (labelled links, comments)",
    "forged_marker": "gladly-item markers written inside a body",
}
# [label](destination "title") / ![alt](...): a label without brackets (escaped ones allowed), a
# destination in <...> or with one level of balanced parentheses, an optional title.
# Possessive (`*+`, `++`): no backtracking, so a hostile body costs linear time.
_MD_LINK = re.compile(
    r"(?P<bang>!?)\[(?P<label>(?:[^\[\]\\]|\\.)*+)\]\(\s*+"
    r"(?P<dest><[^<>\n]*>|(?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*+\))++)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
_LINK_OPENING = re.compile(r"\]\(\s*<?(?P<dest>[^\s)>]{1,100})")  # a destination the pattern above could not parse
_REFERENCE_DEFINITION = re.compile(r"^( {0,3})\[([^\]\n]+)\]:[ \t]*(<[^<>\n]*>|\S+)", re.MULTILINE)
# `<` that opens something: a Slack special (`!`, `@`, `#`), a tag, a comment, an autolink.
_ANGLE = re.compile(r"<(?=[!@#/?A-Za-z])(?P<inner>[^<>\n]*)(?P<close>>?)")
_SAFE_AUTOLINK = re.compile(r"(?:https?|mailto|tel):[^\s|<>]*|[^\s@<>|]+@[^\s@<>|]+\.[^\s@<>|]+", re.IGNORECASE)
_TAG = re.compile(r"/?[A-Za-z][\w:-]*(?:[\s/].*)?", re.DOTALL)
_BARE_BROADCAST = re.compile(r"(?<![\w@.+-])@(channel|here|everyone)\b", re.IGNORECASE)
_URL_BREAKERS = re.compile(r"[\s<>()|`\"]")  # would end or split a markdown / Slack link


QUOTE_TEXT_FLAGS = re.IGNORECASE | re.DOTALL  # quote headers wrap over lines


def _pattern(flags: re.RegexFlag) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value, flags)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return value

    return AfterValidator(check)


def _css_selector(value: str) -> str:
    try:
        soupsieve.compile(value)
    except soupsieve.SelectorSyntaxError as exc:
        raise ValueError(f"not a valid CSS selector ({str(exc).splitlines()[0]})") from None
    return value


class SelectorRule(RulesDocument):
    name: NonEmpty
    css: Annotated[NonEmpty, AfterValidator(_css_selector)]


class PatternRule(RulesDocument):
    name: NonEmpty
    pattern: Annotated[NonEmpty, _pattern(QUOTE_TEXT_FLAGS)]


class QuoteRulesFile(RulesDocument):
    remove_selectors: list[SelectorRule] | None = None
    cut_from_selectors: list[SelectorRule] | None = None
    cut_from_text: list[PatternRule] | None = None
    plain_quote_prefix: str | None = None


class SignatureRulesFile(RulesDocument):
    remove_selectors: list[SelectorRule] | None = None
    delimiter: Annotated[str | None, _pattern(re.IGNORECASE)] = None
    lines: list[Annotated[str, _pattern(re.IGNORECASE)]] | None = None


class ContentRulesFile(RulesDocument):
    """What content_rules.yaml may hold, checked when it is loaded (selectors and patterns compile)."""

    version: NonEmpty
    quote: QuoteRulesFile | None = None
    signature: SignatureRulesFile | None = None
    trimmed_note: Annotated[str | None, template(what="quoted text")] = None


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
    def from_mapping(cls, data: Any, source: str = "mapping") -> ContentRules:
        """The rules of a parsed document; a bad one raises `RulesFileError` naming the field."""
        return cls.from_document(validate_rules(ContentRulesFile, data, "content rules", source), source)

    @classmethod
    def from_document(cls, document: ContentRulesFile, source: str) -> ContentRules:
        quote, sig = document.quote or QuoteRulesFile(), document.signature or SignatureRulesFile()

        def selectors(rules: list[SelectorRule] | None) -> tuple[NamedRule, ...]:
            return tuple(NamedRule(r.name, r.css) for r in rules or ())

        return cls(
            version=document.version,
            quote_remove=selectors(quote.remove_selectors),
            quote_cut_from=selectors(quote.cut_from_selectors),
            quote_cut_from_text=tuple(NamedRule(r.name, re.compile(r.pattern, QUOTE_TEXT_FLAGS)) for r in quote.cut_from_text or ()),
            plain_quote_prefix=quote.plain_quote_prefix or None,
            signature_remove=selectors(sig.remove_selectors),
            signature_delimiter=re.compile(sig.delimiter, re.IGNORECASE) if sig.delimiter else None,
            signature_lines=tuple(re.compile(p, re.IGNORECASE) for p in sig.lines or ()),
            trimmed_note=document.trimmed_note or cls.trimmed_note,
            source=source,
        )


def load_rules(path: str | os.PathLike[str] | None = None) -> ContentRules:
    """The rules from `path` (the settings pass MIGRATION_CONTENT_RULES_FILE), else the packaged file."""
    chosen = str(path) if path else None
    return _load_rules_cached(chosen)


@lru_cache(maxsize=8)
def _load_rules_cached(path: str | None) -> ContentRules:
    document = load_rules_file(ContentRulesFile, path or packaged_file("content_rules.yaml"), "content rules")
    return ContentRules.from_document(document, source=path or "package")


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
    neutralized: Counter[str] = field(default_factory=Counter)  # kind (NEUTRALIZED_KINDS) -> times made inert

    @property
    def quote_trimmed(self) -> bool:
        return any(not k.startswith("signature:") for k in self.trimmed)

    @property
    def signature_trimmed(self) -> bool:
        return any(k.startswith("signature:") for k in self.trimmed)


def _scheme(url: str) -> str | None:
    """The scheme a browser would see in `url`: entities decoded, markdown escapes, whitespace and
    control characters dropped (`&#106;ava\tscript:` is `javascript`); None for a relative URL."""
    cleaned = html_entities.unescape(url)
    cleaned = re.sub(r"\\(?=[!-/:-@\[-`{-~])", "", cleaned)
    cleaned = re.sub(r"[\x00-\x20\x7f]+", "", cleaned)
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", cleaned)
    return match.group(1).lower() if match else None


def _unsafe_scheme(url: str) -> str | None:
    scheme = _scheme(url)
    return scheme if scheme is not None and scheme not in SAFE_SCHEMES else None


class _Converter(MarkdownConverter):
    """markdownify with Slack-friendly choices: `-` bullets, ATX headings, tables as pipe rows.

    Links and images are emitted so that `neutralize_text` can read them back: a safe URL with
    the characters that would end the link percent-encoded, an unsafe one cut to its scheme."""

    def convert_a(self, el, text, parent_tags):
        href = el.get("href")
        if isinstance(href, str) and href:
            scheme = _unsafe_scheme(href)
            if scheme:
                el["href"] = f"{scheme}:"
                el.attrs.pop("title", None)
                text = re.sub(r"\s*\n\s*", " ", text).replace("[", "\\[").replace("]", "\\]")
            else:
                el["href"] = _URL_BREAKERS.sub(lambda m: quote(m.group()), href.strip())
        return super().convert_a(el, text, parent_tags)

    def convert_img(self, el, text, parent_tags):
        src = el.get("src")
        if isinstance(src, str) and _unsafe_scheme(src):
            el["src"] = f"{_unsafe_scheme(src)}:"
            el["alt"] = re.sub(r"[\[\]\n]", " ", el.get("alt") or "")
            el.attrs.pop("title", None)
        elif isinstance(src, str):
            el["src"] = _URL_BREAKERS.sub(lambda m: quote(m.group()), src.strip())
        return super().convert_img(el, text, parent_tags)

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


def neutralize_text(text: str, counts: Counter[str] | None = None) -> str:
    """Markdown (or plain text sent as markdown) with nothing in it that acts in Slack or in a
    markdown view, each change counted by kind in `counts`. Idempotent: a second pass changes and
    counts nothing, so the loader may pass a whole message through it again."""
    counts = counts if counts is not None else Counter()
    text = _FORGED_MARKER.sub(lambda m: _count(counts, "forged_marker", m.group()[:-1] + ZWSP + ":"), text)
    text = _MD_LINK.sub(lambda m: _inert_link(m, counts), text)
    text = _LINK_OPENING.sub(lambda m: _inert_link_opening(m, counts), text)
    text = _REFERENCE_DEFINITION.sub(lambda m: _inert_reference(m, counts), text)
    text = _ANGLE.sub(lambda m: _inert_angle(m, counts), text)
    return _BARE_BROADCAST.sub(lambda m: _count(counts, "broadcast", "@" + ZWSP + m.group(1)), text)


def describe_neutralized(counts: Counter[str]) -> str:
    """One line for a report: "2 broadcast mentions (...), 1 links or images ..."."""
    parts = [f"{n} {NEUTRALIZED_KINDS.get(kind, kind)}" for kind, n in sorted(counts.items()) if n]
    return "; ".join(parts) if parts else "nothing needed neutralizing"


def _count(counts: Counter[str], kind: str, replacement: str) -> str:
    counts[kind] += 1
    return replacement


def _inert_link(m: re.Match[str], counts: Counter[str]) -> str:
    """An unsafe `[label](javascript:...)` becomes the label and a note; a safe link stays."""
    scheme = _unsafe_scheme(m.group("dest").strip("<>"))
    if scheme is None:
        return m.group()
    what = "image" if m.group("bang") else "link"
    label = m.group("label").strip()
    return _count(counts, "unsafe_link", f"{label} (⚠️ {scheme}: {what} removed)" if label else f"(⚠️ {scheme}: {what} removed)")


def _inert_link_opening(m: re.Match[str], counts: Counter[str]) -> str:
    """A link too odd to parse (nested brackets, deep parentheses): `](` becomes `] (`, no link."""
    if _unsafe_scheme(m.group("dest")) is None:
        return m.group()
    return _count(counts, "unsafe_link", "] (" + m.group()[2:])


def _inert_reference(m: re.Match[str], counts: Counter[str]) -> str:
    """`[1]: javascript:...` would make every `[x][1]` a link: escaped, the line is plain text."""
    if _unsafe_scheme(m.group(3).strip("<>")) is None:
        return m.group()
    return _count(counts, "unsafe_link", m.group(1) + "\\" + m.group()[len(m.group(1)) :])


def _inert_angle(m: re.Match[str], counts: Counter[str]) -> str:
    """`<...>` shown as text with Slack's `&lt;`/`&gt;`; a safe autolink (`<https://...>`,
    `<name@example.com>`) stays. Counted only when closed: an open `<` acts neither in Slack nor
    as markup, and escaping it only keeps a later `>` from pairing with it."""
    inner, closed = m.group("inner"), bool(m.group("close"))
    if closed and _SAFE_AUTOLINK.fullmatch(inner):
        return m.group()
    if closed:
        counts[_angle_kind(inner)] += 1
    return "&lt;" + inner + ("&gt;" if closed else "")


def _angle_kind(inner: str) -> str:
    if inner.startswith("!"):
        name = re.match(r"!(\w*)", inner).group(1).lower()  # type: ignore[union-attr]
        return "broadcast" if name in BROADCASTS else "mention" if name == "subteam" else "markup"
    if inner[:1] in ("@", "#"):
        return "mention"
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", inner)
    if scheme:
        return "unsafe_link" if scheme.group(1).lower() not in SAFE_SCHEMES else "markup"
    return "html" if _TAG.fullmatch(inner) else "markup"


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
    neutralized: Counter[str] = Counter()
    for el in soup.find_all(["head", "style", "script", "title", "meta", "xml"]):
        neutralized["html"] += el.name == "script"
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
    text = neutralize_text(text, neutralized)  # what is kept, as markdown (text split over tags too)
    for n, image in enumerate(images, start=1):
        text = text.replace(_TOKEN.format(n), f"\n\n🖼️ Inline image {n}: `{image.filename}` (attached to this message)\n\n")
    text = re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip()
    converted = Converted(text, images, trimmed, bad, +neutralized)
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
    neutralized: Counter[str] = Counter()
    body = neutralize_text(body, neutralized)
    converted = Converted(body, [], trimmed, neutralized=neutralized)
    note = _note(converted, rules)
    if note:
        converted.markdown = f"{converted.markdown}\n\n{note}"
    return converted
