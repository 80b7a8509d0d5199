"""Text and byte material for the messy data generator: names, addresses, message texts, and the
HTML email bodies (Outlook, Gmail, Apple Mail styles) with signatures, quoted replies and inline
base64 images that a real helpdesk export is full of.

Everything here is a pure function of its arguments (a `random.Random` the caller seeded, or
plain values), so the generator stays byte-for-byte deterministic. Nothing here knows about jobs
or files; the world (`sim.synth.world`) decides who says what, the writers (`sim.synth.writers`)
what goes where.
"""

from __future__ import annotations

import base64
import random
import re
import struct
import zlib
from dataclasses import dataclass
from html import escape

# --------------------------------------------------------------------------- names and people

FIRST_NAMES = (
    "Martha", "James", "Olivia", "Liam", "Ava", "Noah", "Emma", "Lucas", "Mia", "Ethan", "Sofia",
    "Mason", "Isabella", "Logan", "Harper", "Elijah", "Amelia", "Aiden", "Chloe", "Jack", "Grace",
    "Henry", "Nora", "Owen", "Ella", "Wyatt", "Lily", "Caleb", "Zoe", "Ryan", "Hannah", "Nathan",
)
LAST_NAMES = (
    "Williams", "Smith", "Johnson", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson",
    "Martin", "Lee", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Young", "King",
)
# Names that exercise Unicode handling: accents, combining marks, RTL scripts, CJK, emoji.
# Each entry is (display name, ASCII local part for an email address).
UNICODE_NAMES = (
    ("José Álvarez", "jose.alvarez"),
    ("Zoë Brontë", "zoe.bronte"),
    ("Søren Kierkegård", "soren.k"),
    ("Łukasz Żółć", "lukasz.zolc"),
    ("Rene\u0301e Dubois", "renee.dubois"),  # combining acute accent
    ("ليلى حداد", "layla.haddad"),
    ("عمر الخطيب", "omar.khatib"),
    ("נועה כהן", "noa.cohen"),
    ("דוד לוי", "david.levi"),
    ("山田 太郎", "taro.yamada"),
    ("王芳", "wang.fang"),
    ("Sam 🌈 Rivera", "sam.rivera"),
)
AGENT_FIRST = ("Amy", "Ben", "Carla", "Dev", "Elena", "Farid", "Gina", "Hiro", "Ines", "Jonas",
               "Kara", "Leo", "Maya", "Nils", "Oona", "Pablo", "Quinn", "Rosa", "Sven", "Tara")
AGENT_LAST = ("Agent", "Barnes", "Chen", "Diaz", "Evans", "Fischer", "Gupta", "Haddad", "Ito",
              "Jensen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov")
EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.co.uk",
                 "proton.me", "example.org", "comcast.net")
INVALID_EMAILS = ("bob@", "no-at-sign", "a@b", "jane.doe@@example.com", "mary@example",
                  " spaced@example.com ")
STREETS = ("Main St", "Oak Ave", "Pine Rd", "Maple Dr", "Cedar Ln", "Elm St", "Lake View Blvd")
CITIES = (("Pittsburgh", "PA", "15213"), ("Austin", "TX", "78701"), ("Portland", "OR", "97205"),
          ("Denver", "CO", "80202"), ("Raleigh", "NC", "27601"), ("Madison", "WI", "53703"))

VALID_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
UNICODE_MARK_RE = re.compile("[\u0590-\u08ff\u0300-\u036f\u3040-\u9fff\U0001f300-\U0001faff\u2600-\u27bf]")


def is_valid_email(address: str) -> bool:
    """A deliberately simple validity test, shared by the generator and its tests."""
    return bool(VALID_EMAIL_RE.match(address))


def has_unicode_mess(text: str) -> bool:
    """True when text holds RTL script, combining marks, CJK or emoji (what migrations break on)."""
    return UNICODE_MARK_RE.search(text) is not None


def street_address(rng: random.Random) -> str:
    city, state, zip_code = rng.choice(CITIES)
    return f"{rng.randint(1, 9999)} {rng.choice(STREETS)}, {city}, {state} {zip_code}"


# --------------------------------------------------------------------------- message texts

TOPIC_OPENERS = (
    ("Where is my order #{n}?", "Hi, I ordered last week (order #{n}) and tracking hasn't moved in days. Can you check?"),
    ("Package arrived damaged", "My package for order #{n} arrived with a crushed box and the item is scratched."),
    ("Refund not received", "I returned order #{n} two weeks ago and still have not seen the refund."),
    ("Charged twice", "I was charged twice for order #{n}. Please refund the duplicate charge."),
    ("Can't log in", "I can't log in to my account, the password reset email never arrives."),
    ("Exchange for a different size", "The jacket from order #{n} is too small, can I exchange it for a large?"),
    ("Promo code not working", "The code SPRING{n} says it is invalid at checkout."),
    ("Question about sizing", "Does the trail shoe run true to size? I'm usually between a 9 and a 9.5."),
)
CUSTOMER_FOLLOWUPS = (
    "Thanks, any update on this?", "Ok, I just sent the photos.", "That works for me.",
    "Still nothing on my end, sorry to bother you again.", "Great, thank you so much!",
    "Can you confirm the address you have on file?", "I'd prefer a refund instead of store credit.",
    "Is there a number I can call?", "Ok. How long will that take?", "yes", "no, that's not it",
)
AGENT_REPLIES = (
    "Thanks for reaching out! I'm looking into order #{n} now.",
    "I'm sorry about that. I've issued a replacement, you'll get a confirmation shortly.",
    "Your refund for order #{n} was processed today; it can take 5-7 business days to appear.",
    "Could you send a photo of the damage so I can file a claim with the carrier?",
    "I've reset your account, please try logging in again.",
    "I've applied the discount manually. Anything else I can help with?",
    "Happy to help! I've set up the exchange and emailed you a prepaid label.",
)
NOTES = (
    "Customer called twice about this, escalate if no carrier update by Friday.",
    "Refund approved by supervisor.", "VIP customer, waive the restocking fee.",
    "Checked with the warehouse: shipped from the Reno DC.", "Possible fraud, do not reissue.",
)
UNICODE_TEXTS = (
    "Merci beaucoup! Ça marche très bien 👍",
    "¿Dónde está mi pedido? 😕",
    "ありがとうございます！注文番号は{n}です",
    "شكراً جزيلاً، متى سيصل الطلب رقم {n}؟",
    "תודה רבה! מתי ההזמנה שלי תגיע?",
    "Danke schön, die Größe passt leider nicht 🙈",
    "Спасибо, всё получил 🎉",
    "Order #{n} \u200f— الطلب رقم {n}",  # mixed direction with a right-to-left mark
    "👨\u200d👩\u200d👧\u200d👦 family pack arrived, love it ❤️",
)
QUICK_REPLY_PROMPTS = (
    ("What can I help you with today?", ("Track my order", "Start a return", "Something else")),
    ("Did that answer your question?", ("Yes, thanks", "No")),
    ("How would you rate this chat?", ("😀 Great", "😐 Okay", "😞 Bad")),
)
CALL_SUMMARIES = (
    "Customer asked about a delayed shipment; agent confirmed a new delivery date.",
    "Customer requested a refund for a damaged item; agent approved it.",
    "Customer could not log in; agent reset the password during the call.",
)
ACTIVITY_TITLES = (
    ("SURVEY", "CSAT survey response", "Rated 4/5: quick and friendly."),
    ("ISSUE", "Order issue created in OMS", "Carrier exception: address not found."),
    ("EMAIL", "Marketing email opened", "Spring sale campaign opened twice."),
    ("SMS", "Delivery notification sent", "Your order is out for delivery."),
)


def order_number(rng: random.Random) -> int:
    return rng.randint(100000, 999999)


def customer_text(rng: random.Random, unicode_rate: float = 0.06) -> str:
    """A short customer message; sometimes non-Latin, RTL or emoji-laden."""
    n = order_number(rng)
    if rng.random() < unicode_rate:
        return rng.choice(UNICODE_TEXTS).format(n=n)
    if rng.random() < 0.4:
        return rng.choice(TOPIC_OPENERS)[1].format(n=n)
    return rng.choice(CUSTOMER_FOLLOWUPS)


def agent_text(rng: random.Random) -> str:
    return rng.choice(AGENT_REPLIES).format(n=order_number(rng))


def note_text(rng: random.Random) -> str:
    return rng.choice(NOTES)


def long_text(rng: random.Random, min_chars: int = 25_001) -> str:
    """A body longer than Gladly's 25,000-character limit: a pasted log, as customers do."""
    lines: list[str] = ["Here is the full log from the app, sorry it is long:", ""]
    size = sum(len(x) + 1 for x in lines)
    i = 0
    while size < min_chars:
        line = (f"2024-03-{1 + i % 28:02d} 12:{i % 60:02d}:{(i * 7) % 60:02d} ERROR checkout.payment "
                f"request_id={rng.getrandbits(48):012x} status=502 retry={i % 5} msg=\"upstream timeout\"")
        lines.append(line)
        size += len(line) + 1
        i += 1
    return "\n".join(lines)


# --------------------------------------------------------------------------- inline images


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid, tiny solid-colour PNG, built by hand so no imaging library is needed."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


INLINE_PNGS: tuple[str, ...] = tuple(
    base64.b64encode(_png(w, h, rgb)).decode("ascii")
    for w, h, rgb in ((16, 16, (200, 30, 30)), (24, 12, (20, 120, 220)), (32, 32, (40, 160, 60)))
)


# --------------------------------------------------------------------------- email bodies

EMAIL_STYLES = ("outlook", "gmail", "apple", "plain")


@dataclass(frozen=True)
class EmailBody:
    """An email body plus what mess it carries, so the manifest can say so without re-parsing."""

    text: str
    style: str
    has_signature: bool
    has_quote: bool
    has_inline_image: bool

    @property
    def is_html(self) -> bool:
        return self.style != "plain"


@dataclass(frozen=True)
class Quoted:
    """The message being replied to, as mail clients quote it."""

    sender_name: str
    sender_email: str
    when: str  # human readable, e.g. "Mon, Mar 4, 2024 at 10:14 AM"
    subject: str
    text: str


def _paras_html(text: str, tag: str = "div") -> str:
    return "".join(f"<{tag}>{escape(line) if line else '<br>'}</{tag}>" for line in text.split("\n"))


def _img(rng: random.Random) -> str:
    data = rng.choice(INLINE_PNGS)
    return f'<img src="data:image/png;base64,{data}" alt="image.png" width="{rng.choice((16, 24, 32))}">'


def customer_email(rng: random.Random, style: str, text: str, sender_name: str,
                   quoted: Quoted | None, inline_image: bool, signature: bool) -> EmailBody:
    """A customer's email as their mail client would have rendered it."""
    if style == "outlook":
        sig = (f'<p class=MsoNormal>Thanks,<o:p></o:p></p><p class=MsoNormal><b>{escape(sender_name)}</b>'
               f'<o:p></o:p></p><p class=MsoNormal><span style="color:gray">Sent from Outlook</span></p>') if signature else ""
        quote = ""
        if quoted:
            quote = ("<div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in'>"
                     f"<p class=MsoNormal><b>From:</b> {escape(quoted.sender_name)} &lt;{escape(quoted.sender_email)}&gt;<br>"
                     f"<b>Sent:</b> {escape(quoted.when)}<br><b>To:</b> {escape(sender_name)}<br>"
                     f"<b>Subject:</b> {escape(quoted.subject)}</p></div>{_paras_html(quoted.text, 'p class=MsoNormal')}")
        body = (
            '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><meta http-equiv=Content-Type '
            'content="text/html; charset=utf-8"><style><!-- p.MsoNormal{margin:0in;font-size:11.0pt;'
            'font-family:"Calibri",sans-serif;} --></style></head><body lang=EN-US><div class=WordSection1>'
            f"{_paras_html(text, 'p class=MsoNormal')}{_img(rng) if inline_image else ''}{sig}{quote}</div></body></html>"
        )
    elif style == "gmail":
        sig = ('<br clear="all"><div><br></div>-- <br><div dir="ltr" class="gmail_signature">'
               f"<div>{escape(sender_name)}</div><div>Sent from my phone</div></div>") if signature else ""
        quote = ""
        if quoted:
            quote = ('<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On '
                     f"{escape(quoted.when)} {escape(quoted.sender_name)} &lt;{escape(quoted.sender_email)}&gt; wrote:<br></div>"
                     '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
                     f'rgb(204,204,204);padding-left:1ex">{_paras_html(quoted.text)}</blockquote></div>')
        body = f'<div dir="ltr">{_paras_html(text)}{_img(rng) if inline_image else ""}{sig}</div>{quote}'
    elif style == "apple":
        sig = "<div><br></div><div>Sent from my iPhone</div>" if signature else ""
        quote = ""
        if quoted:
            quote = (f'<div><br><blockquote type="cite"><div>On {escape(quoted.when)}, {escape(quoted.sender_name)} '
                     f'&lt;{escape(quoted.sender_email)}&gt; wrote:</div><br class="Apple-interchange-newline">'
                     f"{_paras_html(quoted.text)}</blockquote></div>")
        body = ('<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
                '<body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;">'
                f"{_paras_html(text)}{_img(rng) if inline_image else ''}{sig}{quote}</body></html>")
    else:
        style = "plain"
        inline_image = False
        parts = [text]
        if signature:
            parts.append(f"\n--\n{sender_name}")
        if quoted:
            parts.append(f"\nOn {quoted.when}, {quoted.sender_name} <{quoted.sender_email}> wrote:")
            parts.extend("> " + line for line in quoted.text.split("\n"))
        body = "\n".join(parts)
    return EmailBody(body, style, signature, quoted is not None, inline_image)


def agent_email(text: str, agent_name: str, company: str, quoted: Quoted | None) -> EmailBody:
    """An agent's reply as Gladly sends it: simple HTML, a fixed signature, and a blockquote."""
    quote = ""
    if quoted:
        quote = (f"<div>On {escape(quoted.when)}, {escape(quoted.sender_name)} wrote:</div>"
                 f"<blockquote>{_paras_html(quoted.text, 'p')}</blockquote>")
    body = (f"<p>{escape(text)}</p><p>Best,<br>{escape(agent_name)}<br>{escape(company)} Customer Care</p>{quote}")
    return EmailBody(body, "gladly", True, quoted is not None, False)


def strip_for_quote(body: EmailBody, limit: int = 300) -> str:
    """The plain text of a body, shortened, for quoting in the next reply (keeps files small)."""
    text = re.sub(r"<[^>]+>", " ", body.text) if body.is_html or body.style == "gladly" else body.text
    text = re.sub(r"[ \t]+", " ", text).strip()
    return text[:limit]


# --------------------------------------------------------------------------- binary payloads

ATTACHMENT_KINDS = (
    ("image/jpeg", "photo_{n}.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    ("image/png", "screenshot {n}.png", b"\x89PNG\r\n\x1a\n"),
    ("application/pdf", "invoice-{n}.pdf", b"%PDF-1.4\n"),
    ("text/plain", "debug_log_{n}.txt", b"log start\n"),
    ("application/pdf", "reçu – février {n}.pdf", b"%PDF-1.7\n"),
)


def attachment_bytes(rng: random.Random, magic: bytes, size: int) -> bytes:
    """Deterministic bytes of exactly `size` starting with the file type's magic number."""
    if size <= len(magic):
        return magic[:size]
    return magic + rng.randbytes(size - len(magic))


# An MPEG-1 Layer III frame header (32 kbps, 44.1 kHz, mono) padded to one frame of silence.
_MP3_FRAME = b"\xff\xfb\x10\xc4" + b"\x00" * 100


def recording_bytes(seconds: int) -> bytes:
    """Small stand-in recording bytes: an ID3 tag and a few silent frames (not the real length)."""
    frames = max(1, min(seconds, 8))
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + _MP3_FRAME * frames
