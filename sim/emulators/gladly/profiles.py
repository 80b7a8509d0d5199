"""Customer profiles written through the emulated API: `POST` and `PATCH /customer-profiles`.

The dataset store is read-only, so every profile created or updated here lives in memory over it
(as the conversation writes do), and every read answers from both: GET by id, the lookups by
email / phone / external id, a customer's conversations, a customer's activity items. A
reconciliation reads back what a load wrote exactly as it would on Gladly.

Rules (shared/vendor-apis/gladly-api.md §4.1):
- create: optional client-supplied `id` (URL-safe, shorter than 50), else a 22-character one;
  201 with `Location: /api/v1/customer-profiles/{id}`;
- 409 `taken` when the id, an email or a MOBILE phone is already on a profile;
- PATCH replaces `emails` and `phones` whole, answers 204, and 404 for a merged-away id.
Where the facts stop, the emulator refuses no less likely request than Gladly could (each choice
marked "assumed" below).
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from .store import GladlyStore
from sim.emulators.timeutil import format_ns, parse_rfc3339_ns
from .validation import Refusal, blank, id_refusal, new_id, text_refusal

MAX_CUSTOMER_ID = 49  # "shorter than 50 characters"
PHONE_TYPES = ("HOME", "MOBILE", "OFFICE")  # none (stored "") means OTHER
SMS_PREFERENCES = ("ON", "OFF", "FORBIDDEN")
# North American numbering plan regions: a 10-digit national number gets +1.
NANP_REGIONS = frozenset({"US", "CA"})
# assumed: Gladly's email check is undocumented; only what is surely no address is refused.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
# Fields a client may write; read-only (createdAt, updatedAt) and unknown ones are ignored (assumed).
TEXT_FIELDS = ("name", "image", "address", "externalCustomerId")

EMAIL_TAKEN = "email address already exists on another customer profile"
MOBILE_TAKEN = "mobile phone number already exists on another customer profile"


def _compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def normalize_phone(original: str, region_code: str) -> str | None:
    """E.164 for a phone number as written, or None when it has no digits. Without a number plan
    a national number outside North America only gets a `+` (assumed)."""
    digits = re.sub(r"\D", "", original)
    if not digits:
        return None
    if not original.strip().startswith("+") and region_code.upper() in NANP_REGIONS and len(digits) == 10:
        return "+1" + digits
    return "+" + digits


def _emails(value: Any) -> list[dict[str, Any]] | Refusal:
    if not isinstance(value, list):
        return Refusal(400, "invalid", "emails must be a list", "emails")
    emails = []
    for entry in value:
        if not isinstance(entry, dict) or blank(entry.get("original")):
            return Refusal(400, "blank", "emails.original cannot be blank", "emails.original")
        original = entry["original"]
        if not _EMAIL.match(original.strip()):
            return Refusal(400, "invalid", "emails.original is not an email address", "emails.original")
        email: dict[str, Any] = {"original": original, "normalized": original.strip().lower()}
        if isinstance(entry.get("primary"), bool):
            email["primary"] = entry["primary"]
        emails.append(email)
    return emails


def _phones(value: Any) -> list[dict[str, Any]] | Refusal:
    if not isinstance(value, list):
        return Refusal(400, "invalid", "phones must be a list", "phones")
    phones = []
    for entry in value:
        if not isinstance(entry, dict) or blank(entry.get("original")):
            return Refusal(400, "blank", "phones.original cannot be blank", "phones.original")
        kind = entry.get("type") or ""
        if kind and kind not in PHONE_TYPES:
            return Refusal(400, "invalid", f"phones.type must be one of {', '.join(PHONE_TYPES)}", "phones.type")
        region = entry.get("regionCode") or "US"
        if not isinstance(region, str):
            return Refusal(400, "invalid", "phones.regionCode must be a string", "phones.regionCode")
        normalized = normalize_phone(entry["original"], region)
        if normalized is None:
            return Refusal(400, "invalid", "phones.original is not a phone number", "phones.original")
        preference = entry.get("smsPreference")
        if preference is not None and preference not in SMS_PREFERENCES:
            detail = f"phones.smsPreference must be one of {', '.join(SMS_PREFERENCES)}"
            return Refusal(400, "invalid", detail, "phones.smsPreference")
        phone: dict[str, Any] = {"original": entry["original"], "normalized": normalized, "regionCode": region,
                                 "type": kind}
        for name in ("extension", "primary", "smsPreference"):
            if entry.get(name) is not None:
                phone[name] = entry[name]
        phones.append(phone)
    return phones


def profile_fields(payload: dict[str, Any]) -> dict[str, Any] | Refusal:
    """The writable fields of a create or PATCH body, checked and normalized (`normalized` email
    and E.164 phone computed as Gladly does). A null value counts as absent (assumed)."""
    fields: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        refusal = text_refusal(payload.get(name), name)
        if refusal is not None:
            return refusal
        if payload.get(name) is not None:
            fields[name] = payload[name]
    for name, check in (("emails", _emails), ("phones", _phones)):
        if payload.get(name) is not None:
            checked = check(payload[name])
            if isinstance(checked, Refusal):
                return checked
            fields[name] = checked
    external_ids = payload.get("externalCustomerIds")
    if external_ids is not None:
        if not isinstance(external_ids, dict) or not all(isinstance(v, str) for v in external_ids.values()):
            return Refusal(400, "invalid", "externalCustomerIds must map names to strings", "externalCustomerIds")
        fields["externalCustomerIds"] = external_ids
    attributes = payload.get("customAttributes")
    if attributes is not None:
        if not isinstance(attributes, dict):
            return Refusal(400, "invalid", "customAttributes must be an object", "customAttributes")
        fields["customAttributes"] = attributes
    return fields


def profile_keys(profile: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The (kind, value) lookup keys of a profile, as the dataset index derives them."""
    for email in profile.get("emails") or []:
        if isinstance(email, dict) and isinstance(email.get("normalized"), str):
            yield "email", email["normalized"].lower()
    for phone in profile.get("phones") or []:
        if isinstance(phone, dict) and isinstance(phone.get("normalized"), str):
            yield "phone", phone["normalized"]
    if isinstance(profile.get("externalCustomerId"), str):
        yield "external", profile["externalCustomerId"]
    external_ids = profile.get("externalCustomerIds")
    if isinstance(external_ids, dict):
        yield from (("external", v) for v in external_ids.values() if isinstance(v, str))


def _mobiles(profile: dict[str, Any]) -> set[str]:
    return {
        p["normalized"] for p in profile.get("phones") or []
        if isinstance(p, dict) and p.get("type") == "MOBILE" and isinstance(p.get("normalized"), str)
    }


def _emails_of(profile: dict[str, Any]) -> set[str]:
    return {value for kind, value in profile_keys(profile) if kind == "email"}


class CustomerProfiles:
    """Customer profiles as the API shows them: the dataset's, with every create and PATCH made
    through the API laid over them. Thread-safe; a create checks and claims its keys atomically."""

    def __init__(self, store: GladlyStore, now_ns: Callable[[], int]):
        self.store = store
        self._now_ns = now_ns
        self._written: dict[str, dict[str, Any]] = {}  # created here, or a dataset profile patched here
        self._keys: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.created = 0
        self.updated = 0
        self._lock = threading.Lock()

    # -- reads -------------------------------------------------------------------------------

    def body(self, customer_id: str) -> str | None:
        """The profile as GET returns it (JSON text), or None; merged-away ids are the caller's."""
        with self._lock:
            written = self._written.get(customer_id)
        return _compact(written) if written is not None else self.store.customer(customer_id)

    def exists(self, customer_id: str) -> bool:
        """A live profile: written here or in the dataset, and not merged away."""
        return self.store.survivor(customer_id) is None and self.body(customer_id) is not None

    def find(self, kind: str, value: str, limit: int) -> list[str]:
        """Profiles matching one lookup key, newest `updatedAt` first (ties by id), at most `limit`."""
        with self._lock:
            return [_compact(profile) for profile in self._matching(kind, value)[:limit]]

    def _matching(self, kind: str, value: str) -> list[dict[str, Any]]:
        """Every live profile with the key, newest first (the caller holds the lock)."""
        rows = [(ns, cid, body) for cid, ns, body in self.store.customer_rows(kind, value) if cid not in self._written]
        found = [(ns, cid, json.loads(body)) for ns, cid, body in rows]
        for cid in self._keys.get((kind, value), ()):
            profile = self._written[cid]
            found.append((parse_rfc3339_ns(profile.get("updatedAt")), cid, profile))
        found.sort(key=lambda row: (row[0] is None, -(row[0] or 0), row[1]))
        return [profile for _, _, profile in found]

    # -- writes ------------------------------------------------------------------------------

    def create(self, payload: dict[str, Any]) -> str | Refusal:
        """Create a profile; its id, or why Gladly refuses it (nothing changed)."""
        requested = payload.get("id")
        refusal = id_refusal(requested, max_length=MAX_CUSTOMER_ID)
        if refusal is not None:
            return refusal
        fields = profile_fields(payload)
        if isinstance(fields, Refusal):
            return fields
        with self._lock:
            if requested is not None and self._id_taken(requested):
                return Refusal(409, "taken", "customer ID exists", "id")
            customer_id = requested or self._fresh_id()
            refusal = self._uniqueness_refusal(fields, customer_id, {})
            if refusal is not None:
                return refusal
            now = format_ns(self._now_ns())
            profile = {"id": customer_id, "emails": [], "phones": [], "customAttributes": {}, **fields,
                       "createdAt": now, "updatedAt": now}
            self._put(profile)
            self.created += 1
        return customer_id

    def patch(self, customer_id: str, payload: dict[str, Any]) -> Refusal | None:
        """Update the given fields (`emails` and `phones` replaced whole); why not, or None."""
        if not self.exists(customer_id):
            # Merged-away ids too: PATCH answers 404 where GET answers 301.
            return Refusal(404, "not_exist", f"customer profile [{customer_id}] does not exist")
        fields = profile_fields(payload)
        if isinstance(fields, Refusal):
            return fields
        with self._lock:
            current = self._written.get(customer_id)
            if current is None:
                current = json.loads(self.store.customer(customer_id) or "{}")
            refusal = self._uniqueness_refusal(fields, customer_id, current)
            if refusal is not None:
                return refusal
            self._put({**current, **fields, "updatedAt": format_ns(self._now_ns())})
            self.updated += 1
        return None

    def _id_taken(self, customer_id: str) -> bool:
        """On a profile, or a merged-away id (GET answers 301 for it)."""
        return (customer_id in self._written or customer_id in self.store.merges
                or self.store.customer(customer_id) is not None)

    def _fresh_id(self) -> str:
        while True:
            candidate = new_id()
            if not self._id_taken(candidate):
                return candidate

    def _uniqueness_refusal(self, fields: dict[str, Any], customer_id: str, current: dict[str, Any]) -> Refusal | None:
        """409 when an email or a MOBILE number the write adds is on another profile. What the
        profile already holds is not checked again, and only a MOBILE number on another profile
        clashes with a MOBILE one (assumed: the least strict reading of "MOBILE phone is unique")."""
        for email in _emails_of(fields) - _emails_of(current):
            if any(p.get("id") != customer_id for p in self._matching("email", email)):
                return Refusal(409, "taken", EMAIL_TAKEN, "emails")
        for number in _mobiles(fields) - _mobiles(current):
            if any(p.get("id") != customer_id and number in _mobiles(p) for p in self._matching("phone", number)):
                return Refusal(409, "taken", MOBILE_TAKEN, "phones")
        return None

    def _put(self, profile: dict[str, Any]) -> None:
        """Store a profile and re-index its lookup keys (the caller holds the lock)."""
        customer_id = profile["id"]
        old = self._written.get(customer_id)
        if old is not None:
            for key in profile_keys(old):
                self._keys[key].discard(customer_id)
        self._written[customer_id] = profile
        for key in profile_keys(profile):
            self._keys[key].add(customer_id)
