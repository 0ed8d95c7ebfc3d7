"""Every event type survives the store: what a fresh process reads back equals what was written.

One scenario drives every event type through the Registry's commands; the
events the writing application produced are captured at ``save`` (before
they were serialised) and compared with what a brand-new Registry on the same
URL decodes from the log: equal, and with exactly the declared field types
(a date is a ``datetime.date``, not a string; enums are members, and so on).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.domain import DomainEvent

from domain.letter_number import LetterNumber
from domain.member import MemberRelationship
from domain.member_events import (
    MEMBER_EVENTS,
    DuesReceived,
    EvidenceRecorded,
    InquiryReceived,
    LetterIssued,
    MemberEnrolled,
    MemberEvent,
)
from domain.registry import Registry
from domain.unit import Unit
from domain.values import EvidenceKind, PriorContact, Standing, YearMonth
from store import open_registry
from tests.conftest import TODAY
from tests.support import ADMIN, as_unit, register_article_units

UNIT_EVENTS = (Unit.UnitRegistered, Unit.UnitRenamed, Unit.UnitDissolved)
OTHER_EVENTS = (*UNIT_EVENTS, LetterNumber.LetterNumberTaken)

UNIV = "sh-univ"
RESIDENCE = "sh-residence-center"
DANING = "daning-center"
HONGKOU = "hongkou-center"


def _concrete_subclasses(base: type) -> Iterator[type]:
    """Every domain event class under ``base`` that declares its own class_version."""
    sub: type
    for sub in base.__subclasses__():
        if "class_version" in sub.__dict__ and sub.__module__.startswith("domain."):
            yield sub
        yield from _concrete_subclasses(sub)


def _own_event_classes(aggregate: type) -> set[type]:
    """The event classes an aggregate declares (not the library's Event/Created bases)."""
    return {
        v
        for k, v in vars(aggregate).items()
        if isinstance(v, type) and issubclass(v, DomainEvent) and k not in ("Event", "Created")
    }


def write_every_event(w: Registry) -> None:
    """Units, then one member whose two cases use every member event type."""
    register_article_units(w)
    w.register_unit(
        ADMIN,
        code="tmp-office",
        name="临时党支部",
        kind="workplace",
        region="上海",
        parent_unit_id="factory-superior",
        occurred_on=date(2020, 1, 1),
    )
    w.rename_unit(
        ADMIN, "home-county", name="户籍所在地县委组织部（新）", occurred_on=date(2021, 1, 1)
    )
    w.dissolve_unit(
        ADMIN, "tmp-office", successor_unit_id="factory-superior", occurred_on=date(2022, 1, 1)
    )

    m = w.enrol_member(
        as_unit(UNIV),
        name="刘洋",
        id_number="110101199001010011",
        standing="probationary",
        household_region="外省某县",
        occurred_on=date(2025, 1, 10),
        probation_started_on=date(2025, 1, 10),
        developing_unit_id=UNIV,
    ).member_id
    assert m is not None
    w.extend_probation(as_unit(UNIV), m, occurred_on=date(2025, 6, 1), months=2)
    w.confirm_membership(as_unit(UNIV), m, occurred_on=date(2026, 3, 15))

    res, dan, hk, univ = (as_unit(u) for u in (RESIDENCE, DANING, HONGKOU, UNIV))
    w.receive_inquiry(
        res,
        m,
        occurred_on=date(2026, 4, 1),
        channel="walk_in",
        summary="申请转入居住地",
        prior_contacts=[PriorContact(who="工作单位负责人", answer="单位未建立党组织")],
    )
    w.notify_requirements(
        res, m, occurred_on=date(2026, 4, 1), documents=["租赁合同", "身份证复印件"]
    )
    w.record_evidence(
        res,
        m,
        occurred_on=date(2026, 4, 2),
        kind="lease",
        reference="沪租-2026-001",
        valid_until=date(2027, 4, 1),
    )
    w.review_archive(res, m, occurred_on=date(2026, 4, 3), finding="档案齐全")
    w.contact_origin(
        res, m, occurred_on=date(2026, 4, 4), contacted_unit_id=UNIV, outcome="reached"
    )
    w.consult_unit(res, m, occurred_on=date(2026, 4, 5), consulted_unit_id=HONGKOU, note="通报情况")
    w.issue_introduction(
        res, m, occurred_on=date(2026, 4, 6), to_name="档案管理部门", purpose="查阅个人档案"
    )
    w.hold_transfer(
        res, m, occurred_on=date(2026, 4, 7), rule="R3", until=date(2026, 4, 30), note="等待材料"
    )
    w.send_performance_report(
        univ,
        m,
        occurred_on=date(2026, 4, 8),
        to_unit_id=DANING,
        covering_from=date(2025, 1, 10),
        covering_to=date(2026, 3, 15),
    )
    w.refer_case(
        res, m, occurred_on=date(2026, 4, 9), to_unit_id=DANING, handover="warm", reason="陪同前往"
    )
    w.accept_referral(dan, m, occurred_on=date(2026, 4, 10))
    w.refer_case(
        res,
        m,
        occurred_on=date(2026, 4, 11),
        to_unit_id=HONGKOU,
        handover="cold",
        reason="建议去虹口",
    )
    w.decline_referral(
        hk, m, occurred_on=date(2026, 4, 12), reason_code="not_our_area", note="不在本区居住"
    )
    w.issue_letter(
        univ,
        m,
        occurred_on=date(2026, 5, 1),
        letter_no="2026-001",
        to_unit_id=DANING,
        dues_paid_through="2026-04",
    )
    w.decline_letter(
        dan,
        m,
        occurred_on=date(2026, 5, 5),
        letter_no="2026-001",
        reason_code="no_residence_evidence",
    )
    w.issue_letter(
        univ,
        m,
        occurred_on=date(2026, 5, 10),
        letter_no="2026-002",
        to_unit_id=HONGKOU,
        dues_paid_through="2026-04",
    )
    w.void_letter(univ, m, occurred_on=date(2026, 5, 11), letter_no="2026-002", reason="遗失")
    w.issue_letter(
        univ,
        m,
        occurred_on=date(2026, 5, 12),
        letter_no="2026-003",
        to_unit_id=DANING,
        valid_until=date(2026, 5, 20),
        dues_paid_through="2026-04",
        special_circumstances="本人出差在外",
    )
    w.expire_letter(univ, m, occurred_on=date(2026, 5, 25), letter_no="2026-003")
    w.issue_letter(
        univ,
        m,
        occurred_on=date(2026, 6, 1),
        letter_no="2026-004",
        to_unit_id=RESIDENCE,
        dues_paid_through="2026-05",
    )
    w.attach_member(res, m, occurred_on=date(2026, 6, 5), basis="residence", letter_no="2026-004")
    w.return_receipt(univ, m, occurred_on=date(2026, 6, 10), letter_no="2026-004")
    w.receive_dues(
        res,
        m,
        occurred_on=date(2026, 6, 11),
        months_from="2026-01",
        months_to="2026-06",
        amount="12.50",
    )
    contact = w.make_contact(
        res, m, occurred_on=date(2026, 6, 12), channel="phone", note="电话确认地址"
    )
    assert contact.position is not None
    w.void_entry(res, m, occurred_on=date(2026, 6, 13), position=contact.position, reason="误记")
    w.attend_activity(res, m, occurred_on=date(2026, 6, 20), kind="组织生活会")
    w.receive_inquiry(res, m, occurred_on=date(2026, 7, 1), channel="phone", summary="又来咨询")
    w.withdraw_case(res, m, occurred_on=date(2026, 7, 2), reason="本人撤回")


def _conforms(value: Any, hint: Any) -> bool:
    """``value`` has exactly the type ``hint`` declares (no subclasses, no strings for dates)."""
    if isinstance(hint, typing.TypeVar):  # originator_id
        return type(value) is UUID
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return type(value) is list and all(_conforms(v, item) for v in value)
    if type(value) is not hint:
        return False
    if dataclasses.is_dataclass(hint):  # PriorContact, YearMonth: check inside too
        hints = typing.get_type_hints(hint)
        return all(
            _conforms(getattr(value, f.name), hints[f.name]) for f in dataclasses.fields(hint)
        )
    return True


def _type_problems(event: Any) -> list[str]:
    hints = typing.get_type_hints(type(event))
    return [
        f"{type(event).__qualname__}.{f.name} = {getattr(event, f.name)!r} is not {hints[f.name]}"
        for f in dataclasses.fields(event)
        if not _conforms(getattr(event, f.name), hints[f.name])
    ]


def test_every_stored_type_is_written_by_the_scenario() -> None:
    """MEMBER_EVENTS lists every member event class, so the round trip below covers them all."""
    assert set(_concrete_subclasses(MemberEvent)) == set(MEMBER_EVENTS)
    assert set(_concrete_subclasses(Unit.Event)) == set(UNIT_EVENTS)
    assert _own_event_classes(Unit) == set(UNIT_EVENTS)
    assert _own_event_classes(LetterNumber) == {LetterNumber.LetterNumberTaken}
    assert _own_event_classes(MemberRelationship) == set(), "member events live in member_events"


def test_every_event_type_round_trips_through_a_fresh_registry(
    registry: Registry, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    produced: dict[int, Any] = {}
    put = registry.events.put

    def capturing_put(events: Any, **kwargs: Any) -> Any:
        recordings = put(events, **kwargs)
        for r in recordings:
            produced[r.notification.id] = r.domain_event
        return recordings

    monkeypatch.setattr(registry.events, "put", capturing_put)
    write_every_event(registry)

    written = {type(e) for e in produced.values()}
    expected: set[type] = {*MEMBER_EVENTS, *OTHER_EVENTS}
    missing = expected - written
    assert not missing, f"the scenario wrote no {sorted(c.__qualname__ for c in missing)}"

    fresh = open_registry(store_url, clock=lambda: TODAY)
    try:
        notifications = fresh.recorder.select_notifications(1, 10000)
        assert [n.id for n in notifications] == sorted(produced), "every save, nothing else"
        problems: list[str] = []
        for n in notifications:
            event: Any = fresh.mapper.to_domain_event(n)
            assert event == produced[n.id], f"position {n.id}: {event!r} != {produced[n.id]!r}"
            assert n.topic.endswith(type(event).__qualname__)
            problems += _type_problems(event)
            assert type(event.timestamp) is datetime and event.timestamp.tzinfo is not None
        assert not problems, "\n".join(problems)

        # The folds agree too: the member read back by the fresh registry is the writer's.
        members = {e.originator_id for e in produced.values() if isinstance(e, MemberEnrolled)}
        for member_id in members:
            assert fresh.member(member_id).history == registry.member(member_id).history
            assert fresh.member(member_id).state == registry.member(member_id).state
    finally:
        fresh.close()


def test_value_types_come_back_as_themselves(registry: Registry, store_url: str) -> None:
    """Spot checks of the awkward types, named one by one."""
    write_every_event(registry)
    fresh = open_registry(store_url, clock=lambda: TODAY)
    try:
        events = [
            fresh.mapper.to_domain_event(n) for n in fresh.recorder.select_notifications(1, 10000)
        ]
    finally:
        fresh.close()

    def first(cls: type) -> Any:
        return next(e for e in events if type(e) is cls)

    enrolled = first(MemberEnrolled)
    assert type(enrolled.originator_id) is UUID
    assert type(enrolled.occurred_on) is date and enrolled.occurred_on == date(2025, 1, 10)
    assert type(enrolled.probation_started_on) is date
    assert enrolled.standing is Standing.PROBATIONARY

    inquiry = first(InquiryReceived)
    assert type(inquiry.case_id) is UUID
    assert inquiry.prior_contacts == [PriorContact(who="工作单位负责人", answer="单位未建立党组织")]
    assert type(inquiry.prior_contacts[0]) is PriorContact
    assert isinstance(inquiry.channel, Enum)

    evidence = first(EvidenceRecorded)
    assert evidence.kind is EvidenceKind.LEASE
    assert type(evidence.valid_until) is date

    letter = first(LetterIssued)
    assert letter.dues_paid_through == YearMonth(2026, 4)
    assert type(letter.dues_paid_through) is YearMonth
    assert type(letter.valid_until) is date

    dues = first(DuesReceived)
    assert type(dues.amount) is Decimal and str(dues.amount) == "12.50"
    assert (dues.months_from, dues.months_to) == (YearMonth(2026, 1), YearMonth(2026, 6))

    taken = first(LetterNumber.LetterNumberTaken)
    assert type(taken.member_id) is UUID and taken.member_id == enrolled.originator_id
    assert type(taken.year) is int

    registered = first(Unit.UnitRegistered)
    assert isinstance(registered.kind, Enum) and type(registered.occurred_on) is date
