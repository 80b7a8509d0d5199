"""Into Gladly: one customer profile per person, created or completed through the API before any
history is imported (issue 15, item 4). No Dagster import.

Persons (`people`): staged contract customers that share an email address (trimmed, compared
without case; a merged-away customer joins its survivor) are ONE Gladly customer: the union of
their addresses and numbers, the first non-empty name in source order. A person's key (the ledger
key's id, ledger_keys.profile) is its first valid email, lower-cased (in source order: the
first customer's primary one); a customer with no valid email
but a phone is a person of its own, keyed `<system>:<id>`; one with neither is skipped and counted
with its reason. Addresses Gladly would refuse (import_files.is_valid_email) are never sent, and
are counted per person; so are numbers without a digit.

Load (`ProfileLoader.load`): each person's profile exactly once, under the ledger protocol and the
leases of lib/ledger.py. The create sends `stable_id(person key)`, so a crashed run's create is
found by it; a 409 (an email already on a profile) is resolved by `GladlyTarget` to the existing
profile, never by a second create, and that profile is then completed (PATCH) with the name,
emails and phones it lacks, keeping every entry it has. Phones go without a type (Gladly's OTHER):
the contract does not know which numbers are mobile, and only a MOBILE number must be unique.
The ledger row of the person key holds the Gladly profile id: `profile_of(source customer id)`.
A 400 is recorded against the person (its key and source customers) and the run goes on; a 401 or
403 stops it.

Dry run: over a `plan.PlanningTarget` the same code plans instead of loading: each create is
preceded by the lookups a 409 would lead to (so a profile Gladly already holds counts as matched),
the POSTs and PATCHes are recorded, not sent, and the ledger and leases are left as they are.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from migration_pipeline.lib import ledger_keys
from migration_pipeline.lib.http import VendorAPIError
from migration_pipeline.lib.ledger import ExactlyOnce
from migration_pipeline.lib.staging.db import StagingDatabase, customers, ledger
from migration_pipeline.vendors.gladly.client import CustomerProfile
from migration_pipeline.vendors.gladly.import_files import is_valid_email
from migration_pipeline.vendors.gladly.profiles import MAX_MERGE_HOPS, GladlyTarget, Phone, ProfileFields, stable_id

ENTITY = "profile"
# ledger.source_key and load_leases.lease_key hold 160 characters: a longer email (valid up to
# 254) is keyed by its digest instead.
MAX_PERSON_KEY = 160 - len(ledger_keys.profile(""))
LONG_EMAIL_PREFIX = "email-sha256:"
# Why a staged customer gets no profile.
NO_EMAIL_NO_PHONE = "no email and no phone"
ONLY_INVALID_EMAIL = "no valid email and no phone"
_DIGITS = re.compile(r"\D")


@dataclass(frozen=True)
class Person:
    """One Gladly customer: the staged customers it unites, in source order."""

    key: str
    source_ids: tuple[str, ...]
    name: str | None
    emails: tuple[str, ...]  # valid, trimmed, one per address (first spelling kept)
    phones: tuple[str, ...]  # as written, one per number
    invalid_emails: tuple[str, ...] = ()  # not sent
    invalid_phones: tuple[str, ...] = ()  # not sent (no digit)

    def fields(self) -> ProfileFields:
        return ProfileFields(
            name=self.name,
            emails=list(self.emails) or None,
            phones=[Phone(number=p) for p in self.phones] or None,
        )


@dataclass(frozen=True)
class Skipped:
    source_id: str
    reason: str


@dataclass(frozen=True)
class People:
    persons: list[Person]
    skipped: list[Skipped] = field(default_factory=list)

    def skipped_by_reason(self) -> Counter[str]:
        return Counter(s.reason for s in self.skipped)


@dataclass(frozen=True)
class Failure:
    person_key: str
    source_ids: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return f"{self.person_key} (source customers {', '.join(self.source_ids)}): {self.reason}"


@dataclass
class ProfileCounts:
    """Every person the load saw ends as exactly one of created, matched, recovered,
    already_loaded or failed."""

    people: int = 0
    created: int = 0  # made by this run's create
    matched: Counter[str] = field(default_factory=Counter)  # an existing profile used, by id / email / phone
    recovered: int = 0  # an unknown outcome (a crash's intent, a lost answer) resolved by a lookup
    resumed: int = 0  # of all these, persons an earlier run left unfinished (its intent)
    already_loaded: int = 0  # done in the ledger: nothing sent
    updated: int = 0  # existing profiles completed with a PATCH
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # source customers without a profile, by reason
    invalid_emails: int = 0  # addresses not sent
    people_with_invalid_emails: int = 0
    invalid_phones: int = 0
    # what a completing PATCH could not write and why (an address already on another profile, a
    # refusal); the person keeps the profile it was matched to
    not_updated: list[str] = field(default_factory=list)
    waited_for_lease: int = 0
    errors: list[str] = field(default_factory=list)  # the protocol's

    def as_dict(self) -> dict[str, Any]:
        return {
            "people": self.people, "created": self.created, "matched": dict(self.matched),
            "recovered": self.recovered, "resumed": self.resumed, "already_loaded": self.already_loaded,
            "updated": self.updated, "failed": self.failed, "failures": [str(f) for f in self.failures],
            "skipped": dict(self.skipped), "invalid_emails": self.invalid_emails,
            "people_with_invalid_emails": self.people_with_invalid_emails, "invalid_phones": self.invalid_phones,
            "not_updated": list(self.not_updated), "waited_for_lease": self.waited_for_lease,
        }


class AccessDenied(RuntimeError):
    """Gladly refused the credentials (401/403): every further write would be refused too."""


# -- persons ---------------------------------------------------------------------------------
def normalized_email(email: str) -> str:
    return email.strip().lower()


def person_key_of_email(email: str) -> str:
    normal = normalized_email(email)
    if len(normal) <= MAX_PERSON_KEY:
        return normal
    return LONG_EMAIL_PREFIX + hashlib.sha256(normal.encode("utf-8")).hexdigest()


def _digits(phone: str) -> str:
    return _DIGITS.sub("", phone)


class _Groups:
    """Union-find over staged customer positions."""

    def __init__(self, size: int):
        self.parent = list(range(size))

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def people(db: StagingDatabase, customer_ids: Iterable[str] | None = None) -> People:
    """The persons of the staged customers (all, or those holding any of `customer_ids`; a person
    is always grouped over every staged customer, so its key does not depend on the selection)."""
    query = sa.select(
        customers.c.source_id, customers.c.source_system, customers.c.name, customers.c.emails,
        customers.c.phones, customers.c.merged_into,
    ).order_by(customers.c.source_system, customers.c.source_id)
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    position = {row.source_id: i for i, row in enumerate(rows)}
    groups = _Groups(len(rows))
    first_with: dict[str, int] = {}
    valid: list[list[str]] = []
    for i, row in enumerate(rows):
        emails = [e.strip() for e in row.emails or [] if isinstance(e, str) and e.strip()]
        valid.append([e for e in emails if is_valid_email(e)])
        for email in valid[i]:
            other = first_with.setdefault(normalized_email(email), i)
            groups.join(i, other)
        if row.merged_into is not None and row.merged_into in position:
            groups.join(i, position[row.merged_into])
    members: dict[int, list[int]] = {}
    for i in range(len(rows)):
        members.setdefault(groups.root(i), []).append(i)
    wanted = None if customer_ids is None else set(customer_ids)
    persons: list[Person] = []
    skipped: list[Skipped] = []
    for group in members.values():
        if wanted is not None and not any(rows[i].source_id in wanted for i in group):
            continue
        person = _person([rows[i] for i in group], [valid[i] for i in group])
        if isinstance(person, Person):
            persons.append(person)
        else:
            skipped.extend(s for s in person if wanted is None or s.source_id in wanted)
    return People(persons, skipped)


def _person(rows: list[Any], valid: list[list[str]]) -> Person | list[Skipped]:
    emails: dict[str, str] = {}
    invalid: dict[str, str] = {}
    phones: dict[str, str] = {}
    bad_phones: list[str] = []
    for row, good in zip(rows, valid, strict=True):
        for email in good:
            emails.setdefault(normalized_email(email), email)
        for raw in row.emails or []:
            text = raw.strip() if isinstance(raw, str) else ""
            if text and not is_valid_email(text):
                invalid.setdefault(text.lower(), text)
        for raw in row.phones or []:
            text = raw.strip() if isinstance(raw, str) else ""
            if text and _digits(text):
                phones.setdefault(_digits(text), text)
            elif text:
                bad_phones.append(text)
    if not emails and not phones:
        reason = ONLY_INVALID_EMAIL if invalid else NO_EMAIL_NO_PHONE
        return [Skipped(row.source_id, reason) for row in rows]
    first = rows[0]
    key = person_key_of_email(next(iter(emails))) if emails else f"{first.source_system or 'source'}:{first.source_id}"
    name = next((row.name.strip() for row in rows if isinstance(row.name, str) and row.name.strip()), None)
    return Person(key, tuple(row.source_id for row in rows), name, tuple(emails.values()), tuple(phones.values()),
                  tuple(invalid.values()), tuple(bad_phones))


def done_profiles(db: StagingDatabase) -> dict[str, str]:
    """Person key -> Gladly profile id, for every person the ledger holds as loaded."""
    prefix = ledger_keys.prefix(ledger_keys.PROFILE)
    query = sa.select(ledger.c.source_key, ledger.c.target_id).where(
        ledger.c.entity_type == ENTITY, ledger.c.state == "done"
    )
    with db.engine.connect() as conn:
        return {key.removeprefix(prefix): target for key, target in conn.execute(query) if key.startswith(prefix)}


def profile_index(db: StagingDatabase, customer_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Source customer id -> its Gladly profile id, for every staged customer whose person is loaded."""
    loaded = done_profiles(db)
    return {
        source_id: loaded[person.key]
        for person in people(db, customer_ids).persons if person.key in loaded
        for source_id in person.source_ids
    }


# -- the load ----------------------------------------------------------------------------------
class ProfileLoader(ExactlyOnce):
    """Creates or completes one Gladly profile per person, exactly once (see the module doc); over a
    planning target (`target.plans_only`) only plans it. Close it (or use `with`) to stop the lease
    heartbeat."""

    def __init__(
        self,
        db: StagingDatabase,
        target: GladlyTarget,
        run_id: str | None,
        *,
        create_attempts: int = 6,
        create_backoff_seconds: float = 0.5,
        lease_ttl_seconds: float = 120.0,
    ):
        self.target = target
        self.counts = ProfileCounts()
        super().__init__(db, run_id, counts=self.counts, create_attempts=create_attempts,
                         create_backoff_seconds=create_backoff_seconds, lease_ttl_seconds=lease_ttl_seconds,
                         dry_run=target.plans_only)
        self._loaded: dict[str, str] = {}  # source customer id -> profile id, as this run resolved them
        self._index: dict[str, str] | None = None

    def profile_of(self, source_customer_id: str) -> str | None:
        """The Gladly profile id of a staged customer (its person's), or None while not loaded."""
        if source_customer_id in self._loaded:
            return self._loaded[source_customer_id]
        if self._index is None:
            self._index = profile_index(self.db)
        return self._index.get(source_customer_id)

    def resolved(self) -> dict[str, str]:
        """Source customer id -> profile id, for every person this loader loaded, found loaded or
        (a dry run) planned: what an activity load of the same run sends items to."""
        return dict(self._loaded)

    def load(self, persons: People | Iterable[Person]) -> ProfileCounts:
        """Ensure each person's profile; the counts of this loader (accumulated over calls)."""
        if isinstance(persons, People):
            self.counts.skipped.update(persons.skipped_by_reason())
            persons = persons.persons
        self._index = None
        loaded = done_profiles(self.db)
        for person in persons:
            self.counts.people += 1
            self.counts.invalid_emails += len(person.invalid_emails)
            self.counts.people_with_invalid_emails += bool(person.invalid_emails)
            self.counts.invalid_phones += len(person.invalid_phones)
            profile_id = loaded.get(person.key)
            if profile_id is None:
                profile_id = self._load_person(person)
            else:
                self.counts.already_loaded += 1
            if profile_id is not None:
                self._loaded.update(dict.fromkeys(person.source_ids, profile_id))
        return self.counts

    def _load_person(self, person: Person) -> str | None:
        key = ledger_keys.profile(person.key)
        fields = person.fields()
        outcome: list[str] = []  # what resolved the person, the last word wins

        def create() -> dict[str, Any]:
            try:
                made = self.target.create_profile(fields, stable_id(person.key))
            except VendorAPIError as exc:
                if exc.status in (401, 403):
                    raise AccessDenied(str(exc)) from exc
                raise
            if not made.created:
                self._complete(made.id, person)
            outcome.append("created" if made.created else f"matched:{made.matched_by or 'id'}")
            return {"id": made.id}

        def find() -> dict[str, Any] | None:
            found = self.target._existing_profile(stable_id(person.key), fields, lost=True, id_first=True)
            if found is None:
                return None
            if not found.created:
                self._complete(found.id, person)
            outcome.append("recovered")
            return {"id": found.id}

        try:
            with self.lease(key):
                row = self.ledger.get(key)
                left_unfinished = bool(row and row["state"] == "intent")
                profile_id = self.ensure(key, ENTITY, create, find)
        except VendorAPIError as exc:  # still unknown after every attempt: the intent stays
            if exc.status in (401, 403):
                raise AccessDenied(str(exc)) from exc
            self._fail(person, f"not resolved, looked up again next run: {exc}")
            return None
        if profile_id is None:
            row = self.ledger.get(key)
            self._fail(person, (row or {}).get("last_error") or "refused", counted=True)
            return None
        last = outcome[-1] if outcome else "already_loaded"
        if last == "created":
            self.counts.created += 1
        elif last.startswith("matched:"):
            self.counts.matched[last.removeprefix("matched:")] += 1
        elif last == "already_loaded":
            self.counts.already_loaded += 1  # another run finished it while we waited for the lease
        self.counts.resumed += left_unfinished and last != "already_loaded"
        return profile_id

    def _fail(self, person: Person, reason: str, counted: bool = False) -> None:
        self.counts.failed += not counted  # ensure counts the refusals it records
        self.counts.failures.append(Failure(person.key, person.source_ids, reason))

    def _complete(self, profile_id: str, person: Person) -> None:
        """PATCH an existing profile with what of `person` it lacks (its name when it has none,
        missing emails and phones appended; every entry it has is kept as it is). An address
        Gladly finds on another profile (409) is left off and listed; a refused PATCH is listed
        and the profile used as it is. A retryable failure is raised (the ledger protocol looks
        the profile up and completes it again)."""
        profile = self._profile(profile_id)
        body: dict[str, Any] = {}
        if person.name and not (profile.name or "").strip():
            body["name"] = person.name
        have_emails = {normalized_email(str(e.get("normalized") or e.get("original") or "")) for e in profile.emails}
        new_emails = [e for e in person.emails if normalized_email(e) not in have_emails]
        have_phones = {_digits(str(p.get(k) or "")) for p in profile.phones for k in ("original", "normalized")}
        new_phones = [p for p in person.phones if _digits(p) not in have_phones]
        if new_emails:
            body["emails"] = [_kept(e) for e in profile.emails] + [{"original": e} for e in new_emails]
        if new_phones:
            body["phones"] = [_kept(p) for p in profile.phones] + [Phone(number=p).body() for p in new_phones]
        if not body:
            return
        try:
            response = self.target.patch_profile(profile.id, body)
            if response.status_code == 409 and new_emails:
                elsewhere = [
                    e for e in new_emails
                    if any(p.id != profile.id for p in self.target.find_profiles_by_email(normalized_email(e)))
                ]
                self.counts.not_updated.extend(f"{person.key}: {e} is on another Gladly profile" for e in elsewhere)
                kept = [e for e in new_emails if e not in elsewhere]
                body.pop("emails")
                if kept:
                    body["emails"] = [_kept(e) for e in profile.emails] + [{"original": e} for e in kept]
                if body:
                    response = self.target.patch_profile(profile.id, body)
            if response.status_code == 409:
                self.counts.not_updated.append(f"{person.key}: {self.target.client.error_detail(response)}")
                return
        except VendorAPIError as exc:
            if exc.retryable:
                raise  # looked up and completed again (ledger protocol)
            self.counts.not_updated.append(f"{person.key}: {exc}")
            return
        self.counts.updated += 1

    def _profile(self, profile_id: str) -> CustomerProfile:
        """The profile under the id, following merges to the survivor."""
        for _ in range(MAX_MERGE_HOPS):
            lookup = self.target.client.get_customer(profile_id)
            if lookup.status == "found" and lookup.profile is not None:
                return lookup.profile
            if lookup.status != "moved" or not lookup.moved_to:
                break
            profile_id = lookup.moved_to
        raise VendorAPIError("gladly", "GET", f"/customer-profiles/{profile_id}", 404, "the matched profile is gone")


def _kept(entry: dict[str, Any]) -> dict[str, Any]:
    """An email or phone entry of a profile as a PATCH sends it back: whole, less what Gladly
    computes (`normalized`) and what it shows as empty (an unset phone type reads as "")."""
    return {k: v for k, v in entry.items() if k != "normalized" and v not in ("", None)}
