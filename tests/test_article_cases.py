"""seed/cases.md replayed command by command: trail, holder and first responder as the file says."""

from __future__ import annotations

from datetime import date

from api.demo import load_article_cases
from domain.member_events import (
    ActivityAttended,
    ArchiveReviewed,
    Attached,
    DuesReceived,
    InquiryReceived,
    IntroductionIssued,
    LetterIssued,
    MemberEnrolled,
    OriginContacted,
    ReceiptReturned,
    Referred,
    UnitConsulted,
)
from domain.registry import Registry
from domain.values import Basis, Handover, Standing


def test_liu_yang_is_still_held_by_his_university_with_one_open_case(registry: Registry) -> None:
    members = load_article_cases(registry)

    liu = registry.member(members.liu_yang)

    assert liu.state.name == "刘洋"
    assert liu.state.standing is Standing.PROBATIONARY
    assert liu.state.holder_unit_id == "sh-univ"
    assert liu.state.in_transit_to is None  # no letter was ever issued: no limbo
    assert liu.state.letters == []
    open_cases = [c for c in liu.state.cases.values() if c.is_open]
    assert len(open_cases) == 1 and len(liu.state.cases) == 1


def test_liu_yang_was_answered_first_by_the_residence_centre_and_referred_cold(
    registry: Registry,
) -> None:
    members = load_article_cases(registry)

    liu = registry.member(members.liu_yang)
    (case,) = liu.state.cases.values()

    assert case.first_responder == "sh-residence-center"
    assert [(r.from_unit_id, r.to_unit_id, r.handover) for r in case.referrals] == [
        ("sh-residence-center", "home-county", Handover.COLD)
    ]
    assert [i.unit_id for i in case.inquiries] == ["sh-residence-center", "sh-org-dept"]


def test_liu_yang_trail_is_the_five_commands_in_order(registry: Registry) -> None:
    members = load_article_cases(registry)

    history = registry.member(members.liu_yang).history

    assert [(type(e), e.occurred_on, e.unit_id) for e in history] == [
        (MemberEnrolled, date(2011, 3, 1), "sh-univ"),
        (InquiryReceived, date(2011, 7, 20), "sh-residence-center"),
        (Referred, date(2011, 7, 20), "sh-residence-center"),
        (InquiryReceived, date(2011, 9, 1), "sh-org-dept"),
        (DuesReceived, date(2011, 9, 1), "sh-org-dept"),
    ]
    inquiry = history[1]
    assert isinstance(inquiry, InquiryReceived)
    assert inquiry.prior_contacts[0].who == "工作单位负责人"
    case_ids = {e.case_id for e in history[1:]}
    assert len(case_ids) == 1 and None not in case_ids  # the org dept's letter joined the case


def test_old_comrade_is_held_by_daning_since_the_attachment(registry: Registry) -> None:
    members = load_article_cases(registry)

    comrade = registry.member(members.old_comrade)
    (case,) = comrade.state.cases.values()

    assert comrade.state.holder_unit_id == "daning-center"
    assert comrade.state.holder_since == date(2006, 6, 5)
    assert case.closed_on == date(2006, 6, 20) and case.closed_by == "activity"
    assert case.first_responder == "daning-center"
    assert (case.attached_on - case.opened_on).days == 28


def test_old_comrade_trail_is_the_twelve_commands_in_order(registry: Registry) -> None:
    members = load_article_cases(registry)

    history = registry.member(members.old_comrade).history

    assert [(type(e).__name__, e.occurred_on, e.unit_id) for e in history] == [
        ("MemberEnrolled", date(1990, 6, 1), "zb-factory"),
        ("DuesReceived", date(2004, 3, 15), "zb-factory"),
        # 3: the dissolution of zb-factory is on the unit's stream, not the member's
        ("InquiryReceived", date(2006, 5, 8), "daning-center"),
        ("IntroductionIssued", date(2006, 5, 8), "daning-center"),
        ("ArchiveReviewed", date(2006, 5, 10), "daning-center"),
        ("UnitConsulted", date(2006, 5, 11), "daning-center"),
        ("OriginContacted", date(2006, 5, 20), "daning-center"),
        ("LetterIssued", date(2006, 6, 1), "factory-superior"),
        ("Attached", date(2006, 6, 5), "daning-center"),
        ("ReceiptReturned", date(2006, 6, 15), "factory-superior"),
        ("ActivityAttended", date(2006, 6, 20), "daning-center"),
    ]
    assert registry.unit("zb-factory").dissolved_on == date(2004, 3, 31)
    types = {type(e) for e in history}
    assert {IntroductionIssued, ArchiveReviewed, UnitConsulted, OriginContacted,
            ReceiptReturned, ActivityAttended} <= types


def test_letter_from_the_dissolved_holders_parent_and_the_basis_override(
    registry: Registry,
) -> None:
    members = load_article_cases(registry)

    history = registry.member(members.old_comrade).history
    letter = next(e for e in history if isinstance(e, LetterIssued))
    attached = next(e for e in history if isinstance(e, Attached))

    assert (letter.letter_no, letter.unit_id, letter.to_unit_id) == (
        "2006-001", "factory-superior", "daning-center")
    assert letter.valid_until == date(2006, 8, 30)
    assert str(letter.dues_paid_through) == "2004-03"
    assert attached.basis is Basis.OTHER
    assert attached.overridden_rules == ["R1"]
    assert attached.override_reason == "本人主动要求转入大宁社区党员服务中心"
    assert attached.letter_no == "2006-001"
