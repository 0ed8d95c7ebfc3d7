"""The letter side of R2 (no limbo), R3 (near confirmation) and R4 (performance report)."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest

from domain.member_events import Attached, LetterIssued, TransferHeld
from domain.registry import Registry
from tests.scenarios import (
    LETTER_NO,
    enrol,
    issue_letter,
    last_event,
    letter_status,
    member_with_letter_out,
    open_case,
    position_of,
    refused,
)
from tests.support import ADMIN, as_unit, register_article_units

# --- R2: the holder issues, one letter at a time ----------------------------------


def test_a_second_letter_while_one_is_out_is_refused(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    refused(registry, "R2_LETTER_OUTSTANDING",
            lambda: issue_letter(registry, member, to="hongkou-center", letter_no="2026-002",
                                 on=date(2026, 3, 12)))


def test_a_new_letter_may_follow_once_the_first_is_voided(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    registry.void_letter(as_unit("factory-superior"), member, occurred_on=date(2026, 3, 11),
                         letter_no=LETTER_NO, reason="地址写错，重新开具")

    issue_letter(registry, member, to="hongkou-center", letter_no="2026-002",
                 on=date(2026, 3, 12))

    assert registry.member(member).state.in_transit_to == "hongkou-center"


def test_a_letter_from_a_unit_that_does_not_hold_the_member_is_refused(
    registry: Registry,
) -> None:
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member)

    refused(registry, "R2_NOT_HOLDER",
            lambda: issue_letter(registry, member, by="daning-center", to="hongkou-center"))


def test_while_a_letter_is_out_the_issuer_still_holds_and_the_member_is_in_transit(
    registry: Registry,
) -> None:
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member)

    issue_letter(registry, member)

    relationship = registry.member(member)
    assert relationship.holder_unit_id == "factory-superior"
    assert relationship.state.holder_unit_id == "factory-superior"
    assert relationship.state.in_transit_to == "daning-center"


def dissolved_holder(registry: Registry, *, successor: str | None = None) -> UUID:
    """A member held by zb-factory (child of factory-superior), which was dissolved on
    2004-03-31; the member walked in at daning-center on 2006-05-08 (case 2 of cases.md)."""
    register_article_units(registry)
    member = enrol(registry, by="zb-factory", on=date(1990, 6, 1), household_region="上海·虹口")
    registry.dissolve_unit(ADMIN, "zb-factory", successor_unit_id=successor,
                           occurred_on=date(2004, 3, 31))
    open_case(registry, member, on=date(2006, 5, 8))
    return member


def test_the_parent_of_a_dissolved_holder_may_issue(registry: Registry) -> None:
    member = dissolved_holder(registry)

    issue_letter(registry, member, by="factory-superior", on=date(2006, 6, 1),
                 letter_no="2006-001")

    letter = last_event(registry, member, LetterIssued)
    assert letter.unit_id == "factory-superior"
    assert registry.member(member).state.in_transit_to == "daning-center"


def test_the_successor_of_a_dissolved_holder_may_issue(registry: Registry) -> None:
    member = dissolved_holder(registry, successor="sh-residence-center")

    issue_letter(registry, member, by="sh-residence-center", on=date(2006, 6, 1),
                 letter_no="2006-001")

    assert last_event(registry, member, LetterIssued).unit_id == "sh-residence-center"


def test_another_unit_may_not_issue_for_a_dissolved_holder(registry: Registry) -> None:
    member = dissolved_holder(registry, successor="sh-residence-center")

    refused(registry, "R2_NOT_HOLDER",
            lambda: issue_letter(registry, member, by="hongkou-center", on=date(2006, 6, 1),
                                 letter_no="2006-001"))


def test_the_parent_of_a_holder_that_still_exists_may_not_issue(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry, by="zb-factory")
    open_case(registry, member)

    refused(registry, "R2_NOT_HOLDER",
            lambda: issue_letter(registry, member, by="factory-superior"))


def test_the_parent_may_not_issue_for_a_day_before_the_holder_was_dissolved(
    registry: Registry,
) -> None:
    register_article_units(registry)
    member = enrol(registry, by="zb-factory", on=date(1990, 6, 1))
    open_case(registry, member, on=date(2004, 1, 5))
    registry.dissolve_unit(ADMIN, "zb-factory", occurred_on=date(2004, 3, 31))

    refused(registry, "R2_NOT_HOLDER",
            lambda: issue_letter(registry, member, by="factory-superior", on=date(2004, 3, 30),
                                 letter_no="2004-001"))


# --- R3: no letter one to three months before confirmation --------------------------

PROBATION_STARTED = date(2025, 1, 10)  # probation ends 2026-01-10


def probationer(registry: Registry, started_on: date = PROBATION_STARTED) -> UUID:
    """A probationary member of sh-univ (developing unit and holder) whose case is open at
    daning-center, with the performance report already sent there (so R4 holds)."""
    register_article_units(registry)
    member = enrol(registry, by="sh-univ", on=started_on, standing="probationary",
                   probation_started_on=started_on, developing_unit_id="sh-univ")
    open_case(registry, member, on=date(2025, 7, 1))
    registry.send_performance_report(as_unit("sh-univ"), member, occurred_on=date(2025, 7, 1),
                                     to_unit_id="daning-center", covering_from=started_on,
                                     covering_to=date(2025, 6, 30))
    return member


@pytest.mark.parametrize(
    "on",
    [
        pytest.param(date(2025, 10, 10), id="end-3m"),
        pytest.param(date(2025, 11, 10), id="end-2m"),
        pytest.param(date(2025, 12, 10), id="end-1m"),
    ],
)
def test_a_letter_one_to_three_months_before_confirmation_is_refused(
    registry: Registry, on: date
) -> None:
    member = probationer(registry)

    error = refused(registry, "R3_NEAR_CONFIRMATION",
                    lambda: issue_letter(registry, member, by="sh-univ", on=on))

    assert error.field == "occurred_on"
    assert registry.member(member).state.in_transit_to is None


@pytest.mark.parametrize(
    "on",
    [
        pytest.param(date(2025, 10, 9), id="end-3m-1d"),
        pytest.param(date(2025, 12, 11), id="end-1m+1d"),
    ],
)
def test_a_letter_just_outside_the_window_is_accepted(registry: Registry, on: date) -> None:
    member = probationer(registry)

    issue_letter(registry, member, by="sh-univ", on=on)

    letter = last_event(registry, member, LetterIssued)
    assert letter.overridden_rules == []
    assert letter.special_circumstances is None


def test_a_letter_inside_the_window_with_special_circumstances_is_an_r3_override(
    registry: Registry,
) -> None:
    member = probationer(registry)

    issue_letter(registry, member, by="sh-univ", on=date(2025, 11, 10),
                 special_circumstances="随配偶调动外省")

    letter = last_event(registry, member, LetterIssued)
    assert letter.overridden_rules == ["R3"]
    assert letter.special_circumstances == "随配偶调动外省"


def test_inside_the_window_the_clerk_records_a_hold_instead(registry: Registry) -> None:
    member = probationer(registry)

    registry.hold_transfer(as_unit("sh-univ"), member, occurred_on=date(2025, 11, 10),
                           rule="R3", until=date(2026, 1, 10), note="待转正后再转接")

    assert last_event(registry, member, TransferHeld).until == date(2026, 1, 10)


def test_an_extended_probation_moves_the_window_later(registry: Registry) -> None:
    member = probationer(registry)
    registry.extend_probation(as_unit("sh-univ"), member, occurred_on=date(2025, 9, 1), months=3)

    issue_letter(registry, member, by="sh-univ", on=date(2025, 11, 10))

    assert last_event(registry, member, LetterIssued).overridden_rules == []


def test_an_extended_probation_refuses_letters_in_the_new_window(registry: Registry) -> None:
    member = probationer(registry)
    registry.extend_probation(as_unit("sh-univ"), member, occurred_on=date(2025, 9, 1), months=3)

    refused(registry, "R3_NEAR_CONFIRMATION",
            lambda: issue_letter(registry, member, by="sh-univ", on=date(2026, 2, 10)))


def test_a_confirmed_member_is_not_held_by_the_window(registry: Registry) -> None:
    member = probationer(registry)
    registry.confirm_membership(as_unit("sh-univ"), member, occurred_on=date(2025, 9, 1))

    issue_letter(registry, member, by="sh-univ", on=date(2025, 11, 10))

    assert last_event(registry, member, LetterIssued).overridden_rules == []


def test_a_full_member_is_not_held_by_the_window(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry, by="sh-univ", on=PROBATION_STARTED)
    open_case(registry, member, on=date(2025, 7, 1))

    issue_letter(registry, member, by="sh-univ", on=date(2025, 11, 10))

    assert last_event(registry, member, LetterIssued).overridden_rules == []


# --- R4: past six months, the report goes first -------------------------------------

R4_STARTED = date(2025, 3, 15)  # six months on 2025-09-15; R3 window 2025-12-15..2026-02-15


def developing_elsewhere(registry: Registry) -> UUID:
    """A probationary member developed by sh-univ but held by factory-superior, whose case
    is open at daning-center; no performance report has been sent."""
    register_article_units(registry)
    member = enrol(registry, by="sh-univ", on=R4_STARTED, standing="probationary",
                   probation_started_on=R4_STARTED, developing_unit_id="sh-univ",
                   holder_unit_id="factory-superior")
    open_case(registry, member, on=date(2025, 8, 1))
    return member


def send_report(registry: Registry, member: UUID, *, by: str, to: str = "daning-center") -> None:
    registry.send_performance_report(as_unit(by), member, occurred_on=date(2025, 9, 10),
                                     to_unit_id=to, covering_from=R4_STARTED,
                                     covering_to=date(2025, 9, 10))


def test_a_letter_six_months_into_probation_needs_no_report(registry: Registry) -> None:
    member = developing_elsewhere(registry)

    issue_letter(registry, member, on=date(2025, 9, 15), letter_no="2025-001")

    assert registry.member(member).state.in_transit_to == "daning-center"


def test_a_letter_a_day_past_six_months_without_a_report_is_refused(registry: Registry) -> None:
    member = developing_elsewhere(registry)

    error = refused(registry, "R4_REPORT_MISSING",
                    lambda: issue_letter(registry, member, on=date(2025, 9, 16),
                                         letter_no="2025-001"))

    assert error.field == "to_unit_id"


@pytest.mark.parametrize("sender", ["sh-univ", "factory-superior"], ids=["developing", "holder"])
def test_a_letter_past_six_months_is_accepted_after_the_report_to_its_addressee(
    registry: Registry, sender: str
) -> None:
    member = developing_elsewhere(registry)
    send_report(registry, member, by=sender)

    issue_letter(registry, member, on=date(2025, 9, 16), letter_no="2025-001")

    assert last_event(registry, member, LetterIssued).to_unit_id == "daning-center"


def test_a_report_to_another_addressee_does_not_count(registry: Registry) -> None:
    member = developing_elsewhere(registry)
    send_report(registry, member, by="sh-univ", to="hongkou-center")

    refused(registry, "R4_REPORT_MISSING",
            lambda: issue_letter(registry, member, on=date(2025, 9, 16), letter_no="2025-001"))


def test_a_report_from_a_unit_that_neither_developed_nor_holds_does_not_count(
    registry: Registry,
) -> None:
    member = developing_elsewhere(registry)
    send_report(registry, member, by="sh-residence-center")

    refused(registry, "R4_REPORT_MISSING",
            lambda: issue_letter(registry, member, on=date(2025, 9, 16), letter_no="2025-001"))


def test_the_parent_of_a_dissolved_developing_holder_sends_the_report_and_issues(
    registry: Registry,
) -> None:
    """zb-factory developed and held the probationer and is dissolved: its parent, which R2
    lets issue the letter, may send the report too — else no letter could ever go (R4 has
    no override, and the dissolved unit cannot act)."""
    register_article_units(registry)
    member = enrol(registry, by="zb-factory", on=R4_STARTED, standing="probationary",
                   probation_started_on=R4_STARTED, developing_unit_id="zb-factory")
    registry.dissolve_unit(ADMIN, "zb-factory", occurred_on=date(2025, 6, 1))
    open_case(registry, member, on=date(2025, 8, 1))
    refused(registry, "R4_REPORT_MISSING",
            lambda: issue_letter(registry, member, by="factory-superior", on=date(2025, 9, 16),
                                 letter_no="2025-001"))

    send_report(registry, member, by="factory-superior")
    issue_letter(registry, member, by="factory-superior", on=date(2025, 9, 16),
                 letter_no="2025-001")

    assert registry.member(member).state.in_transit_to == "daning-center"


def test_special_circumstances_do_not_excuse_a_missing_report(registry: Registry) -> None:
    member = developing_elsewhere(registry)

    refused(registry, "R4_REPORT_MISSING",
            lambda: issue_letter(registry, member, on=date(2025, 9, 16), letter_no="2025-001",
                                 special_circumstances="随配偶调动外省"))


def test_two_issuers_numbering_alike_each_act_on_their_own_letter(registry: Registry) -> None:
    """A number is unique per issuer and year only: after daning-center sends the member on
    under its own "2026-001", factory-superior's receipt for its "2026-001" still lands on
    its letter, and the addressee declines daning-center's."""
    member = member_with_letter_out(registry)  # factory-superior → daning-center, 2026-001
    registry.attach_member(
        as_unit("daning-center"), member, occurred_on=date(2026, 3, 20), basis="other",
        override_reason="本人要求",
    )  # fmt: skip
    registry.attend_activity(as_unit("daning-center"), member, occurred_on=date(2026, 3, 21),
                             kind="组织生活会")  # closes case 1; the next move is case 2
    open_case(registry, member, by="hongkou-center", on=date(2026, 3, 22))
    issue_letter(
        registry, member, by="daning-center", to="hongkou-center", on=date(2026, 3, 22),
        letter_no=LETTER_NO,
    )  # fmt: skip

    registry.return_receipt(
        as_unit("factory-superior"), member, occurred_on=date(2026, 3, 25), letter_no=LETTER_NO
    )
    refused(registry, "R9_CASE_CLOSED", lambda: registry.void_letter(  # its case closed
        as_unit("factory-superior"), member, letter_no=LETTER_NO, reason="重开",
    ))  # fmt: skip
    registry.decline_letter(
        as_unit("hongkou-center"), member, occurred_on=date(2026, 3, 26), letter_no=LETTER_NO,
        reason_code="not_our_area",
    )  # fmt: skip

    first, second = registry.member(member).state.letters  # as folded from the store
    assert (first.issuer_unit_id, first.status, first.receipt_returned_on) == (
        "factory-superior", "attached", date(2026, 3, 25)
    )
    assert (second.issuer_unit_id, second.status, second.settled_on) == (
        "daning-center", "declined", date(2026, 3, 26)
    )
    assert second.receipt_returned_on is None


def test_a_report_sent_after_the_letters_date_does_not_count_for_it(registry: Registry) -> None:
    """R4 wants the report at the addressee first: a letter back-dated to before the
    report is refused; dated on the report's day or after, it goes."""
    member = developing_elsewhere(registry)
    registry.send_performance_report(
        as_unit("sh-univ"), member, occurred_on=date(2025, 9, 20), to_unit_id="daning-center",
        covering_from=R4_STARTED, covering_to=date(2025, 9, 20),
    )  # fmt: skip

    refused(registry, "R4_REPORT_MISSING",
            lambda: issue_letter(registry, member, on=date(2025, 9, 16), letter_no="2025-001"))
    issue_letter(registry, member, on=date(2025, 9, 20), letter_no="2025-001")
    assert last_event(registry, member, LetterIssued).occurred_on == date(2025, 9, 20)


# --- back-dated entries: judged on the day they are dated, and against what came after ---


def test_a_new_holders_letter_cannot_be_dated_before_it_took_the_member_in(
    registry: Registry,
) -> None:
    """daning-center holds the member from 03-20; its letter goes in the next case, whose
    entries fall on or after the day the attaching case closed (R9), so never before."""
    register_article_units(registry)
    member = enrol(registry)  # held by factory-superior
    open_case(registry, member)
    daning = as_unit("daning-center")
    registry.attach_member(  # taken in without a letter (R2 set aside, on the record)
        daning, member, occurred_on=date(2026, 3, 20), basis="other",
        override_reason="原单位介绍信遗失",
    )  # fmt: skip
    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 20), kind="组织生活会")
    open_case(registry, member, by="hongkou-center", on=date(2026, 3, 20))

    error = refused(registry, "R9_CASE_CLOSED", lambda: issue_letter(
        registry, member, by="daning-center", to="hongkou-center", on=date(2026, 3, 19),
        letter_no="2026-100",
    ))  # fmt: skip
    assert error.field == "occurred_on" and "on or after 2026-03-20" in error.message
    issue_letter(registry, member, by="daning-center", to="hongkou-center",
                 on=date(2026, 3, 20), letter_no="2026-100")  # fmt: skip


def test_a_letter_cannot_be_dated_while_an_earlier_one_was_still_out(registry: Registry) -> None:
    member = member_with_letter_out(registry)  # letter 2026-001 out from 03-10
    registry.void_letter(
        as_unit("factory-superior"), member, occurred_on=date(2026, 3, 20), letter_no=LETTER_NO,
        reason="重新开具",
    )  # fmt: skip

    error = refused(registry, "R2_LETTER_OUTSTANDING", lambda: issue_letter(
        registry, member, to="hongkou-center", on=date(2026, 3, 15), letter_no="2026-002",
    ))  # fmt: skip
    assert error.field == "occurred_on" and "2026-03-20" in error.message
    issue_letter(registry, member, to="hongkou-center", on=date(2026, 3, 20), letter_no="2026-002")


def test_a_letter_cannot_be_dated_before_one_already_issued(registry: Registry) -> None:
    """Back-dated before letter 2026-001 (out 03-10 to 03-20), a new letter would have been
    out beside it: still unsettled, it was out on 03-10 too."""
    member = member_with_letter_out(registry)
    registry.void_letter(
        as_unit("factory-superior"), member, occurred_on=date(2026, 3, 20), letter_no=LETTER_NO,
        reason="重新开具",
    )  # fmt: skip

    error = refused(registry, "R2_LETTER_OUTSTANDING", lambda: issue_letter(
        registry, member, to="hongkou-center", on=date(2026, 3, 5), letter_no="2026-002",
    ))  # fmt: skip

    assert error.field == "occurred_on" and "on or after 2026-03-20" in error.message


def test_an_attachment_cannot_be_dated_before_the_letter_it_settles(registry: Registry) -> None:
    """An override attachment elsewhere supersedes the letter out: dated before that letter,
    it would settle a letter not yet issued, by a unit that no longer held the member."""
    member = member_with_letter_out(registry)  # 2026-001 to daning-center, issued 03-10
    hongkou = as_unit("hongkou-center")

    error = refused(registry, "INVALID_INPUT", lambda: registry.attach_member(
        hongkou, member, occurred_on=date(2026, 3, 5), basis="other", override_reason="信已遗失",
    ))  # fmt: skip

    assert error.field == "occurred_on" and "on or after 2026-03-10" in error.message
    registry.attach_member(hongkou, member, occurred_on=date(2026, 3, 10), basis="other",
                           override_reason="信已遗失")
    assert letter_status(registry, member) == "superseded"


def test_no_letter_goes_out_in_a_case_already_attached(registry: Registry) -> None:
    """Attached at daning-center, the case waits for the first activity there. A letter
    inside it could never be used (the case has its attachment) nor voided once that
    activity closes the case, and would block every later letter."""
    member = member_with_letter_out(registry)
    daning = as_unit("daning-center")
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 12), basis="other",
                           letter_no=LETTER_NO, override_reason="本人要求")

    error = refused(registry, "ALREADY_ATTACHED", lambda: issue_letter(
        registry, member, by="daning-center", to="hongkou-center", on=date(2026, 3, 15),
        letter_no="2026-009",
    ))  # fmt: skip

    assert "first activity" in error.message
    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 16), kind="组织生活会")
    open_case(registry, member, by="hongkou-center", on=date(2026, 3, 17))
    issue_letter(registry, member, by="daning-center", to="hongkou-center",
                 on=date(2026, 3, 18), letter_no="2026-009")
    assert registry.member(member).state.in_transit_to == "hongkou-center"


@pytest.mark.parametrize("answer", ["void", "decline"])
def test_nothing_is_recorded_about_a_letter_before_it_was_issued(
    registry: Registry, answer: str
) -> None:
    member = member_with_letter_out(registry)  # issued 2026-03-10
    early = date(2026, 3, 5)
    if answer == "void":
        act = lambda: registry.void_letter(  # noqa: E731
            as_unit("factory-superior"), member, occurred_on=early, letter_no=LETTER_NO,
            reason="作废",
        )  # fmt: skip
    else:
        act = lambda: registry.decline_letter(  # noqa: E731
            as_unit("daning-center"), member, occurred_on=early, letter_no=LETTER_NO,
            reason_code="not_our_area",
        )  # fmt: skip

    error = refused(registry, "INVALID_INPUT", act)
    assert error.field == "occurred_on" and "issued on 2026-03-10" in error.message


def test_an_attachment_cannot_be_voided_once_the_new_holder_sent_the_member_on(
    registry: Registry,
) -> None:
    """Undone, the attachment would leave the member with factory-superior and daning's
    later letter out beside factory-superior's. That letter goes in the next case (no
    letter goes out in a case already attached), and an earlier case's entries are final."""
    member = member_with_letter_out(registry)
    daning = as_unit("daning-center")
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")  # fmt: skip
    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 21), kind="组织生活会")
    open_case(registry, member, by="hongkou-center", on=date(2026, 3, 21))
    issue_letter(registry, member, by="daning-center", to="hongkou-center",
                 on=date(2026, 3, 21), letter_no="2026-100")  # fmt: skip
    attached = position_of(registry, member, Attached)

    refused(registry, "NOT_VOIDABLE", lambda: registry.void_entry(
        daning, member, occurred_on=date(2026, 3, 22), position=attached, reason="误录",
    ))  # fmt: skip
    registry.void_letter(daning, member, occurred_on=date(2026, 3, 22), letter_no="2026-100",
                         reason="误开")  # fmt: skip
    refused(registry, "NOT_VOIDABLE", lambda: registry.void_entry(
        daning, member, occurred_on=date(2026, 3, 22), position=attached, reason="误录",
    ))  # fmt: skip
    assert registry.member(member).state.holder_unit_id == "daning-center"


def test_r3_judges_a_back_dated_letter_by_the_standing_and_extensions_of_its_day(
    registry: Registry,
) -> None:
    """Probation ends 2026-01-10 (window 2025-10-10..2025-12-10). A letter dated 2025-11-10
    is judged as on that day: neither a confirmation nor an extension recorded since moves
    it out of the window."""
    confirmed = probationer(registry)
    registry.confirm_membership(as_unit("sh-univ"), confirmed, occurred_on=date(2026, 1, 10))
    refused(registry, "R3_NEAR_CONFIRMATION", lambda: issue_letter(
        registry, confirmed, by="sh-univ", on=date(2025, 11, 10),
    ))  # fmt: skip
    issue_letter(registry, confirmed, by="sh-univ", on=date(2026, 1, 10))  # a full member now
    assert last_event(registry, confirmed, LetterIssued).overridden_rules == []

    extended = enrol(registry, by="sh-univ", on=PROBATION_STARTED, standing="probationary",
                     probation_started_on=PROBATION_STARTED, developing_unit_id="sh-univ", n=2)
    open_case(registry, extended, on=date(2025, 7, 1))
    registry.send_performance_report(
        as_unit("sh-univ"), extended, occurred_on=date(2025, 7, 1), to_unit_id="daning-center",
        covering_from=PROBATION_STARTED, covering_to=date(2025, 6, 30),
    )  # fmt: skip
    registry.extend_probation(as_unit("sh-univ"), extended, occurred_on=date(2025, 12, 20),
                              months=3)  # fmt: skip
    refused(registry, "R3_NEAR_CONFIRMATION", lambda: issue_letter(
        registry, extended, by="sh-univ", on=date(2025, 11, 10),
    ))  # fmt: skip
    # From its day the extension counts: the window is now 2026-01-10..2026-03-10.
    issue_letter(registry, extended, by="sh-univ", on=date(2025, 12, 20))
    assert last_event(registry, extended, LetterIssued).overridden_rules == []


def test_r4_judges_a_back_dated_letter_by_the_standing_of_its_day(registry: Registry) -> None:
    """More than six months into probation on 2025-09-16 and no report: a letter dated then
    is refused although the member was confirmed since."""
    member = developing_elsewhere(registry)
    registry.confirm_membership(as_unit("factory-superior"), member, occurred_on=date(2025, 10, 1))

    refused(registry, "R4_REPORT_MISSING",
            lambda: issue_letter(registry, member, on=date(2025, 9, 16), letter_no="2025-001"))
    issue_letter(registry, member, on=date(2025, 10, 1), letter_no="2025-001")


def test_a_paper_letter_entered_after_its_attachment_is_told_how_to_enter_it(
    registry: Registry,
) -> None:
    """The attachment was entered first (its letter not yet typed in): the letter dated
    before it cannot join the attached case, and the refusal says how to put it right."""
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member, on=date(2026, 3, 2))
    registry.attach_member(as_unit("daning-center"), member, occurred_on=date(2026, 3, 20),
                           basis="other", override_reason="介绍信未录入")

    error = refused(registry, "ALREADY_ATTACHED", lambda: issue_letter(
        registry, member, on=date(2026, 3, 10), letter_no="2026-001"))

    assert error.field == "occurred_on" and "void that attachment" in error.message


def test_a_letter_dated_before_others_is_told_the_day_all_were_settled(
    registry: Registry,
) -> None:
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member, on=date(2026, 1, 2))
    factory = as_unit("factory-superior")
    for number, on, voided in (("2026-001", date(2026, 1, 5), date(2026, 1, 10)),
                               ("2026-002", date(2026, 2, 1), date(2026, 2, 20))):
        issue_letter(registry, member, on=on, letter_no=number)
        registry.void_letter(factory, member, occurred_on=voided, letter_no=number,
                             reason="重新开具")

    error = refused(registry, "R2_LETTER_OUTSTANDING", lambda: issue_letter(
        registry, member, on=date(2026, 1, 3), letter_no="2026-003"))

    assert "on or after 2026-02-20" in error.message
    issue_letter(registry, member, on=date(2026, 2, 20), letter_no="2026-003")
