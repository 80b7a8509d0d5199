"""Golden tests for body conversion: real-looking mail HTML (Outlook desktop and web, Gmail, Apple
Mail replies), plain-text replies, a signature, a table, lists/links/code and inline images.

Each `golden/<name>.html` or `.txt` is converted with the packaged rules and compared with
`golden/<name>.md`. After a deliberate change, regenerate with
`UPDATE_GOLDEN=1 pytest migration_pipeline_tests/core/test_content.py` and review the diff.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from migration_pipeline.lib.content import ContentRules, html_to_markdown, load_rules, text_to_markdown
from migration_pipeline.settings import load_settings
from sim.synth import content as synth

GOLDEN = Path(__file__).parent / "golden"
INPUTS = sorted(p for p in GOLDEN.iterdir() if p.suffix in (".html", ".txt"))


def _convert(path: Path):
    source = path.read_text(encoding="utf-8")
    return html_to_markdown(source) if path.suffix == ".html" else text_to_markdown(source)


@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_golden(path: Path):
    expected_path = path.with_suffix(".md")
    converted = _convert(path)
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(converted.markdown + "\n", encoding="utf-8")
    assert converted.markdown + "\n" == expected_path.read_text(encoding="utf-8")


def test_golden_set_covers_every_mail_client_and_structure():
    names = {p.stem for p in INPUTS}
    assert {"outlook_reply", "outlook_web_reply", "gmail_reply", "apple_mail_reply", "signature_plain", "table",
            "lists_links_code", "inline_images", "outlook_original_message", "plain_on_wrote"} <= names


@pytest.mark.parametrize(
    "name, rules",
    [
        ("outlook_reply", {"quote:outlook_from_sent"}),
        ("outlook_web_reply", {"quote:outlook_reply_header", "signature:outlook_signature"}),
        ("gmail_reply", {"quote:gmail_quote", "signature:gmail_signature"}),
        ("apple_mail_reply", {"quote:apple_mail_cite", "signature:line"}),
        ("outlook_original_message", {"quote:original_message"}),
        ("plain_on_wrote", {"quote:on_wrote"}),
        ("signature_plain", {"signature:delimiter"}),
    ],
)
def test_each_reply_is_trimmed_by_the_rule_for_its_client_and_says_so(name, rules):
    path = next(p for p in INPUTS if p.stem == name)
    converted = _convert(path)
    assert rules <= set(converted.trimmed)
    trailer = converted.markdown.rsplit("\n", 1)[-1]
    assert trailer.startswith("✂️") and "Trimmed:" in trailer  # one line says what was cut
    assert ("quoted reply" in trailer) == converted.quote_trimmed
    assert ("signature" in trailer) == converted.signature_trimmed


def test_nothing_is_trimmed_from_a_body_without_quote_or_signature():
    for name in ("table", "lists_links_code"):
        converted = _convert(GOLDEN / f"{name}.html")
        assert not converted.trimmed and "Trimmed" not in converted.markdown


def test_inline_base64_images_become_files_with_a_reference_line():
    converted = _convert(GOLDEN / "inline_images.html")
    assert [(i.filename, i.content_type) for i in converted.images] == [
        ("inline-1-image.png", "image/png"),
        ("inline-2-label-photo.jpg", "image/jpeg"),
    ]
    assert converted.images[0].data == base64.b64decode(synth.INLINE_PNGS[0])
    assert converted.images[0].sha256 == hashlib.sha256(converted.images[0].data).hexdigest()
    assert converted.images[1].data.startswith(b"\xff\xd8\xff")  # a JPEG
    assert converted.undecodable_images == 1
    assert "base64" not in converted.markdown and "data:" not in converted.markdown
    for image in converted.images:
        assert f"`{image.filename}` (attached to this message)" in converted.markdown
    assert "![Northwind](https://cdn.northwindoutfitters.com/logo.png)" in converted.markdown  # a real URL stays a link


def test_an_image_inside_a_trimmed_quote_goes_with_the_quote():
    html = (f'<div>See photo</div><div class="gmail_quote">On Mon wrote:<img src="data:image/png;base64,'
            f'{synth.INLINE_PNGS[1]}"></div>')
    converted = html_to_markdown(html)
    assert converted.images == [] and converted.quote_trimmed


def test_a_body_the_rules_would_empty_is_kept_whole():
    html = '<div id="divRplyFwdMsg"><b>From:</b> A<br><b>Sent:</b> today</div><p>forwarded text</p>'
    converted = html_to_markdown(html)
    assert not converted.trimmed and "forwarded text" in converted.markdown and "Trimmed" not in converted.markdown
    assert text_to_markdown("> only a quote\n> here").markdown == "> only a quote\n> here"


@pytest.mark.parametrize("style", ["outlook", "gmail", "apple", "plain"])
def test_generated_mail_of_every_style_loses_its_quote_and_keeps_its_text(style):
    import random

    rng = random.Random(5)
    quoted = synth.Quoted("Northwind Support", "support@example.com", "Mon, Mar 4, 2024 at 10:14 AM", "Refund",
                          "QUOTED-TEXT-MARKER the refund was processed")
    body = synth.customer_email(rng, style, "Where is my refund for order 123456?", "Martha Williams", quoted, True, True)
    converted = html_to_markdown(body.text) if body.is_html else text_to_markdown(body.text)
    assert "Where is my refund for order 123456?" in converted.markdown
    assert "QUOTED-TEXT-MARKER" not in converted.markdown and converted.quote_trimmed
    assert "<" not in converted.markdown.replace("<https", "")
    assert len(converted.images) == (1 if body.is_html else 0)


def test_rules_are_versioned_and_overridable_by_file(tmp_path, monkeypatch):
    packaged = load_rules()
    assert packaged.version and packaged.source == "package"
    custom = tmp_path / "rules.yaml"
    custom.write_text('version: "test-1"\nquote: {}\nsignature: {}\ntrimmed_note: "cut: {what}"\n', encoding="utf-8")
    monkeypatch.setenv("MIGRATION_CONTENT_RULES_FILE", str(custom))  # read by the settings, handed in as a path
    rules = load_rules(load_settings().content_rules_file)
    assert rules.version == "test-1" and rules.source == str(custom)
    assert load_rules().source == "package"
    converted = html_to_markdown((GOLDEN / "gmail_reply.html").read_text(encoding="utf-8"), rules)
    assert not converted.trimmed and "wrote:" in converted.markdown  # no rules: nothing trimmed
    with pytest.raises(ValueError, match="version"):
        ContentRules.from_mapping({"quote": {}})
