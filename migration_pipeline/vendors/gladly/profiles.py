"""Gladly as a migration target: customer profiles, topics and CUSTOMER_ACTIVITY items written
through its REST API (shared/vendor-apis/gladly-api.md §4.1, §4.4, §4.5). No Dagster import.

`GladlyTarget` wraps a `GladlyClient` (the one `GladlyResource.client()` yields): the same
session, the organization's shared request budget and the retries of `lib/http.py`.

A create is never retried blindly. Only a 429 is re-sent at once (a throttled request was not
applied). After a 5xx or a dropped connection the create may have been applied, so the object is
first looked up - by the id the create sent (every create sends one), then, for a profile, by its
emails and MOBILE numbers - and the one found is used; only an object that is not there is sent
again, under the same id, so even a stale lookup cannot make a second one (Gladly refuses a taken
id with 409). A 409 (the id, an email or a mobile number already on a profile; a topic name
already taken; an activity item id already used) is resolved the same way, to the existing object.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import unquote

import httpx
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.http import path_segment as segment
from migration_pipeline.lib.timestamps import utc_text
from migration_pipeline.vendors.gladly.client import CustomerProfile, GladlyClient, Topic, error_list, moved_to_id

ActivityType = Literal["EMAIL", "ISSUE", "SMS", "SURVEY"]
PhoneType = Literal["HOME", "MOBILE", "OFFICE"]
# A merged customer answers 301 naming the survivor; a chain longer than this is refused.
MAX_MERGE_HOPS = 5
Found = TypeVar("Found")
_E164 = re.compile(r"^\+\d{2,15}$")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")


def _url_safe_id(raw: bytes) -> str:
    """22 base64url characters (the shape of Gladly's own ids), never starting with `-`."""
    first = bytes([raw[0] & 0x7F])
    return base64.urlsafe_b64encode(first + raw[1:16]).decode("ascii").rstrip("=")


def new_id() -> str:
    """A fresh id for an object created in Gladly."""
    return _url_safe_id(uuid.uuid4().bytes)


def stable_id(source_key: str) -> str:
    """The same id for the same source key, every run: a create interrupted by a crash is found by
    it on the next run, and sending it again can only be refused (409), never doubled."""
    return _url_safe_id(hashlib.sha256(source_key.encode("utf-8")).digest())


class Phone(BaseModel):
    """A phone number to write; `type` None is Gladly's OTHER (only MOBILE numbers are unique)."""

    model_config = ConfigDict(frozen=True)

    number: str
    type: PhoneType | None = None
    region_code: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"original": self.number}
        if self.type is not None:
            body["type"] = self.type
        if self.region_code is not None:
            body["regionCode"] = self.region_code
        return body

    def e164(self) -> str | None:
        """The number as Gladly's lookup takes it, if it is written in international form."""
        compact = _PHONE_PUNCTUATION.sub("", self.number)
        return compact if _E164.match(compact) else None


class ProfileFields(BaseModel):
    """What a load writes on a customer profile. Only the fields given are sent: a PATCH replaces
    `emails` and `phones` whole, so leaving one out keeps the profile's."""

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    emails: list[str] | None = None
    phones: list[Phone] | None = None
    address: str | None = None
    external_customer_id: str | None = None
    custom_attributes: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name, key in (("name", "name"), ("address", "address"), ("external_customer_id", "externalCustomerId"),
                          ("custom_attributes", "customAttributes")):
            if getattr(self, name) is not None:
                body[key] = getattr(self, name)
        if self.emails is not None:
            body["emails"] = [{"original": email} for email in self.emails]
        if self.phones is not None:
            body["phones"] = [phone.body() for phone in self.phones]
        return body

    def mobile_numbers(self) -> list[str]:
        """The MOBILE numbers Gladly can be asked about (international form only)."""
        return [n for p in self.phones or [] if p.type == "MOBILE" and (n := p.e164()) is not None]


class CustomerActivity(BaseModel):
    """A CUSTOMER_ACTIVITY item: a card on the customer's timeline, outside any conversation.
    `id` makes it idempotent (use `stable_id` of the source record); `occurred_at` places it and
    must be no older than one year (Gladly refuses older ones with 400)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(max_length=50)
    activity_type: ActivityType
    title: str | None = Field(default=None, max_length=100)
    body: str | None = Field(default=None, max_length=25_000)
    source_name: str | None = Field(default=None, max_length=50)
    link_url: str | None = None
    link_text: str | None = Field(default=None, max_length=50)
    occurred_at: AwareDatetime | None = None
    expand_by_default: bool = False

    def request_body(self) -> dict[str, Any]:
        content: dict[str, Any] = {"type": "CUSTOMER_ACTIVITY", "activityType": self.activity_type,
                                   "expandByDefault": self.expand_by_default}
        for name, key in (("title", "title"), ("body", "body"), ("source_name", "sourceName")):
            if getattr(self, name) is not None:
                content[key] = getattr(self, name)
        if self.link_url is not None:
            content["link"] = {"url": self.link_url, **({"text": self.link_text} if self.link_text else {})}
        if self.occurred_at is not None:
            content["occurredAt"] = utc_text(self.occurred_at)
        return {"id": self.id, "content": content}


@dataclass(frozen=True)
class ProfileOutcome:
    """The profile a create ended with. `created`: this call's POST made it (a 201, or the id it
    sent found after the answer was lost); otherwise an existing profile holding the id, an email
    or a mobile number is used, and nothing was created. `matched_by`: the key a lookup found it
    by (None after a 201)."""

    id: str
    created: bool
    matched_by: Literal["id", "email", "phone"] | None = None


@dataclass(frozen=True)
class TopicOutcome:
    """The topic a create ended with; `created` False: one with that id or name already existed."""

    id: str
    name: str
    created: bool


@dataclass(frozen=True)
class ActivityOutcome:
    """Where an activity item is; `created` False: its id was already used (409, so it is there).
    `customer_id` is the surviving profile when the one asked for was merged away."""

    id: str
    customer_id: str
    created: bool


class GladlyTarget:
    """Typed writes to a Gladly organization, over a `GladlyClient`.

    `create_attempts` bounds how often one create is sent when each answer is lost and each
    lookup shows it was not applied. Every write leaves through `_write`: a dry run's target
    (plan.PlanningTarget, `plans_only`) records it there instead of sending it."""

    plans_only = False  # True: writes are recorded, never sent (a loader then keeps no ledger or leases)

    def __init__(self, client: GladlyClient, *, create_attempts: int = 3):
        self.client = client
        self.create_attempts = create_attempts

    def _write(self, method: str, path: str, body: dict[str, Any], *, ok: tuple[int, ...] = (),
               idempotent: bool = True) -> httpx.Response:
        """Send one write to Gladly (every write of this target goes through here)."""
        return self.client.request(method, path, json=body, ok=ok, idempotent=idempotent)

    # -- customer profiles ---------------------------------------------------------------------
    def create_profile(self, fields: ProfileFields, profile_id: str | None = None) -> ProfileOutcome:
        """Create a profile under `profile_id` (default: a fresh id; give `stable_id(source key)`
        so a crashed run's create is found by the next one), or use the existing profile that a
        409 or a lost answer points at. Raises VendorAPIError when Gladly refuses the profile
        (400), or for a 409 whose holder no lookup finds."""
        profile_id = profile_id or new_id()
        body = {"id": profile_id, **fields.body()}
        response = self._create(
            "/customer-profiles", body, lambda: self._existing_profile(profile_id, fields, lost=True, id_first=True)
        )
        if isinstance(response, ProfileOutcome):
            return response
        if response.status_code == 409:
            id_taken = any(e.get("attr") == "id" for e in error_list(response))
            found = self._existing_profile(profile_id, fields, lost=False, id_first=id_taken)
            if found is None:
                raise self._refusal("POST", "/customer-profiles", response, "no profile found by its id, emails or mobiles")
            return found
        return ProfileOutcome(_location_id(response, profile_id), created=True)

    def update_profile(self, profile_id: str, fields: ProfileFields) -> None:
        """PATCH the given fields (204). Safe to repeat. A merged-away or unknown id (404), an
        email or mobile of another profile (409) or invalid fields (400) raise VendorAPIError."""
        self._write("PATCH", f"/customer-profiles/{segment(profile_id)}", fields.body())

    def patch_profile(self, profile_id: str, body: dict[str, Any]) -> httpx.Response:
        """PATCH a request body as given onto a profile; Gladly's answer, a 409 (an email or
        mobile number of another profile) returned rather than raised."""
        return self._write("PATCH", f"/customer-profiles/{segment(profile_id)}", body, ok=(409,))

    def find_profiles_by_email(self, email: str) -> list[CustomerProfile]:
        """Profiles with the address (case-insensitive), newest update first, at most 50."""
        return self._find(email=email)

    def find_profiles_by_phone(self, e164: str) -> list[CustomerProfile]:
        """Profiles with the number (E.164, `+` included), newest update first, at most 50."""
        return self._find(phoneNumber=e164)

    def _find(self, **param: str) -> list[CustomerProfile]:
        response = self.client.request("GET", "/customer-profiles", params=param)
        return [CustomerProfile.model_validate(p) for p in response.json()]

    def _existing_profile(self, profile_id: str, fields: ProfileFields, *, lost: bool, id_first: bool) -> ProfileOutcome | None:
        """The profile holding the id, an email or a mobile number of `fields`, or None. The id
        is asked first after a lost answer (a create that was applied is there under it, made by
        this call) and after a 409 naming the id; the addresses first after a 409 naming them."""
        if id_first and (found := self._profile_by_id(profile_id, created=lost)) is not None:
            return found
        for email in fields.emails or []:
            found = self.find_profiles_by_email(email)
            if found:
                return ProfileOutcome(found[0].id, created=False, matched_by="email")
        for number in fields.mobile_numbers():
            found = self.find_profiles_by_phone(number)
            mobile = [p for p in found if any(ph.get("normalized") == number and ph.get("type") == "MOBILE" for ph in p.phones)]
            if mobile or found:
                return ProfileOutcome((mobile or found)[0].id, created=False, matched_by="phone")
        return None if id_first else self._profile_by_id(profile_id, created=lost)

    def _profile_by_id(self, profile_id: str, *, created: bool) -> ProfileOutcome | None:
        """The profile under the id (the survivor when it was merged away), or None."""
        lookup = self.client.get_customer(profile_id)
        if lookup.status == "found":
            return ProfileOutcome(profile_id, created=created, matched_by="id")
        if lookup.status == "moved" and lookup.moved_to:
            return ProfileOutcome(lookup.moved_to, created=False, matched_by="id")
        return None

    # -- topics --------------------------------------------------------------------------------
    def list_topics(self) -> list[Topic]:
        """Every topic of the organization (no pagination)."""
        return self.client.list_topics()

    def create_topic(self, name: str, *, topic_id: str | None = None, parent_id: str | None = None,
                     disabled: bool = False) -> TopicOutcome:
        """Create a topic, or use the one that already has the name or the id (409)."""
        topic_id = topic_id or new_id()
        body: dict[str, Any] = {"id": topic_id, "name": name, "disabled": disabled}
        if parent_id is not None:
            body["parentId"] = parent_id
        response = self._create("/topics", body, lambda: self._existing_topic(topic_id, name))
        if isinstance(response, TopicOutcome):
            return response
        if response.status_code == 409:
            for err in error_list(response):
                meta = err.get("meta")
                if err.get("attr") == "name" and isinstance(meta, dict) and meta.get("id"):
                    return TopicOutcome(str(meta["id"]), name, created=False)
            found = self._existing_topic(topic_id, name)
            if found is None:
                raise self._refusal("POST", "/topics", response, "no topic found by its id or name")
            return TopicOutcome(found.id, name, created=False)
        return TopicOutcome(_location_id(response, topic_id), name, created=True)

    def _existing_topic(self, topic_id: str, name: str) -> TopicOutcome | None:
        topics = self.client.list_topics()
        if any(t.id == topic_id for t in topics):
            return TopicOutcome(topic_id, name, created=True)
        holder = next((t for t in topics if t.name == name), None)
        return TopicOutcome(holder.id, name, created=False) if holder is not None else None

    # -- CUSTOMER_ACTIVITY items ---------------------------------------------------------------
    def add_activity(self, customer_id: str, activity: CustomerActivity) -> ActivityOutcome:
        """Put an activity card on a customer's timeline, once: a re-used id (409 `taken`) means
        it is already there; a merged customer's 301 is followed to the survivor. An item older
        than a year, or otherwise invalid (400), and an unknown customer (404) raise VendorAPIError."""
        body = activity.request_body()
        path = ""
        for _ in range(MAX_MERGE_HOPS):
            path = f"/customers/{segment(customer_id)}/conversation-items"
            response = self._create(path, body, lambda: self._existing_item(activity.id, customer_id), ok=(301, 409))
            if isinstance(response, ActivityOutcome):
                return response
            if response.status_code == 301:
                survivor = moved_to_id(response)
                if not survivor:
                    raise self._refusal("POST", path, response, "moved, but the answer names no surviving customer")
                customer_id = survivor
                continue
            return ActivityOutcome(activity.id, customer_id, created=response.status_code != 409)
        raise VendorAPIError(self.client.vendor, "POST", path, 301, f"more than {MAX_MERGE_HOPS} merges to follow")

    def _existing_item(self, item_id: str, customer_id: str) -> ActivityOutcome | None:
        response = self.client.request("GET", f"/conversation-items/{segment(item_id)}", ok=(404,))
        if response.status_code == 404:
            return None
        return ActivityOutcome(item_id, str(response.json().get("customerId") or customer_id), created=True)

    # -- the create protocol -------------------------------------------------------------------
    def _create(
        self, path: str, body: dict[str, Any], existing: Callable[[], Found | None], ok: tuple[int, ...] = (409,)
    ) -> httpx.Response | Found:
        """POST a create; the vendor's answer, or what `existing()` finds after an answer that
        was lost or a 5xx (the create may have been applied). Re-sent only when not found."""
        last: VendorAPIError | None = None
        for attempt in range(self.create_attempts):
            if attempt:
                time.sleep(min(self.client.backoff_initial * 2 ** (attempt - 1), self.client.backoff_max))
            try:
                return self._write("POST", path, body, idempotent=False, ok=ok)
            except VendorAPIError as exc:
                if not exc.retryable:
                    raise
                last = exc
            found = existing()
            if found is not None:
                return found
        assert last is not None
        raise last

    def _refusal(self, method: str, path: str, response: httpx.Response, why: str) -> VendorAPIError:
        detail = f"{self.client.error_detail(response)} ({why})"
        return VendorAPIError(self.client.vendor, method, path, response.status_code, detail)


def _location_id(response: httpx.Response, sent: str) -> str:
    """The created object's id from `Location` (its last path segment), else the id sent."""
    location = response.headers.get("Location")
    if not location:
        return sent
    return unquote(httpx.URL(location).path.rstrip("/").rsplit("/", 1)[-1]) or sent

