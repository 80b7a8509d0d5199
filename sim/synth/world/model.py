"""`World`: the vendor-neutral frame every writer renders — the clock (history, an optional quiet
day, an optional tail after the history), the agents and organizations, and the customers, made
one at a time on demand. Episodes (support conversations) come from `episodes.py`."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from sim.synth.world.common import DAY_MS, MINUTE_MS, derive_seed
from sim.synth.world.people import PLANTED, Agent, Customer, Organization, build_agents, build_organizations, make_customer

# Channels a conversation can happen on; a writer maps them to its vendor's.
CHANNELS = ("email", "web", "chat", "sms", "phone", "voicemail", "facebook", "instagram", "whatsapp", "api")
DEFAULT_CHANNEL_MIX: tuple[tuple[str, float], ...] = (
    ("email", 30), ("chat", 30), ("sms", 12), ("phone", 10), ("voicemail", 3), ("facebook", 5),
    ("instagram", 5), ("whatsapp", 5))


@dataclass
class World:
    """The shared frame: parameters, clock, agents, organizations; customers by index.

    Episodes are laid out on a virtual axis of `virtual_span_ms` that skips the quiet day (a day
    with no activity at all), so gaps between events survive the skip.
    """

    seed: int
    customers: int
    start_ms: int
    end_ms: int
    quiet_day_ms: int | None = None
    tail_ms: int = 0  # life goes on this long after `end_ms` (late episodes, one late customer)
    episodes_per_customer: float = 4.0
    turns_per_episode: float = 4.0
    channel_mix: tuple[tuple[str, float], ...] = DEFAULT_CHANNEL_MIX
    busy: bool = False  # plant the customer with a thousand-message history (if customers >= 20)
    agents: list[Agent] = field(default_factory=list)
    organizations: list[Organization] = field(default_factory=list)
    late_episodes: dict[int, int] = field(default_factory=dict)  # customer index -> episodes in the tail

    @property
    def virtual_span_ms(self) -> int:
        span = self.end_ms - self.start_ms
        return span - DAY_MS if self.quiet_day_ms is not None else span

    def real_ms(self, virtual_ms: int) -> int:
        """The virtual axis in real time, skipping the quiet day (monotone, gap-preserving)."""
        ms = self.start_ms + virtual_ms
        if self.quiet_day_ms is not None and ms >= self.quiet_day_ms:
            ms += DAY_MS
        return ms

    def agents_at(self, ms: int) -> list[Agent]:
        return [a for a in self.agents if a.active_at(ms)]

    def customer(self, index: int) -> Customer:
        """Customer `index`; index `customers` is the late arrival when the world has a tail."""
        if index == self.customers and self.tail_ms:
            rng = random.Random(derive_seed(self.seed, "late-arrival"))
            created = self.end_ms + rng.randint(2 * 60, 7 * 60) * MINUTE_MS
            return make_customer(self.seed, index, self.customers, self.start_ms, len(self.organizations),
                                 created_ms=created, late=True)
        return make_customer(self.seed, index, self.customers, self.start_ms, len(self.organizations), busy=self.busy)

    def people(self) -> Iterator[Customer]:
        """Every customer in index order, the late arrival (if any) last; one at a time."""
        for index in range(self.customers + (1 if self.tail_ms else 0)):
            yield self.customer(index)


def build_world(seed: int, customers: int, start_ms: int, end_ms: int, *, agents: int, quiet_day: bool = False,
                tail_ms: int = 0, episodes_per_customer: float = 4.0, turns_per_episode: float = 4.0,
                channel_mix: tuple[tuple[str, float], ...] = DEFAULT_CHANNEL_MIX, busy: bool = False) -> World:
    """The world for `customers` customers and `agents` agents over [start_ms, end_ms) (+ `tail_ms` after)."""
    days = (end_ms - start_ms) // DAY_MS
    world = World(seed=seed, customers=customers, start_ms=start_ms, end_ms=end_ms,
                  quiet_day_ms=start_ms + (days - 3) * DAY_MS if quiet_day and days >= 5 else None,
                  tail_ms=tail_ms, episodes_per_customer=episodes_per_customer,
                  turns_per_episode=turns_per_episode, channel_mix=channel_mix, busy=busy,
                  agents=build_agents(seed, agents, start_ms, end_ms),
                  organizations=build_organizations(seed, customers, start_ms))
    if tail_ms and customers:
        rng = random.Random(derive_seed(seed, "late-episodes"))
        stayed = [i for i in range(customers) if not PLANTED.get(i, "").startswith("departed")]
        for _ in range(max(2, round(customers * episodes_per_customer / 15))):
            index = rng.choice(stayed)
            world.late_episodes[index] = world.late_episodes.get(index, 0) + 1
    return world
