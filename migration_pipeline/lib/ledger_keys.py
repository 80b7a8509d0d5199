"""Ledger keys: the `ledger.source_key` of every object a migration writes, also the lease names
of the tickets, customers and tags being loaded. Each pair has its own ledger (its staging
namespace), so keys are unique within a pair. No Dagster import.

The format is a stored contract. Every staging database's ledger holds these keys, each Unthread
conversation carries its ticket key (`metadata.sourceKey`), and the reports in dbt_like_sql match
message keys in SQL (rpt_items_by_day, rpt_unloaded_items). A changed format orphans what was
loaded: the next run would not find it and send it again. Add an entity; never change one.

    customer:<Gladly customer id>            the Unthread customer of a (surviving) Gladly customer
    customer:*                               the one customer of customer_mode "single"
    ticket:<ticket id>                       the conversation of a ticket
    message:<Gladly item id>[#<part>]        a message of an item; parts as in core.markers
    status:<ticket id>                       the final status set on the ticket's conversation
    tags:<ticket id>                         the tags and metadata last set on it (a digest)
    tag:<Gladly topic id>                    the Unthread tag of a topic
    cutover-close:<Gladly conversation id>   the Gladly conversation closed at cutover
    profile:<person key>                     into Gladly: the customer profile of a person (their
                                             lower-cased email, `email-sha256:<hex>` for an email
                                             too long for the column, or `<system>:<id>` without one)
    activity:<staged item id>                into Gladly: the CUSTOMER_ACTIVITY item of a staged
                                             comment (the optional API path for the last year)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import sqlalchemy as sa

CUSTOMER = "customer"
TICKET = "ticket"
MESSAGE = "message"
STATUS = "status"
TAGS = "tags"
TAG = "tag"
CUTOVER_CLOSE = "cutover-close"
PROFILE = "profile"
ACTIVITY = "activity"
SINGLE_CUSTOMER_ID = "*"  # the customer id of customer_mode "single": all history under one customer
LIKE_ESCAPE = "\\"  # the escape character of message_parts_like's patterns


class LedgerKey(NamedTuple):
    entity: str  # the key's first word: "ticket", "message", "cutover-close", ...
    id: str
    part: str | None = None  # a message's part ("1", "2", "f2"), None for every other key


def prefix(entity: str) -> str:
    """What every key of `entity` starts with."""
    return f"{entity}:"


def customer(customer_id: str) -> str:
    return f"customer:{customer_id}"


def single_customer() -> str:
    """The key of the one Unthread customer of customer_mode "single"."""
    return customer(SINGLE_CUSTOMER_ID)


def ticket(ticket_id: str) -> str:
    return f"ticket:{ticket_id}"


def message(item_id: str, part: int | str | None = None) -> str:
    """A message of a Gladly item: `part` None for an item sent as one message, else 1, 2, ...
    for a body split over several, "f2", "f3", ... for the extra messages of its files."""
    return f"message:{item_id}" if part is None else f"message:{item_id}#{part}"


def status(ticket_id: str) -> str:
    return f"status:{ticket_id}"


def tags(ticket_id: str) -> str:
    return f"tags:{ticket_id}"


def tag(topic_id: str) -> str:
    return f"tag:{topic_id}"


def cutover_close(conversation_id: str) -> str:
    return f"cutover-close:{conversation_id}"


def profile(person_key: str) -> str:
    return f"profile:{person_key}"


def activity(item_id: str) -> str:
    return f"activity:{item_id}"


def parse(key: str) -> LedgerKey:
    """(entity, id, part) of a key; only message keys have a part. ValueError for a string
    that is no ledger key (no `entity:`)."""
    entity, sep, rest = key.partition(":")
    if not sep or not entity:
        raise ValueError(f"not a ledger key: {key!r}")
    if entity == MESSAGE:
        item_id, hashed, part = rest.partition("#")
        return LedgerKey(entity, item_id, part if hashed else None)
    return LedgerKey(entity, rest)


def message_parts_like(item_id: str) -> str:
    """A LIKE pattern matching the keys of every part of an item's message (`message:<id>#...`,
    not `message:<id>` itself); `%`, `_` and the escape in the id match only themselves, so use
    it with `escape=LIKE_ESCAPE`. SQLite's LIKE ignores ASCII case: compare parse(key).id after."""
    escaped = "".join(LIKE_ESCAPE + c if c in ("%", "_", LIKE_ESCAPE) else c for c in item_id)
    return f"{message(escaped)}#%"


def ticket_sql(ticket_id: Any) -> sa.ColumnElement[str]:
    """The ticket key of a SQL expression (a column of ticket ids), to join the ledger on."""
    return sa.literal(prefix(TICKET)) + ticket_id
