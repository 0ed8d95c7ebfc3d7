"""Racing real processes on one store: one winner, every loser told why, nothing lost or doubled.

Each worker is a separate interpreter (multiprocessing "spawn") with its own
Registry and connections, released together by a barrier (tests/racing.py).
PostgreSQL gets 8 racers; a SQLite file gets 4 (it serialises writers, and
the expectations are the same).
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from domain.letter_number import LetterNumber, letter_number_id
from domain.member_events import Attached, LetterIssued
from domain.registry import Registry
from store import open_registry
from tests import racing
from tests.conftest import TODAY
from tests.support import as_unit, event_count, register_article_units

pytestmark = pytest.mark.slow

HOLDER = "factory-superior"
TARGET = "daning-center"
LETTER_NO = "2026-077"
RACE_ON = date(2026, 11, 20)


@pytest.fixture(params=["postgres", "sqlite"])
def race_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    """(URL of an empty store, how many processes to race on it)."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url"), 8
    return f"sqlite:///{tmp_path / 'race.db'}", 4


def _open(url: str) -> Registry:
    return open_registry(url, clock=lambda: TODAY)


def _stream_versions(registry: Registry, aggregate_id: UUID) -> list[int]:
    return [e.originator_version for e in registry.recorder.select_events(aggregate_id)]


def _events_of(registry: Registry, cls: type) -> list[Any]:
    found: list[Any] = []
    for n in registry.recorder.select_notifications(1, 100_000):
        event = registry.mapper.to_domain_event(n)
        if type(event) is cls:
            found.append(event)
    return found


def _member_with_letter_out(registry: Registry) -> UUID:
    """A full member held by HOLDER, an inquiry at TARGET, evidence, and a letter to TARGET."""
    register_article_units(registry)
    member_id = registry.enrol_member(
        as_unit(HOLDER),
        name="赵六",
        id_number="310101197001010099",
        standing="full",
        household_region="上海·闸北",
        occurred_on=date(2015, 6, 1),
    ).member_id
    assert member_id is not None
    registry.receive_inquiry(
        as_unit(TARGET),
        member_id,
        occurred_on=date(2026, 11, 2),
        channel="walk_in",
        summary="搬到大宁居住，申请转入",
    )
    registry.record_evidence(
        as_unit(TARGET),
        member_id,
        occurred_on=date(2026, 11, 3),
        kind="lease",
        reference="沪闸租-2026-118",
        valid_until=date(2027, 11, 2),
    )
    registry.issue_letter(
        as_unit(HOLDER),
        member_id,
        occurred_on=date(2026, 11, 10),
        letter_no=LETTER_NO,
        to_unit_id=TARGET,
        dues_paid_through="2026-10",
    )
    return member_id


@pytest.mark.parametrize("pinned", [True, False], ids=["expected_version", "unpinned"])
def test_racing_attachments_leave_exactly_one(race_store: tuple[str, int], pinned: bool) -> None:
    url, n = race_store
    setup = _open(url)
    try:
        member_id = _member_with_letter_out(setup)
        setup_events = event_count(setup)
        setup_version = setup.member(member_id).version
    finally:
        setup.close()

    results = racing.race(
        racing.attach,
        [(url, RACE_ON, member_id, TARGET, LETTER_NO, pinned) for _ in range(n)],
    )

    codes = Counter(r.code for r in results)
    winners = [r for r in results if r.code == racing.OK]
    assert len(winners) == 1, codes
    losers = [r for r in results if r.code != racing.OK]
    assert len(losers) == n - 1
    assert all(r.seen_version == setup_version for r in results), "all read the same version"
    if pinned:
        assert {r.code for r in losers} == {"STALE_VERSION"}, codes
    else:
        assert {r.code for r in losers} <= {"ALREADY_ATTACHED", "R2_NOT_ADDRESSED"}, codes

    won = winners[0].outcome
    assert won is not None and won.member_id == member_id
    assert won.version == setup_version + 1

    check = _open(url)
    try:
        attached = _events_of(check, Attached)
        assert len(attached) == 1
        event = attached[0]
        assert isinstance(event, Attached)
        assert event.unit_id == TARGET and event.letter_no == LETTER_NO
        assert event.recorded_by == f"clerk-{winners[0].index}", "the stored one is the winner's"
        assert event.originator_version == won.version
        # Nothing lost, nothing doubled: the stream is 1..N and the log holds set-up + 1.
        assert _stream_versions(check, member_id) == list(range(1, setup_version + 2))
        assert event_count(check) == setup_events + 1
        assert check.position() == won.position
        member = check.member(member_id)
        assert member.holder_unit_id == TARGET
    finally:
        check.close()


def test_racing_letter_numbers_are_taken_once(race_store: tuple[str, int]) -> None:
    url, n = race_store
    setup = _open(url)
    try:
        register_article_units(setup)
        setup_events = event_count(setup)
    finally:
        setup.close()

    results = racing.race(
        racing.enrol_and_issue_letter, [(url, RACE_ON, HOLDER, TARGET, LETTER_NO)] * n
    )

    codes = Counter(r.code for r in results)
    assert codes == {racing.OK: 1, "LETTER_NO_TAKEN": n - 1}, [r.detail for r in results]
    winner = next(r for r in results if r.code == racing.OK)
    member_ids = [r.member_id for r in results]
    assert len(set(member_ids)) == n, "every process enrolled its own member"

    check = _open(url)
    try:
        letters = _events_of(check, LetterIssued)
        assert len(letters) == 1
        letter = letters[0]
        assert isinstance(letter, LetterIssued)
        assert letter.letter_no == LETTER_NO and letter.unit_id == HOLDER
        assert letter.originator_id == winner.member_id
        taken = _events_of(check, LetterNumber.LetterNumberTaken)
        assert len(taken) == 1
        number_id = letter_number_id(HOLDER, RACE_ON.year, LETTER_NO)
        assert _stream_versions(check, number_id) == [1]
        claim: LetterNumber = check.repository.get(number_id)
        assert claim.member_id == winner.member_id
        for r in results:
            assert r.member_id is not None
            expected = 3 if r is winner else 2  # enrolled, inquiry (, the letter)
            assert _stream_versions(check, r.member_id) == list(range(1, expected + 1))
            member = check.member(r.member_id)
            assert (member.state.outstanding_letter is not None) == (r is winner)
        # n enrolments, n inquiries, one letter and its number claim: nothing more, nothing less.
        assert event_count(check) == setup_events + 2 * n + 2
    finally:
        check.close()
