"""Customer profiles read over REST are held to the rules an export line is (issue 12): an answer
PostgreSQL would refuse (a NUL, a lone surrogate, a field wider than its column, an over-long
merge target) is recorded `unusable` with its reason on both engines, staging goes on with the
other customers, and nothing of that answer is staged."""

from __future__ import annotations

import sqlalchemy as sa

from migration_pipeline.vendors.gladly.client import CustomerLookup, CustomerProfile
from migration_pipeline.vendors.gladly.customers import resolve_customers
from migration_pipeline.lib.staging.db import customer_lookups, customers


class _Answers:
    """GladlyClient.get_customer's answers, fixed per id (the unit under test is what staging
    does with them; the client's own parsing is tested against the emulator elsewhere)."""

    def __init__(self, answers: dict[str, CustomerLookup]):
        self.answers = answers

    def get_customer(self, customer_id: str) -> CustomerLookup:
        return self.answers[customer_id]


def _profile(customer_id: str, **fields) -> CustomerLookup:
    body = {"id": customer_id, "name": "Ann", "emails": [{"original": f"{customer_id}@example.com"}], **fields}
    return CustomerLookup(customer_id, "found", profile=CustomerProfile.model_validate(body))


def test_an_unstorable_rest_answer_is_recorded_unusable_and_the_others_are_staged(staging_db):
    answers = {
        "good": _profile("good"),
        "nul": _profile("nul", name="A\x00nn"),
        "surrogate": _profile("surrogate", customAttributes={"note": "x\ud800"}),
        "wide": _profile("wide", id="w" * 70),
        "moved-far": CustomerLookup("moved-far", "moved", moved_to="m" * 100),
    }
    counts = resolve_customers(staging_db, _Answers(answers), list(answers))

    with staging_db.engine.connect() as conn:
        lookups = {r.customer_id: r for r in conn.execute(sa.select(customer_lookups))}
        staged = {r.source_id for r in conn.execute(sa.select(customers.c.source_id))}
    assert lookups["good"].status == "found" and staged == {"good"}
    for customer_id, reason in {
        "nul": "NUL", "surrogate": "surrogate", "wide": "70 characters", "moved-far": "merge target",
    }.items():
        assert lookups[customer_id].status == "unusable", customer_id
        assert reason in lookups[customer_id].detail, (customer_id, lookups[customer_id].detail)
        assert lookups[customer_id].profile is None
    assert sorted(u.split(":")[0] for u in counts.unusable) == ["moved-far", "nul", "surrogate", "wide"]
