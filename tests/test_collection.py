"""Fewer garbage collections during bulk work, the thresholds put back after it,
long-lived data frozen out of the collector's sight without leaking, and a server's
full collections made rare, with every pause counted."""

from __future__ import annotations

import gc
import weakref

import pytest

from api.http.metrics import Metrics
from domain.registry import Registry
from store.collection import (
    PAUSES,
    SERVING_FULL_EVERY,
    Pauses,
    freeze_long_lived,
    rare_collections,
    serving_collections,
)
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


def test_serving_makes_full_collections_rarer_and_leaves_the_younger_ones_alone() -> None:
    before = gc.get_threshold()
    try:
        serving_collections()
        serving_collections()  # a second app in the same process: no second watcher
        assert gc.get_threshold() == (before[0], before[1], SERVING_FULL_EVERY)
        assert PAUSES.watching and gc.callbacks.count(PAUSES._observe) == 1
        with rare_collections():  # a bulk job inside the server keeps the rare full ones
            assert gc.get_threshold()[2] == SERVING_FULL_EVERY
        assert gc.get_threshold() == (before[0], before[1], SERVING_FULL_EVERY)
    finally:
        gc.set_threshold(*before)


def test_every_collection_is_counted_with_its_pause_by_generation() -> None:
    pauses = Pauses()
    pauses.watch()
    try:
        cycle: list[object] = []
        cycle.append(cycle)  # garbage only the collector can free
        del cycle
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        gc.callbacks.remove(pauses._observe)
    assert pauses.collections[0] >= 1
    assert pauses.collections[2] >= 2
    assert pauses.seconds[2] >= pauses.longest[2] > 0
    assert pauses.longest[2] * pauses.collections[2] >= pauses.seconds[2]


def test_metrics_show_the_collector_pauses_once_watched() -> None:
    PAUSES.watch()
    gc.collect(2)
    text = Metrics().render(head=5, projected=5)
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
             for line in text.splitlines() if not line.startswith("#")}
    full = lines['harbor_gc_collections_total{generation="2"}']
    assert full >= 1
    assert lines['harbor_gc_seconds_total{generation="2"}'] > 0
    assert 0 < lines['harbor_gc_longest_pause_seconds{generation="2"}'] <= lines[
        'harbor_gc_seconds_total{generation="2"}'
    ]
    assert "# TYPE harbor_gc_collections_total counter" in text
