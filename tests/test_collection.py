"""Fewer garbage collections during bulk work, and the thresholds put back after it."""

from __future__ import annotations

import gc

import pytest

from store.collection import rare_collections


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
