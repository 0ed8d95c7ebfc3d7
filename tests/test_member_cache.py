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
from tests.scenarios import enrol, issue_letter, open_case, refused
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


def test_a_letter_resent_to_a_process_with_a_stale_member_is_refused_as_the_store_says(
    registry: Registry, other: Registry
) -> None:
    """The number is taken by the very letter the stale copy does not know about: the
    refusal is the stored member's (a letter is out), not "number taken"."""
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member)  # cached here, with no letter out
    issue_letter(other, member)  # elsewhere, the letter goes out

    refused(registry, "R2_LETTER_OUTSTANDING", lambda: issue_letter(registry, member))


def test_a_letter_number_taken_elsewhere_is_refused_as_taken(
    registry: Registry, other: Registry
) -> None:
    register_article_units(registry)
    first, second = enrol(registry, n=1), enrol(registry, n=2)
    open_case(registry, first)
    open_case(registry, second)  # both cached here
    issue_letter(other, first)  # the number goes to member 1 elsewhere

    refused(registry, "LETTER_NO_TAKEN", lambda: issue_letter(registry, second))


# --- warming the cache at start --------------------------------------------------------


def _three_members_written_in_order(registry: Registry) -> list[object]:
    """Members 1, 2, 3 enrolled in turn, then member 1 written to again (most recent)."""
    register_article_units(registry)
    members = [enrol(registry, n=n) for n in (1, 2, 3)]
    _contact(registry, members[0], "latest")
    return members


def test_warming_loads_the_most_recently_active_members(
    registry: Registry, other: Registry
) -> None:
    first, second, third = _three_members_written_in_order(registry)

    assert other.warm_member_cache(limit=2) == 2

    # Member 1 wrote last, member 3 before it; member 2 is older and stays out.
    assert other.members.take(first) is not None  # type: ignore[arg-type]
    assert other.members.take(third) is not None  # type: ignore[arg-type]
    assert other.members.take(second) is None  # type: ignore[arg-type]


def test_a_command_after_warming_needs_no_read_and_is_stored_once(
    registry: Registry, other: Registry
) -> None:
    first, _, _ = _three_members_written_in_order(registry)
    other.warm_member_cache()
    misses = other.members.misses

    version = _contact(other, first, "after warming")

    assert version == 3
    assert other.members.misses == misses  # decided on the warmed member
    assert _versions(registry, first) == [1, 2, 3]


def test_a_warmed_member_moved_on_elsewhere_is_decided_again(
    registry: Registry, other: Registry
) -> None:
    first, _, _ = _three_members_written_in_order(registry)
    other.warm_member_cache()
    _contact(registry, first, "elsewhere")  # the warmed copy in `other` is now behind

    assert _contact(other, first, "late") == 4
    assert _versions(registry, first) == [1, 2, 3, 4]


def test_warming_fills_free_room_only_and_keeps_what_commands_cached(
    store_url: str, registry: Registry
) -> None:
    first, second, third = _three_members_written_in_order(registry)
    small = open_registry(store_url, clock=lambda: TODAY, extra_env={"HARBOR_MEMBER_CACHE": "2"})
    try:
        _contact(small, second, "cached by a command")  # member 2 at version 2, in the cache

        assert small.warm_member_cache() == 1  # one free place: member 1 (2 is here already)

        assert small.members.take(second).version == 2  # type: ignore[arg-type, union-attr]
        assert small.members.take(first) is not None  # type: ignore[arg-type]
        assert small.members.take(third) is None  # type: ignore[arg-type]
    finally:
        small.close()


def test_warming_an_empty_log_or_a_cache_of_no_size_loads_nothing(
    store_url: str, registry: Registry
) -> None:
    assert registry.warm_member_cache() == 0
    _three_members_written_in_order(registry)
    sizeless = open_registry(store_url, clock=lambda: TODAY, extra_env={"HARBOR_MEMBER_CACHE": "0"})
    try:
        assert sizeless.warm_member_cache() == 0
    finally:
        sizeless.close()


def test_warming_looks_at_a_bounded_stretch_of_the_log(
    registry: Registry, other: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past WARM_SCAN_FACTOR events per member wanted, it stops looking."""
    import domain.registry as module

    _three_members_written_in_order(registry)
    for n in range(3):  # the newest three events are not members'
        registry.register_unit(
            as_unit("sh-org-dept"), code=f"extra-{n}", name=f"Extra {n}", kind="workplace",
            region="上海市",
        )
    monkeypatch.setattr(module, "WARM_PAGE", 2)

    monkeypatch.setattr(module, "WARM_SCAN_FACTOR", 3)
    assert other.warm_member_cache(limit=1) == 0  # three events looked at: units only

    monkeypatch.setattr(module, "WARM_SCAN_FACTOR", 4)
    assert other.warm_member_cache(limit=1) == 1  # the fourth is member 1's contact
