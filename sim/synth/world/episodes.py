"""Episodes: each customer's support conversations as neutral plans — which channel, what subject,
when it opened and closed, and its ordered turns (who wrote what, public or private, on which
channel, with which attachments). Writers turn episodes into their vendor's records.

`episodes(world, customer)` yields a customer's episodes in time order, one at a time, from one
`random.Random` seeded from (seed, "episodes", index): the same world gives the same episodes.
Turn times may run past the history's end; each writer cuts where its vendor's export does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from sim.synth import content as C
from sim.synth.world.common import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, derive_seed
from sim.synth.world.model import World
from sim.synth.world.people import DORMANCY_MS, PLANTED, Customer

BUSY_MIN_TURNS = 1060
LONG_TEXT_CHARS = 40_500  # a pasted log: over Gladly's 25,000 and Zendesk's 40,000 marks
COMPANY_DOMAIN = "northwind-outfitters.com"
HELP_CENTER = f"https://help.{COMPANY_DOMAIN}/hc/en-us/articles"
LINK_TARGETS = (
    ("return policy", f"{HELP_CENTER}/360001234567-Return-policy"),
    ("tracking page", "https://www.ups.com/track?loc=en_US&tracknum=1Z999AA10123456784"),
    ("size guide", f"{HELP_CENTER}/360007654321-Size-guide?utm_source=zendesk&utm_medium=email"),
    ("refund status", f"https://{COMPANY_DOMAIN}/account/orders?tab=refunds&lang=en"),
)
NON_LATIN_SUBJECTS = (
    "注文した商品がまだ届きません（注文番号 {n}）",
    "Заказ {n} не пришёл, помогите пожалуйста",
    "طلبي رقم {n} لم يصل بعد",
    "ההזמנה שלי {n} עדיין לא הגיעה",
    "주문 {n} 배송 문의드립니다",
    "订单 {n} 的退款什么时候到账？",
)
LONG_SUBJECT = ("Re: Re: Fwd: URGENT - order #{n} arrived damaged AND I was charged twice AND the replacement "
                "you promised last week never shipped, please escalate to a supervisor today")
CHANNEL_GAP_MS = {"chat": 60 * SECOND_MS, "email": 4 * HOUR_MS, "web": 4 * HOUR_MS, "phone": 10 * MINUTE_MS,
                  "voicemail": 30 * MINUTE_MS}


@dataclass(frozen=True)
class Attachment:
    kind: int  # index into content.ATTACHMENT_KINDS
    filename: str
    size: int
    inline: bool = False  # shown inside the body (an image), not listed below it
    seed: int = 0  # for writers that write the bytes

    @property
    def content_type(self) -> str:
        return C.ATTACHMENT_KINDS[self.kind][0]

    @property
    def magic(self) -> bytes:
        return C.ATTACHMENT_KINDS[self.kind][2]


@dataclass
class Turn:
    """One contribution to an episode."""

    at_ms: int
    author: str  # customer | agent
    agent: int | None  # the agent's index for agent turns
    channel: str
    text: str
    visibility: str = "public"  # public | private (an internal note)
    attachments: tuple[Attachment, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (label, url) the text refers to
    quotes_previous: bool = False  # an email that quotes the message it answers
    inline_image: bool = False  # an email with a pasted image in its HTML
    signature: bool = False
    choices: tuple[str, ...] = ()  # buttons the agent offers (a chat quick reply)
    picks_choice: int | None = None  # the customer's answer: index into the previous turn's choices
    call_seconds: int = 0  # phone/voicemail: how long the call or message lasted
    answered: bool = True  # phone: somebody picked up


@dataclass
class Episode:
    """One support conversation, as a plan: a writer renders it as a ticket, a conversation, ..."""

    customer: int
    seq: int  # the customer's k-th episode
    channel: str  # where it opened
    subject: str
    order_number: int
    opened_ms: int
    agent: int  # the agent handling it
    turns: list[Turn] = field(default_factory=list)
    closed_ms: int | None = None
    marks: tuple[str, ...] = ()  # planted facts: long_subject, empty_subject, non_latin_subject, no_turns, late

    @property
    def last_ms(self) -> int:
        return max([self.opened_ms, *(t.at_ms for t in self.turns), self.closed_ms or 0])

    def channel_sequence(self) -> list[str]:
        seq: list[str] = []
        for t in self.turns:
            if t.visibility == "public" and (not seq or seq[-1] != t.channel):
                seq.append(t.channel)
        return seq


class _Planner:
    """Draws one customer's episodes on the world's virtual axis."""

    def __init__(self, world: World, customer: Customer):
        self.w, self.c = world, customer
        self.rng = random.Random(derive_seed(world.seed, "episodes", customer.index))
        usable = [(ch, wt) for ch, wt in world.channel_mix if customer.can_use(ch)] or [("chat", 1.0)]
        self.channels, self.weights = [ch for ch, _ in usable], [wt for _, wt in usable]
        self.seq = 0
        self.opener = ""
        self.long_body_pending = customer.long_body and customer.scenario != "showcase"

    # -- pieces ---------------------------------------------------------------------------

    def _gap(self, channel: str) -> int:
        return SECOND_MS + int(self.rng.expovariate(1 / CHANNEL_GAP_MS.get(channel, 12 * MINUTE_MS)))

    def _agent(self, at_ms: int) -> int:
        active = self.w.agents_at(at_ms)
        return self.rng.choice(active).index if active else 0

    def _attachment(self, rate: float, size: int = 0, kind: int | None = None, inline: bool = False) -> tuple[Attachment, ...]:
        rng = self.rng
        if not size and rng.random() >= rate:
            return ()
        kind = rng.randrange(len(C.ATTACHMENT_KINDS)) if kind is None else kind
        name = C.ATTACHMENT_KINDS[kind][1].format(n=C.order_number(rng))
        return (Attachment(kind, name, size or rng.randint(180, 4096), inline, rng.getrandbits(63)),)

    def _text(self, author: str) -> str:
        if author == "customer":
            return C.customer_text(self.rng, 0.5 if self.c.unicode_name else 0.06)
        return C.agent_text(self.rng)

    def _turn(self, ep: Episode, vt: int, author: str, channel: str, text: str | None = None, **extra) -> Turn:
        rng = self.rng
        first = not ep.turns
        text = text if text is not None else self._text(author)
        if author == "customer" and channel == "email" and self.long_body_pending:
            text, self.long_body_pending = C.long_text(rng, LONG_TEXT_CHARS), False
        turn = Turn(self.w.real_ms(vt), author, ep.agent if author == "agent" else None, channel, text, **extra)
        if channel == "email":
            turn.quotes_previous = not first and rng.random() < (0.8 if author == "customer" else 0.6)
            if author == "customer":
                turn.inline_image = extra.get("inline_image", rng.random() < 0.12)
                turn.signature = rng.random() < 0.7
        if author == "agent" and channel in ("email", "web", "chat") and rng.random() < 0.15:
            turn.links = (rng.choice(LINK_TARGETS),)
        if channel in ("phone", "voicemail"):
            turn.call_seconds = rng.randint(5, 120) if channel == "voicemail" and author == "customer" else rng.randint(20, 1500)
            turn.answered = channel == "voicemail" and author == "customer" or rng.random() >= 0.08
        if not turn.attachments and channel not in ("phone", "voicemail", "instagram"):
            turn.attachments = self._attachment(0.03 if author == "customer" else 0.01)
        ep.turns.append(turn)
        return turn

    def _note(self, ep: Episode, vt: int, attachment_size: int = 0) -> None:
        text = C.note_text(self.rng)
        if self.long_body_pending and self.rng.random() < 0.5:
            text, self.long_body_pending = C.long_text(self.rng, LONG_TEXT_CHARS), False
        ep.turns.append(Turn(self.w.real_ms(vt), "agent", ep.agent, ep.turns[-1].channel if ep.turns else ep.channel,
                             text, visibility="private", attachments=self._attachment(0.05, attachment_size)))

    def _open(self, vt: int, channel: str, marks: tuple[str, ...] = ()) -> Episode:
        rng = self.rng
        n = C.order_number(rng)
        subject, opener = rng.choice(C.TOPIC_OPENERS)
        self.opener = opener.format(n=n)  # what a written request (mail, form) starts with
        ep = Episode(self.c.index, self.seq, channel, subject.format(n=n), n, self.w.real_ms(vt),
                     self._agent(self.w.real_ms(vt)), marks=marks)
        self.seq += 1
        return ep

    def _close(self, ep: Episode, vt: int, probability: float) -> int:
        if self.rng.random() < probability:
            vt += 0 if self.rng.random() < 0.3 else self.rng.randint(1, 600) * SECOND_MS
            ep.closed_ms = self.w.real_ms(vt)
        return vt

    # -- an ordinary episode --------------------------------------------------------------

    def episode(self, vt: int, turns: int, channel: str | None = None, close: float = 0.75,
                allow_switch: bool = True, first_text: str | None = None) -> tuple[Episode, int]:
        """A contact of `turns` turns opened at virtual `vt`; returns it and the virtual time it ends."""
        rng = self.rng
        channel = channel or rng.choices(self.channels, weights=self.weights)[0]
        ep = self._open(vt, channel)
        written = channel in ("email", "web", "api")
        self._turn(ep, vt, "customer", channel, first_text or (self.opener if written else None))
        switch_at = rng.randint(1, turns - 1) if allow_switch and turns >= 3 and rng.random() < 0.06 else -1
        author = "agent"
        for k in range(1, turns):
            if k == switch_at:
                others = [c for c in self.channels if c != channel]
                channel = rng.choice(others) if others else channel
            vt += self._gap(channel)
            if author == "agent" and rng.random() < 0.08:
                self._note(ep, vt)
                vt += self._gap("sms")
            previous = ep.turns[-1]
            if author == "customer" and previous.choices:
                pick = rng.randrange(len(previous.choices))
                self._turn(ep, vt, "customer", channel, previous.choices[pick], picks_choice=pick)
            elif author == "agent" and channel == "chat" and rng.random() < 0.08:
                prompt, labels = rng.choice(C.QUICK_REPLY_PROMPTS)
                self._turn(ep, vt, "agent", channel, prompt, choices=labels)
                author = "customer"
                continue
            else:
                self._turn(ep, vt, author, channel)
            author = ("customer" if author == "agent" else "agent") if rng.random() < 0.85 else author
        return ep, self._close(ep, vt, close)

    def _turn_count(self) -> int:
        return max(1, 1 + int(self.rng.expovariate(1 / max(self.w.turns_per_episode - 1, 0.5))))

    # -- the scenarios --------------------------------------------------------------------

    def plan(self) -> Iterator[Episode]:
        rng, span = self.rng, self.w.virtual_span_ms
        c = self.c
        if c.late:
            yield from self.late(1, c.created_ms + 10 * MINUTE_MS)
            return
        if c.scenario == "showcase":
            yield from self.showcase(rng.randint(0, max(1, span // 20)))
        elif c.scenario == "busy":
            yield from self.busy(rng.randint(0, max(1, span // 50)))
        else:
            count = max(1, round(rng.expovariate(1 / max(self.w.episodes_per_customer, 0.2))))
            count = min(count, int(self.w.episodes_per_customer * 20) + 1)
            vt = rng.randint(0, int(span * 0.85))
            if c.scenario == "returning" and span > DORMANCY_MS + DAY_MS:
                vt = rng.randint(HOUR_MS, 6 * HOUR_MS)
                ep, vt = self.episode(vt, 3, channel="chat" if "chat" in self.channels else None, close=1.0,
                                      allow_switch=False)
                yield ep
                slack = span - vt - DORMANCY_MS - 2 * HOUR_MS
                if slack > HOUR_MS:
                    vt += DORMANCY_MS + rng.randint(HOUR_MS // 2, min(slack, 2 * DAY_MS))
                    ep, vt = self.episode(vt, max(2, self._turn_count()))
                    yield ep
                count = max(0, count - 2)
                vt += self._episode_gap(vt, count)
            first_channel = {"no_email_sender": "email"}.get(_role(c))
            first_subject = rng.choice(NON_LATIN_SUBJECTS) if c.scenario == "normal" and _role(c) == "non_latin_name" else None
            for k in range(count):
                if vt >= span:
                    break
                ep, end = self.episode(vt, self._turn_count(), channel=first_channel if k == 0 else None)
                if k == 0 and first_subject:
                    ep.subject, ep.marks = first_subject.format(n=ep.order_number), ("non_latin_subject",)
                yield ep
                vt = end + self._episode_gap(end, count - k - 1)
        yield from self.late(self.w.late_episodes.get(c.index, 0), self.w.end_ms)

    def _episode_gap(self, vt: int, episodes_left: int) -> int:
        remaining = max(0, self.w.virtual_span_ms - vt)
        mean = max(HOUR_MS, remaining / (max(1, episodes_left) + 1))
        return HOUR_MS // 2 + int(self.rng.expovariate(1 / mean))

    def late(self, count: int, from_ms: int) -> Iterator[Episode]:
        """Episodes in the tail after the history (real time, no quiet day there)."""
        for _ in range(count):
            at = max(from_ms, self.w.end_ms + self.rng.randrange(max(1, self.w.tail_ms - 4 * HOUR_MS)))
            ep, _ = self.episode(at - self.w.start_ms - (DAY_MS if self.w.quiet_day_ms is not None else 0),
                                 self._turn_count(), close=0.0)
            ep.marks = (*ep.marks, "late")
            yield ep

    def busy(self, vt: int) -> Iterator[Episode]:
        """A thousand and more turns over many chat/SMS episodes, mostly left open."""
        rng, total = self.rng, 0
        target = BUSY_MIN_TURNS + rng.randint(0, 100)
        channels = [c for c in ("chat", "chat", "sms") if c in self.channels] or self.channels
        while total < target and vt < self.w.virtual_span_ms:
            turns = max(1, min(target - total, rng.randint(8, 30)))
            ep, vt = self.episode(vt, turns, channel=rng.choice(channels), close=0.3, allow_switch=False)
            total += len(ep.turns)
            yield ep
            left = target - total
            mean = max(5 * MINUTE_MS, (self.w.virtual_span_ms - vt) / (max(1.0, left / 18) + 1) / 3)
            vt += MINUTE_MS + int(rng.expovariate(1 / mean))

    def showcase(self, vt: int) -> Iterator[Episode]:
        """Customer 0: every channel and a switch email -> chat -> phone, big attachments, inline
        images, a 40,000-character body, RTL and emoji text, a long, an empty and a non-Latin
        subject, and an episode without any turn."""
        rng = self.rng
        ep = self._open(vt, "email", marks=("long_subject",))
        ep.subject = LONG_SUBJECT.format(n=ep.order_number)
        self._turn(ep, vt, "customer", "email", attachments=self._attachment(0, 1_200_000), inline_image=True)
        for author, channel, text, extra in (
                ("agent", "email", None, {}),
                ("customer", "email", None, {"attachments": self._attachment(0, 2_400_000)}),
                ("customer", "chat", C.UNICODE_TEXTS[3].format(n=C.order_number(rng)), {}),
                ("agent", "chat", C.QUICK_REPLY_PROMPTS[0][0], {"choices": C.QUICK_REPLY_PROMPTS[0][1]}),
                ("customer", "chat", C.QUICK_REPLY_PROMPTS[0][1][1], {"picks_choice": 1}),
                ("agent", "chat", None, {}),
                ("agent", "phone", None, {})):
            vt += self._gap(channel)
            self._turn(ep, vt, author, channel, text, **extra)
        ep.turns[-1].answered = True
        vt += self._gap("phone")
        self._note(ep, vt, attachment_size=2048)
        ep.closed_ms = self.w.real_ms(vt)
        yield ep

        vt += 3 * HOUR_MS
        ep = self._open(vt, "sms")
        self._turn(ep, vt, "customer", "sms", C.UNICODE_TEXTS[4])
        for author, channel, text, extra in (
                ("agent", "sms", None, {}), ("customer", "voicemail", None, {}), ("agent", "phone", None, {}),
                ("customer", "facebook", None, {}), ("agent", "facebook", None, {}),
                ("customer", "instagram", "Hi! 👋 is this in stock? 😍", {}),
                ("customer", "whatsapp", None, {"attachments": self._attachment(0, 900)}),
                ("agent", "whatsapp", None, {})):
            vt += self._gap(channel)
            self._turn(ep, vt, author, channel, text, **extra)
        ep.turns[3].answered = True
        vt += self._gap("chat")
        ep.closed_ms = self.w.real_ms(vt)
        yield ep

        vt += HOUR_MS + rng.randrange(2 * HOUR_MS)
        ep = self._open(vt, "email", marks=("long_body",))
        inline = self._attachment(0, rng.randint(2_000, 9_000), kind=1, inline=True)
        others = self._attachment(0, rng.randint(2_000, 90_000), kind=4) + self._attachment(0, rng.randint(2_000, 90_000), kind=0)
        self._turn(ep, vt, "customer", "email", C.long_text(rng, LONG_TEXT_CHARS), attachments=inline + others,
                   links=(LINK_TARGETS[1],), inline_image=False)
        for author in ("agent", "customer"):
            vt += self._gap("email")
            self._turn(ep, vt, author, "email")
        vt += self._gap("chat")
        ep.closed_ms = self.w.real_ms(vt)
        yield ep

        for marks, channel in ((("no_turns",), "web"), (("empty_subject",), "web"), ((), "email")):
            vt += HOUR_MS + rng.randrange(3 * HOUR_MS)
            ep = self._open(vt, channel, marks=marks)
            if "empty_subject" in marks:
                ep.subject = ""
            if "no_turns" not in marks:
                self._turn(ep, vt, "customer", channel)
                vt += self._gap(channel)
                self._turn(ep, vt, "agent", channel)
            yield ep


def _role(customer: Customer) -> str:
    return PLANTED.get(customer.index, "") if not customer.late else ""


def episodes(world: World, customer: Customer) -> Iterator[Episode]:
    """`customer`'s episodes in the order they open; turns within one are in time order."""
    return _Planner(world, customer).plan()
