"""Compatibility name for the Zendesk writer (`sim.synth.writers.zendesk`): `generate` and the
names tests and benches import from here."""

from sim.synth.writers.zendesk import (  # noqa: F401
    FORMAT_VERSION, LONG_BODY_CHARS, MESS_KINDS, MIN_CUSTOMERS, TICKETS_PER_CUSTOMER, generate,
)
