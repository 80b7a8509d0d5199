"""What the Gladly emulator's writes share: the refusal they answer with, client-supplied ids and
the ids Gladly makes itself, and Gladly's field checks (`blank`, `invalid`, `too_long`).

Facts: shared/vendor-apis/gladly-api.md §1.4 (error codes, dotted attribute paths) and §4 (ids are
URL-safe strings, 22 characters in every example; client-supplied ids shorter than 50).
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from typing import Any

# "URL-safe" is all the facts say: RFC 3986's unreserved characters are accepted, so the emulator
# refuses no id Gladly could take (assumed). An id of dots alone is no path segment at all.
_URL_SAFE_ID = re.compile(r"^(?!\.+$)[A-Za-z0-9._~-]+$")


@dataclass(frozen=True)
class Refusal:
    """A 4xx answer in Gladly's error shape."""

    status: int
    code: str
    detail: str
    attr: str | None = None
    meta: dict[str, Any] | None = None


def new_id() -> str:
    """A 22-character URL-safe id like Gladly's (slugid's "nice" form: a v4 UUID in base64url
    with the first bit clear, so it never starts with `-`)."""
    raw = bytearray(uuid.uuid4().bytes)
    raw[0] &= 0x7F
    return base64.urlsafe_b64encode(bytes(raw)).decode("ascii").rstrip("=")


def id_refusal(value: Any, *, max_length: int, detail: str = "id contains unsupported characters") -> Refusal | None:
    """A client-supplied id (None: none given) that is not a URL-safe string of at most
    `max_length` characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not _URL_SAFE_ID.match(value):
        return Refusal(400, "invalid", detail, "id")
    if len(value) > max_length:
        return Refusal(400, "too_long", f"id must be at most {max_length} characters", "id")
    return None


def text_refusal(value: Any, attr: str, max_length: int | None = None) -> Refusal | None:
    """An optional text field that is not a string, or longer than `max_length` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        return Refusal(400, "invalid", f"{attr} must be a string", attr)
    if max_length is not None and len(value) > max_length:
        return Refusal(400, "too_long", f"{attr} must be at most {max_length} characters", attr)
    return None


def blank(value: Any) -> bool:
    return not isinstance(value, str) or not value.strip()
