"""Compatibility name for the Gladly writer (`sim.synth.writers.gladly`): `generate` and the
names tests and benches import from here."""

from sim.synth.world import MessLog, derive_seed, dumps, make_id  # noqa: F401
from sim.synth.writers.gladly import (  # noqa: F401
    CONTENT_TYPES, DEFAULT_ITEMS_PER_CUSTOMER, MEGA_MIN_ITEMS, MESS_KINDS, REQUIRED_CONTENT_FIELDS, REQUIRED_ITEM_FIELDS,
    UNKNOWN_CONTENT_TYPE, generate,
)
