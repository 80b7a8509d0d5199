"""A message of a merged-away Gladly profile is posted on behalf of the profile it was merged into
(its emails moved there), and the reconciliation expects exactly that person, not either one."""

from __future__ import annotations

import sqlalchemy as sa

from migration_pipeline.pairs.gladly_to_unthread.checks.reconciliation import _People
from migration_pipeline.lib.staging.db import customer_lookups, customers, now_text
from migration_pipeline.vendors.unthread.loader import LoadSettings, UnthreadLoader

SURVIVOR = {"source_id": "S1", "name": "Emma Moore", "primary_email": "Emma@Example.com"}


def _item(customer_id: str) -> dict:
    return {"author_type": "customer", "author_id": customer_id, "customer_id": customer_id}


def _customer(source_id: str, name: str, email: str | None, merged_into: str | None = None) -> dict:
    return {"source_id": source_id, "name": name, "primary_email": email, "emails": [email] if email else [],
            "phones": [], "external_ids": {}, "custom_attributes": {}, "merged_into": merged_into, "staged_at": now_text()}


def _lookup(customer_id: str, surviving_id: str) -> dict:
    return {"customer_id": customer_id, "status": "moved", "moved_to": surviving_id, "surviving_id": surviving_id,
            "profile": None, "fetched_at": now_text()}


def test_a_merged_away_profile_speaks_as_its_survivor_staged_or_not(staging_db):
    with staging_db.begin() as conn:
        conn.execute(sa.insert(customers), [
            _customer("S1", SURVIVOR["name"], SURVIVOR["primary_email"]),
            # staged before the merge was known, and re-staged since: merged_into not set
            _customer("M1", "Taro Yamada", "taro@example.com"),
            # staged with its merge recorded, but no lookup row (an older staging database)
            _customer("M2", "", "", merged_into="S1"),
            _customer("P1", "Plain Person", "not-an-email"),
        ])
        conn.execute(sa.insert(customer_lookups), [_lookup("M1", "S1"), _lookup("M3", "S1")])  # M3: never staged

    loader = UnthreadLoader(staging_db, client=None, settings=LoadSettings(triage_channel_id="T1"))  # type: ignore[arg-type]
    try:
        for merged in ("M1", "M2", "M3"):
            assert loader.on_behalf_of(_item(merged)) == {"name": "Emma Moore", "email": "emma@example.com"}, merged
        # a profile that was never merged speaks as itself (no email: it is not a valid address)
        assert loader.on_behalf_of(_item("P1")) == {"name": "Plain Person"}
        assert loader.on_behalf_of(_item("S1"))["email"] == "emma@example.com"
    finally:
        loader.close()

    people = _People(staging_db, users=[], placeholder_user_id=None)
    for merged in ("M1", "M2", "M3"):
        # the survivor only: the merged-away profile's own address would be a misattribution
        assert people.expected(_item(merged), ticket_customer="S1") == {("email", "emma@example.com")}, merged
    assert people.expected(_item("P1"), ticket_customer="P1") == {("name", "Plain Person")}
