"""The member cache: commands decided on a cached member are as right as on a fresh read.

Two registries on one store stand for two processes: each keeps its own cache,
so one of them always decides on a member the other has moved on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest

from domain.member_events import ContactMade, EvidenceRecorded
from domain.registry import Registry
from store import open_registry
from tests.conftest import TODAY
from tests.scenarios import enrol, open_case, refused
from tests.support import as_unit, register_article_units


@pytest.fixture
def other(store_url: str, registry: Registry) -> Iterator[Registry]:
    """A second registry (another process) on the same store."""
    app = open_registry(store_url, clock=lambda: TODAY)
    yield app
    app.close()


def _versions(registry: Registry, member: object) -> list[int]:
    return [e.originator_version for e in registry.recorder.select_events(member)]  # type: ignore[arg-type]


def _contact(registry: Registry, member: object, note: str) -> int | None:
    return registry.make_contact(
        as_unit("factory-superior"), member, occurred_on=date(2026, 5, 1),  # type: ignore[arg-type]
        channel="phone", note=note,
    ).version


def test_a_command_on_a_member_moved_on_elsewhere_is_decided_again_and_stored_once(
    registry: Registry, other: Registry
) -> None:
    register_article_units(registry)
    member = enrol(registry)
    assert _contact(registry, member, "first") == 2  # now cached here at version 2
    assert _contact(other, member, "elsewhere") == 3  # the stream moves on elsewhere

    version = _contact(registry, member, "second")  # decided on the cached version 2 first

    assert version == 4
    assert _versions(registry, member) == [1, 2, 3, 4]
    notes = [e.note for e in registry.member(member).history if isinstance(e, ContactMade)]
    assert notes == ["first", "elsewhere", "second"]
    assert registry.members.hits >= 1


def test_a_refusal_on_a_stale_cached_member_is_checked_against_the_store(
    registry: Registry, other: Registry
) -> None:
    register_article_units(registry)
    member = enrol(registry)
    _contact(registry, member, "cached")  # cached here: no case open
    open_case(other, member)  # elsewhere, a case opens

    # Evidence needs an open case: refused on the cached member, accepted on the store's.
    registry.record_evidence(
        as_unit("daning-center"), member, occurred_on=date(2026, 3, 2), kind="lease",
        reference="L-1",
    )

    assert isinstance(registry.member(member).history[-1], EvidenceRecorded)


def test_a_refused_command_leaves_the_cached_member_untouched(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)
    _contact(registry, member, "cached")

    refused(registry, "R9_NO_OPEN_CASE", lambda: registry.record_evidence(
        as_unit("daning-center"), member, occurred_on=date(2026, 3, 2), kind="lease",
        reference="L-1",
    ))
    assert _contact(registry, member, "after") == 3
    assert _versions(registry, member) == [1, 2, 3]


def test_a_stale_expected_version_is_checked_against_the_store(
    registry: Registry, other: Registry
) -> None:
    register_article_units(registry)
    member = enrol(registry)
    _contact(registry, member, "cached")  # version 2 cached here
    _contact(other, member, "elsewhere")  # version 3 in the store

    outcome = registry.make_contact(
        as_unit("factory-superior"), member, occurred_on=date(2026, 5, 1), channel="phone",
        note="pinned", expected_version=3,
    )
    assert outcome.version == 4
    refused(registry, "STALE_VERSION", lambda: registry.make_contact(
        as_unit("factory-superior"), member, occurred_on=date(2026, 5, 1), channel="phone",
        note="too late", expected_version=3,
    ))
