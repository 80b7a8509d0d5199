"""lib/allocations.fewer_collections: the collector's thresholds raised within, restored after."""

from __future__ import annotations

import gc

import pytest

from migration_pipeline.lib.allocations import fewer_collections


def test_thresholds_are_raised_within_and_restored_after_even_on_error():
    before = gc.get_threshold()
    with fewer_collections(gen0=123_456):
        assert gc.get_threshold() == (123_456, *before[1:])
        assert gc.isenabled(), "the cycle collector keeps running, only less often"
    assert gc.get_threshold() == before

    @fewer_collections(gen0=99_999)
    def fails():
        assert gc.get_threshold()[0] == 99_999
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fails()
    assert gc.get_threshold() == before


def test_a_threshold_already_higher_is_kept():
    before = gc.get_threshold()
    gc.set_threshold(200_000, *before[1:])
    try:
        with fewer_collections(gen0=50_000):
            assert gc.get_threshold()[0] == 200_000
    finally:
        gc.set_threshold(*before)
