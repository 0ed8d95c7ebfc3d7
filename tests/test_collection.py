"""Fewer garbage collections during bulk work, the thresholds put back after it, and
long-lived data frozen out of the collector's sight without leaking."""

from __future__ import annotations

import gc
import weakref

import pytest

from domain.registry import Registry
from store.collection import freeze_long_lived, rare_collections
from tests.scenarios import enrol
from tests.support import register_article_units


def test_overlapping_bulk_jobs_put_the_collector_thresholds_back_when_the_last_one_ends() -> None:
    before = gc.get_threshold()
    first, second = rare_collections(), rare_collections()
    first.__enter__()
    raised = gc.get_threshold()
    second.__enter__()
    assert gc.get_threshold() == raised  # the second does not raise them again
    first.__exit__(None, None, None)
    assert gc.get_threshold() == raised  # still one under way
    second.__exit__(None, None, None)

    assert raised[0] == before[0] * 100
    assert gc.get_threshold() == before
    with pytest.raises(ZeroDivisionError), rare_collections():
        1 / 0  # noqa: B018  a bulk job that fails
    assert gc.get_threshold() == before


def test_a_frozen_warmed_member_is_still_freed_once_the_cache_replaces_it(
    registry: Registry,
) -> None:
    """Freezing keeps the collector off the warmed cache, and leaks nothing: members
    hold no reference cycles, so reference counting frees a replaced one."""
    register_article_units(registry)
    member = enrol(registry)
    registry.members.take(member)  # empty the cache, so warming loads the member
    registry.warm_member_cache()
    warmed = registry.members.take(member)
    assert warmed is not None
    gone = weakref.ref(warmed)
    freeze_long_lived()
    try:
        assert gc.get_freeze_count() > 0
        collecting = gc.isenabled()
        gc.disable()  # only reference counting from here on
        try:
            del warmed
            assert gone() is None
        finally:
            if collecting:
                gc.enable()
    finally:
        gc.unfreeze()
