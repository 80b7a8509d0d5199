"""The source marker and the customer stamp: what the Gladly -> Unthread loader writes on Unthread
objects to name their Gladly source, and how they are read back. No Dagster import.

Every message the loader sends ends with its marker in a code span of its own,
`` `gladly-item:<Gladly item id>[#<part>]` ``; crash recovery finds the message by it, and the
reconciliation, the sample readback, the trace and the dry run read the items out of messages by
it. Parts: none for an item sent as one message, `#1`, `#2`, ... for a body split over several
messages, `#f2`, `#f3`, ... for the extra messages carrying the files one message cannot take.
Every Unthread customer the loader creates carries `gladly:<Gladly customer id>` in
`externalCrmMetadata.id`.

Both formats are stored contracts: they are on every object already loaded, and a run finds what an
earlier run sent only by them. Never change them. A body that writes a marker itself is
neutralized (core.content breaks every FORGED_RE match) so that only the loader's own marker
names a message.
"""

from __future__ import annotations

import re
from typing import NamedTuple

PREFIX = "gladly-item:"
CUSTOMER_STAMP_PREFIX = "gladly:"

_ITEM = r"(?P<item_id>[^`#]+)"
# The parts the loader writes; a marker with any other part is no marker of ours.
_BARE = re.escape(PREFIX) + _ITEM + r"(?:#(?P<part>\d+|f\d+))?"
_BARE_RE = re.compile(_BARE)
MARKER_RE = re.compile(f"`{_BARE}`")
# Any part at all: where every mention of an item counts (whose message is it, is it there).
ANY_PART_RE = re.compile("`" + re.escape(PREFIX) + _ITEM + r"(?:#(?P<part>[^`]+))?`")
# The prefix anywhere, in any case: what a body must not contain (core.content breaks it).
FORGED_RE = re.compile(re.escape(PREFIX), re.IGNORECASE)


class Marker(NamedTuple):
    item_id: str
    part: str | None = None  # "1", "2", "f2", ...; None for an item sent as one message

    @property
    def text(self) -> str:
        return marker(self.item_id, self.part)

    @property
    def first(self) -> bool:
        """Whether this is the item's first (or only) message: the one that says it arrived."""
        return self.part in (None, "1")


def marker(item_id: str, part: int | str | None = None) -> str:
    """`gladly-item:<id>`, or `gladly-item:<id>#<part>` (part 1, 2, ... or "f2", ...)."""
    return f"{PREFIX}{item_id}" if part is None else f"{PREFIX}{item_id}#{part}"


def stamp(item_id: str, part: int | str | None = None) -> str:
    """The marker as a message carries it: a code span of its own."""
    return f"`{marker(item_id, part)}`"


def find(text: str, any_part: bool = False) -> list[Marker]:
    """The markers in a message's text, in order (with `any_part`, also those with a part the
    loader never writes)."""
    pattern = ANY_PART_RE if any_part else MARKER_RE
    return [Marker(m["item_id"], m["part"]) for m in pattern.finditer(text)]


def parse(text: str) -> Marker | None:
    """The item and part of a marker (`gladly-item:A1#2`, with or without its backticks); None
    for anything else."""
    match = _BARE_RE.fullmatch(text.strip("`"))
    return Marker(match["item_id"], match["part"]) if match else None


def customer_stamp(customer_id: str) -> str:
    """`externalCrmMetadata.id` of the Unthread customer of a Gladly customer."""
    return f"{CUSTOMER_STAMP_PREFIX}{customer_id}"


def stamped_customer(stamp_value: object) -> str | None:
    """The Gladly customer id of an `externalCrmMetadata.id`, None when the loader did not set it."""
    if isinstance(stamp_value, str) and stamp_value.startswith(CUSTOMER_STAMP_PREFIX):
        return stamp_value.removeprefix(CUSTOMER_STAMP_PREFIX)
    return None
