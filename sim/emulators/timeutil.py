"""RFC3339 instants as integer nanoseconds since the epoch.

Gladly's timestamps come with any number of fractional digits (milliseconds on items, nanoseconds
on some `updatedAt`s), so the emulator compares them as exact integers rather than `datetime`s,
which would silently drop the last three digits.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$"
)


def parse_rfc3339_ns(text: object) -> int | None:
    """Nanoseconds since the epoch for a strict RFC3339 string (offset required), else None."""
    if not isinstance(text, str):
        return None
    m = _RFC3339.match(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, sign, off_h, off_m = m.group(7), m.group(8), m.group(9), m.group(10)
    offset = timedelta(0)
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if sign == "-":
            offset = -offset
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None
    whole = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    nanos = int((fraction or "").ljust(9, "0")) if fraction else 0
    return whole * NS_PER_SECOND + nanos


def datetime_to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1000


def format_ns(ns: int) -> str:
    """RFC3339 in UTC: milliseconds, or as many digits (up to nine) as the instant needs."""
    seconds, rest = divmod(ns, NS_PER_SECOND)
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    fraction = f"{rest:09d}".rstrip("0").ljust(3, "0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction}Z"
