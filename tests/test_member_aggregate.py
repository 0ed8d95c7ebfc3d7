"""The MemberRelationship aggregate on its own: commands in, events (or a refusal) out."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from domain.errors import HarborError
from domain.member import Act, MemberRelationship, case_id_for
from domain.member_events import Attached, InquiryReceived, LetterIssued, MemberEnrolled
from domain.unit import Unit
from domain.values import Basis, Channel, Standing, UnitKind, YearMonth

TODAY = date(2026, 11, 26)


def unit(code: str, *, parent: str | None = None, region: str = "上海") -> Unit:
    return Unit.register(code=code, name=code, kind=UnitKind.WORKPLACE, parent_unit_id=parent,
                         region=region, unit_id="sh-org-dept", occurred_on=date(1990, 1, 1),
                         recorded_by="admin")


def act(actor: Unit, on: date, holder: Unit | None = None) -> Act:
    return Act(actor, "clerk", on, TODAY, holder)


def enrolled(holder: Unit, *, on: date = date(2020, 1, 6), standing: Standing = Standing.FULL,
             probation_started_on: date | None = None) -> MemberRelationship:
    """A member held by ``holder`` since ``on``, its enrolment already collected."""
    member = MemberRelationship.enrol(
        act(holder, on), member_id=uuid.uuid4(), name="党员", id_digest="d" * 64,
        standing=standing, probation_started_on=probation_started_on, developing_unit=None,
        household_region="外省某县", holder=holder,
    )
    member.collect_events()
    return member


def with_case(member: MemberRelationship, at: Unit) -> MemberRelationship:
    member.receive_inquiry(act(at, date(2026, 3, 2)), channel=Channel.WALK_IN, summary="申请转入")
    member.collect_events()
    return member


def letter(member: MemberRelationship, by: Unit, to: Unit, on: date, holder: Unit) -> None:
    member.issue_letter(act(by, on, holder), case_id=None, letter_no="2026-001", to_unit=to,
                        valid_until=None, dues_paid_through=YearMonth(2026, 2),
                        special_circumstances=None)


def refused_by(member: MemberRelationship, code: str, fn: Callable[[], Any]) -> None:
    with pytest.raises(HarborError) as caught:
        fn()

    assert caught.value.code == code
    assert member.collect_events() == []


def test_enrolment_is_held_by_the_named_holder() -> None:
    factory = unit("factory")

    member = MemberRelationship.enrol(
        act(unit("univ"), date(2020, 1, 6)), member_id=uuid.uuid4(), name="党员",
        id_digest="d" * 64, standing=Standing.FULL, probation_started_on=None,
        developing_unit=None, household_region="外省某县", holder=factory,
    )

    [event] = member.collect_events()
    assert isinstance(event, MemberEnrolled)
    assert (event.unit_id, event.holder_unit_id) == ("univ", "factory")


def test_an_inquiry_opens_the_member_s_first_case() -> None:
    member = enrolled(unit("factory"))

    member.receive_inquiry(act(unit("center"), date(2026, 3, 2)), channel=Channel.PHONE,
                           summary="咨询")

    [event] = member.collect_events()
    assert isinstance(event, InquiryReceived)
    assert event.case_id == case_id_for(member.id, 1)


def test_a_letter_is_valid_for_ninety_days_by_default() -> None:
    factory, center = unit("factory"), unit("center")
    member = with_case(enrolled(factory), center)

    letter(member, factory, center, date(2026, 3, 10), factory)

    [event] = member.collect_events()
    assert isinstance(event, LetterIssued)
    assert event.valid_until == date(2026, 3, 10) + timedelta(days=90)
    assert event.overridden_rules == []


def test_a_second_letter_triggers_nothing() -> None:
    factory, center = unit("factory"), unit("center")
    member = with_case(enrolled(factory), center)
    letter(member, factory, center, date(2026, 3, 10), factory)
    member.collect_events()

    refused_by(member, "R2_LETTER_OUTSTANDING",
               lambda: letter(member, factory, unit("other"), date(2026, 3, 11), factory))


def test_the_parent_of_a_dissolved_holder_issues_the_letter() -> None:
    parent, center = unit("superior"), unit("center")
    holder = unit("factory", parent="superior")
    member = with_case(enrolled(holder), center)
    holder.dissolve(successor_unit_id=None, unit_id="sh-org-dept", occurred_on=date(2024, 3, 31),
                    recorded_by="admin")

    letter(member, parent, center, date(2026, 3, 10), holder)

    [event] = member.collect_events()
    assert isinstance(event, LetterIssued)
    assert member.holder_unit_id == "factory"


def test_attaching_on_the_letter_moves_the_holder() -> None:
    factory, center = unit("factory"), unit("center")
    member = with_case(enrolled(factory), center)
    letter(member, factory, center, date(2026, 3, 10), factory)
    member.collect_events()

    member.attach(act(center, date(2026, 3, 20), factory), case_id=None, basis=Basis.OTHER,
                  letter_no=None, override_reason="本人要求")

    [event] = member.collect_events()
    assert isinstance(event, Attached)
    assert (event.letter_no, event.overridden_rules) == ("2026-001", ["R1"])
    assert member.holder_unit_id == "center"


def test_attaching_without_a_case_triggers_nothing() -> None:
    member = enrolled(unit("factory"))

    refused_by(member, "R9_NO_OPEN_CASE",
               lambda: member.attach(act(unit("center"), date(2026, 3, 20)), case_id=None,
                                     basis=Basis.OTHER, letter_no=None, override_reason="本人要求"))


def test_a_letter_near_confirmation_triggers_nothing() -> None:
    univ, center = unit("univ"), unit("center")
    started = date(2025, 6, 2)  # probation ends 2026-06-02
    member = with_case(enrolled(univ, on=started, standing=Standing.PROBATIONARY,
                                probation_started_on=started), center)

    refused_by(member, "R3_NEAR_CONFIRMATION",
               lambda: letter(member, univ, center, date(2026, 4, 2), univ))
