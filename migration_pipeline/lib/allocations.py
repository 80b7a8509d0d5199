"""Fewer cyclic garbage collections while a bulk step allocates. No Dagster import.

Staging an export builds millions of short-lived objects (parsed lines, typed records, rows), none
of them in a reference cycle. CPython counts every allocation towards a collection of its youngest
generation (700 by default) and every tenth of those towards an older one, whose cost grows with
everything alive in the process (a Dagster run holds a lot): measured on 100k Zendesk comments,
staging spent about a quarter of its time collecting. A larger youngest generation keeps the
cycle collector working, only less often; the thresholds are put back afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# Objects allocated between collections of the youngest generation while a bulk step runs: at
# ~100 bytes each at most a few MB of cyclic garbage can wait for a collection.
BULK_GEN0_THRESHOLD = 50_000


@contextmanager
def fewer_collections(gen0: int = BULK_GEN0_THRESHOLD) -> Iterator[None]:
    """Within the block (or the decorated function) the youngest generation is collected every
    `gen0` allocations instead of CPython's 700; the previous thresholds are restored on exit."""
    before = gc.get_threshold()
    gc.set_threshold(max(gen0, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
