"""The vendor-neutral synthetic world: people (customers with their planted identity mess, agents,
organizations) and episodes (each customer's support conversations as neutral plans). Writers in
`sim.synth.writers` render one world into one vendor's dataset; a new vendor needs only a writer.

- `common`: seeds, ids, JSON lines, time formats, `MessLog`;
- `people`: `Customer`, `Agent`, `Organization`, the planted roles of the small indexes;
- `model`: `World` (clock, agents, organizations, customers on demand) and `build_world`;
- `episodes`: `Episode`, `Turn`, `Attachment` and `episodes(world, customer)`.
"""

from sim.synth.world.common import (  # noqa: F401
    DAY_MS, HOUR_MS, MESS_EXAMPLES_CAP, MINUTE_MS, SECOND_MS, MessLog, date_ms, derive_seed, dumps, fmt_ms, fmt_nanos,
    fmt_s, human_when, make_id,
)
from sim.synth.world.episodes import Attachment, Episode, Turn, episodes  # noqa: F401
from sim.synth.world.model import World, build_world  # noqa: F401
from sim.synth.world.people import MIN_PLANTED, PLANTED, Agent, Customer, Organization, Phone  # noqa: F401
