"""Idempotency keys: a command sent twice is stored once, and the second answer is the first one.

A receipt is kept per (acting unit, key) in the same transaction as the
command's events, so it survives the process: a retry from a fresh
interpreter replays too. Refusals keep no receipt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from uuid import UUID

import pytest

from domain.errors import HarborError
from domain.receipts import Outcome, ReceiptStore
from domain.registry import Actor, Registry
from store import open_registry
from tests import racing
from tests.conftest import TODAY
from tests.support import ADMIN, as_unit, event_count, register_article_units

HOLDER = "factory-superior"
CENTRE = "daning-center"
OTHER_CENTRE = "hongkou-center"
ON = date(2026, 11, 2)
ID_NUMBER = "310101198505050011"


def _member(registry: Registry) -> UUID:
    """The article's units and one full member held by HOLDER."""
    register_article_units(registry)
    member_id = registry.enrol_member(
        as_unit(HOLDER),
        name="钱七",
        id_number=ID_NUMBER,
        standing="full",
        household_region="上海·闸北",
        occurred_on=date(2012, 4, 1),
    ).member_id
    assert member_id is not None
    return member_id


def _inquiry(
    registry: Registry,
    member_id: UUID,
    *,
    unit: str = CENTRE,
    key: str | None = "k-1",
    summary: str = "申请转入大宁",
    on: date = ON,
) -> Outcome:
    return registry.receive_inquiry(
        as_unit(unit),
        member_id,
        occurred_on=on,
        channel="walk_in",
        summary=summary,
        idempotency_key=key,
    )


def _refused(registry: Registry, code: str, fn: Callable[[], object]) -> HarborError:
    before = event_count(registry)
    with pytest.raises(HarborError) as caught:
        fn()
    assert caught.value.code == code, str(caught.value)
    assert event_count(registry) == before, "a refused command stored events"
    return caught.value


def _same_outcome(first: Outcome, again: Outcome) -> None:
    """``again`` is ``first`` replayed: every field equal, only ``replayed`` set."""
    assert first.replayed is False
    assert again.replayed is True
    assert again == replace(first, replayed=True)
    assert first.position is not None


def test_same_key_twice_stores_once_and_replays(registry: Registry) -> None:
    member_id = _member(registry)
    before = event_count(registry)

    first = _inquiry(registry, member_id)
    after_first = event_count(registry)
    again = _inquiry(registry, member_id)

    assert after_first == before + 1
    assert event_count(registry) == after_first
    _same_outcome(first, again)
    assert first.member_id == member_id and first.case_id is not None
    assert first.first_responder == CENTRE
    assert first.version == registry.member(member_id).version
    assert first.position == registry.position()


def test_same_key_twice_for_a_letter_does_not_claim_its_number_again(registry: Registry) -> None:
    """A letter writes two streams (member + number claim); its replay is not LETTER_NO_TAKEN."""
    member_id = _member(registry)
    _inquiry(registry, member_id)

    def letter() -> Outcome:
        return registry.issue_letter(
            as_unit(HOLDER),
            member_id,
            occurred_on=ON,
            letter_no="2026-009",
            to_unit_id=CENTRE,
            dues_paid_through="2026-10",
            idempotency_key="letter-9",
        )

    first = letter()
    count = event_count(registry)
    again = letter()

    assert event_count(registry) == count
    _same_outcome(first, again)


def test_unit_commands_replay_too(registry: Registry) -> None:
    register_article_units(registry)

    def rename() -> Outcome:
        return registry.rename_unit(
            ADMIN, CENTRE, name="大宁路街道党群服务中心", occurred_on=ON, idempotency_key="rename-1"
        )

    first = rename()
    count = event_count(registry)
    again = rename()

    assert event_count(registry) == count
    _same_outcome(first, again)
    assert first.unit_id == CENTRE


@pytest.mark.slow
def test_same_key_from_a_fresh_process_replays_the_first_outcome(
    registry: Registry, store_url: str
) -> None:
    member_id = _member(registry)
    first = _inquiry(registry, member_id, key="k-fresh", on=TODAY)
    count = event_count(registry)

    result = racing.in_fresh_process(
        racing.inquiry_with_key, store_url, TODAY, member_id, CENTRE, "申请转入大宁", "k-fresh"
    )

    assert result.code == racing.OK, result.detail
    assert result.outcome is not None
    _same_outcome(first, result.outcome)
    assert event_count(registry) == count


@pytest.mark.slow
def test_racing_processes_with_one_key_store_it_once(registry: Registry, store_url: str) -> None:
    """Four processes send the same keyed command at once: one stores, three replay."""
    member_id = _member(registry)
    count = event_count(registry)

    results = racing.race(
        racing.inquiry_with_key,
        [(store_url, TODAY, member_id, CENTRE, "同时提交", "k-race")] * 4,
    )

    assert [r.code for r in results] == [racing.OK] * 4, [r.detail for r in results]
    outcomes = [r.outcome for r in results]
    assert all(o is not None for o in outcomes)
    stored = [o for o in outcomes if o is not None and not o.replayed]
    assert len(stored) == 1
    for o in outcomes:
        assert o is not None
        assert replace(o, replayed=False) == stored[0]
    assert event_count(registry) == count + 1
    assert registry.member(member_id).version == stored[0].version


def _retry_that_loses_the_race(
    retrier: Registry, monkeypatch: pytest.MonkeyPatch, original: Callable[[], Outcome]
) -> list[Outcome]:
    """Make ``retrier`` find no receipt, and only then let ``original`` commit (as a racing
    process would). Returns the original's outcome (filled in once it has run)."""
    done: list[Outcome] = []
    check_receipt = retrier._replay

    def check_then_lose(actor: Actor, key: str | None, fingerprint: str) -> Outcome | None:
        found = check_receipt(actor, key, fingerprint)
        if not done:
            done.append(original())
        return found

    monkeypatch.setattr(retrier, "_replay", check_then_lose)
    return done


@pytest.mark.parametrize("command", ["enrol_member", "attach_member", "register_unit"])
def test_a_retry_that_loses_the_race_to_its_original_replays(
    registry: Registry, store_url: str, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    member_id = _member(registry)
    _inquiry(registry, member_id)
    registry.record_evidence(
        as_unit(CENTRE), member_id, occurred_on=ON, kind="lease", reference="沪闸租-77"
    )
    registry.issue_letter(
        as_unit(HOLDER),
        member_id,
        occurred_on=ON,
        letter_no="2026-010",
        to_unit_id=CENTRE,
        dues_paid_through="2026-10",
    )

    def send(app: Registry) -> Outcome:
        if command == "enrol_member":
            return app.enrol_member(
                as_unit(HOLDER),
                name="郑十一",
                id_number="310101198505050033",
                standing="full",
                household_region="上海",
                occurred_on=ON,
                idempotency_key="k-late",
            )
        if command == "attach_member":
            return app.attach_member(
                as_unit(CENTRE),
                member_id,
                occurred_on=TODAY,
                basis="residence",
                letter_no="2026-010",
                idempotency_key="k-late",
            )
        return app.register_unit(
            ADMIN,
            code="new-branch",
            name="新支部",
            kind="workplace",
            region="上海",
            occurred_on=ON,
            idempotency_key="k-late",
        )

    retrier = open_registry(store_url, clock=lambda: TODAY)
    try:
        original = _retry_that_loses_the_race(retrier, monkeypatch, lambda: send(registry))
        count = event_count(registry)
        again = send(retrier)
        assert len(original) == 1
        _same_outcome(original[0], again)
        assert event_count(registry) == count + 1
    finally:
        retrier.close()


def test_same_key_with_a_different_body_is_refused(registry: Registry) -> None:
    member_id = _member(registry)
    first = _inquiry(registry, member_id, key="k-body")
    version = registry.member(member_id).version

    _refused(
        registry,
        "IDEMPOTENCY_KEY_REUSED",
        lambda: _inquiry(registry, member_id, key="k-body", summary="另一件事"),
    )
    _refused(
        registry,
        "IDEMPOTENCY_KEY_REUSED",
        lambda: _inquiry(registry, member_id, key="k-body", on=ON - timedelta(days=1)),
    )
    _refused(
        registry,
        "IDEMPOTENCY_KEY_REUSED",
        lambda: registry.make_contact(
            as_unit(CENTRE),
            member_id,
            occurred_on=ON,
            channel="phone",
            note="电话联系",
            idempotency_key="k-body",
        ),
    )

    assert registry.member(member_id).version == version
    # The key still answers for the command it was first used for.
    _same_outcome(first, _inquiry(registry, member_id, key="k-body"))


def test_same_key_for_another_member_is_refused(registry: Registry) -> None:
    member_id = _member(registry)
    other = registry.enrol_member(
        as_unit(HOLDER),
        name="孙八",
        id_number="310101198505050022",
        standing="full",
        household_region="上海",
        occurred_on=date(2013, 1, 1),
    ).member_id
    assert other is not None
    _inquiry(registry, member_id, key="k-who")

    _refused(registry, "IDEMPOTENCY_KEY_REUSED", lambda: _inquiry(registry, other, key="k-who"))
    assert registry.member(other).state.open_case is None


def test_a_key_belongs_to_the_unit_that_used_it(registry: Registry) -> None:
    member_id = _member(registry)
    count = event_count(registry)

    by_centre = _inquiry(registry, member_id, unit=CENTRE, key="shared")
    by_other = _inquiry(registry, member_id, unit=OTHER_CENTRE, key="shared")

    assert by_other.replayed is False, "another unit's key is a different key"
    assert by_centre.version is not None and by_other.version == by_centre.version + 1
    assert event_count(registry) == count + 2
    _same_outcome(by_centre, _inquiry(registry, member_id, unit=CENTRE, key="shared"))
    _same_outcome(by_other, _inquiry(registry, member_id, unit=OTHER_CENTRE, key="shared"))
    assert event_count(registry) == count + 2


def test_a_refused_command_is_not_remembered(registry: Registry) -> None:
    member_id = _member(registry)

    def notify() -> Outcome:
        return registry.notify_requirements(
            as_unit(CENTRE),
            member_id,
            occurred_on=ON,
            documents=["租赁合同", "身份证复印件"],
            idempotency_key="notify-1",
        )

    _refused(registry, "R9_NO_OPEN_CASE", notify)
    store = registry.recorder
    assert isinstance(store, ReceiptStore)
    assert store.find_receipt(CENTRE, "notify-1") is None

    _inquiry(registry, member_id, key="opens-the-case")  # the facts change
    count = event_count(registry)
    done = notify()

    assert done.replayed is False
    assert event_count(registry) == count + 1
    assert store.find_receipt(CENTRE, "notify-1") is not None
    _same_outcome(done, notify())


def test_enrolment_with_a_key_replays_instead_of_duplicate_member(registry: Registry) -> None:
    register_article_units(registry)

    def enrol(key: str | None) -> Outcome:
        return registry.enrol_member(
            as_unit(HOLDER),
            name="周九",
            id_number=ID_NUMBER,
            standing="full",
            household_region="上海",
            occurred_on=date(2012, 4, 1),
            idempotency_key=key,
        )

    first = enrol("enrol-zhou")
    count = event_count(registry)
    again = enrol("enrol-zhou")

    _same_outcome(first, again)
    assert again.member_id == registry.member_id_for(ID_NUMBER)
    assert event_count(registry) == count
    _refused(registry, "DUPLICATE_MEMBER", lambda: enrol(None))
    _refused(registry, "DUPLICATE_MEMBER", lambda: enrol("another-key"))
    store = registry.recorder
    assert isinstance(store, ReceiptStore)
    assert store.find_receipt(HOLDER, "another-key") is None


def test_an_undated_retry_after_midnight_still_replays(store_url: str) -> None:
    def enrol(registry: Registry) -> Outcome:
        return registry.enrol_member(
            as_unit(HOLDER),
            name="吴十",
            id_number=ID_NUMBER,
            standing="full",
            household_region="上海",
            idempotency_key="enrol-wu",
        )

    today = open_registry(store_url, clock=lambda: TODAY)
    tomorrow = open_registry(store_url, clock=lambda: TODAY + timedelta(days=1))
    try:
        register_article_units(today)
        first = enrol(today)
        count = event_count(today)
        again = enrol(tomorrow)  # the client's retry crosses midnight
        _same_outcome(first, again)
        assert event_count(tomorrow) == count
    finally:
        today.close()
        tomorrow.close()


def test_bulk_lookups_find_exactly_the_stored_receipts_and_streams(registry: Registry) -> None:
    """The importer's two bulk queries agree with the one-at-a-time ones."""
    member = _member(registry)
    outcome = registry.make_contact(
        as_unit(CENTRE), member, occurred_on=ON, channel="phone", note="bulk",
        idempotency_key="k-bulk",
    )
    store = registry.recorder
    assert isinstance(store, ReceiptStore)
    unknown = UUID(int=12345)

    found = store.find_receipts([(CENTRE, "k-bulk"), (CENTRE, "k-missing"), (HOLDER, "k-bulk")])

    assert set(found) == {(CENTRE, "k-bulk")}
    assert found[(CENTRE, "k-bulk")] == store.find_receipt(CENTRE, "k-bulk")
    assert found[(CENTRE, "k-bulk")].position == outcome.position
    assert store.existing([member, unknown, member]) == {member}
    assert store.find_receipts([]) == {} and store.existing([]) == set()
