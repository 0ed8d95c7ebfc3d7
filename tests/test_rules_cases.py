"""R9: one open case per member; what a closed case still accepts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any
from uuid import UUID

import pytest

from domain.member_events import (
    ActivityAttended,
    ArchiveReviewed,
    DuesReceived,
    EntryVoided,
    InquiryReceived,
    LetterVoided,
    ReceiptReturned,
)
from domain.registry import Registry
from tests.scenarios import (
    INQUIRY_ON,
    LETTER_NO,
    enrol,
    issue_letter,
    last_event,
    member_with_letter_out,
    open_case,
    position_of,
    record_evidence,
    refused,
)
from tests.support import as_unit, register_article_units

AFTER = date(2026, 4, 1)
daning = as_unit("daning-center")

# Case actions of daning-center on 2026-04-01, each taking an optional case_id.
CASE_ACTIONS: dict[str, Callable[[Registry, UUID, UUID | None], Any]] = {
    "notify_requirements": lambda r, m, c: r.notify_requirements(
        daning, m, occurred_on=AFTER, documents=["租赁合同"], case_id=c),
    "record_evidence": lambda r, m, c: r.record_evidence(
        daning, m, occurred_on=AFTER, kind="lease", reference="L-1", case_id=c),
    "review_archive": lambda r, m, c: r.review_archive(
        daning, m, occurred_on=AFTER, finding="档案齐全", case_id=c),
    "consult_unit": lambda r, m, c: r.consult_unit(
        daning, m, occurred_on=AFTER, consulted_unit_id="hongkou-center", note="通报", case_id=c),
    "hold_transfer": lambda r, m, c: r.hold_transfer(
        daning, m, occurred_on=AFTER, rule="R3", note="待转正", case_id=c),
    "refer_case": lambda r, m, c: r.refer_case(
        daning, m, occurred_on=AFTER, to_unit_id="hongkou-center", handover="warm",
        reason="居住在虹口", case_id=c),
    "issue_letter": lambda r, m, c: r.issue_letter(
        as_unit("factory-superior"), m, occurred_on=AFTER, letter_no="2026-050",
        to_unit_id="hongkou-center", dues_paid_through="2026-03", case_id=c),
    "attach_member": lambda r, m, c: r.attach_member(
        daning, m, occurred_on=AFTER, basis="other", override_reason="本人要求", case_id=c),
    "withdraw_case": lambda r, m, c: r.withdraw_case(
        daning, m, occurred_on=AFTER, reason="本人撤回", case_id=c),
}


def attached_and_closed(registry: Registry) -> tuple[UUID, UUID]:
    """Letter 2026-001 used at daning-center on 2026-03-20; the member attended daning's
    activity on 2026-03-25, which closed the case. Returns (member, case)."""
    member = member_with_letter_out(registry)
    case = registry.member(member).state.open_case_id
    assert case is not None
    registry.review_archive(daning, member, occurred_on=date(2026, 3, 12), finding="档案齐全")
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")
    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 25), kind="组织生活会")
    return member, case


def withdrawn_after_voiding_the_letter(registry: Registry) -> tuple[UUID, UUID]:
    """Letter 2026-001 is voided by its issuer, then the case is withdrawn on 2026-03-15."""
    member = member_with_letter_out(registry)
    case = registry.member(member).state.open_case_id
    assert case is not None
    registry.void_letter(as_unit("factory-superior"), member, occurred_on=date(2026, 3, 14),
                         letter_no=LETTER_NO, reason="本人撤回")
    registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 15), reason="本人撤回")
    return member, case


# --- no open case ----------------------------------------------------------------


@pytest.mark.parametrize("action", CASE_ACTIONS, ids=list(CASE_ACTIONS))
def test_case_actions_without_an_open_case_are_refused(registry: Registry, action: str) -> None:
    register_article_units(registry)
    member = enrol(registry)

    error = refused(registry, "R9_NO_OPEN_CASE",
                    lambda: CASE_ACTIONS[action](registry, member, None))

    assert error.field == "case_id"


# --- one open case ---------------------------------------------------------------


def test_an_inquiry_opens_a_case(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)

    outcome = registry.receive_inquiry(daning, member, occurred_on=INQUIRY_ON,
                                       channel="walk_in", summary="申请转入")

    state = registry.member(member).state
    assert state.open_case_id == outcome.case_id
    assert outcome.first_responder == "daning-center"


def test_a_second_inquiry_joins_the_open_case(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)
    first = open_case(registry, member)

    outcome = registry.receive_inquiry(as_unit("sh-org-dept"), member,
                                       occurred_on=date(2026, 3, 9), channel="letter",
                                       summary="来信反映")

    assert outcome.case_id == first
    assert outcome.first_responder == "daning-center"
    assert len(registry.member(member).state.cases) == 1


def test_a_back_dated_inquiry_by_another_unit_becomes_first_responder(
    registry: Registry,
) -> None:
    register_article_units(registry)
    member = enrol(registry)
    first = open_case(registry, member)

    outcome = registry.receive_inquiry(as_unit("hongkou-center"), member,
                                       occurred_on=date(2026, 2, 20), channel="phone",
                                       summary="补录：二月电话咨询")

    assert outcome.case_id == first
    assert outcome.first_responder == "hongkou-center"
    assert registry.member(member).state.cases[first].opened_on == date(2026, 2, 20)


def test_an_inquiry_the_same_day_by_another_unit_does_not_take_over_first_response(
    registry: Registry,
) -> None:
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member)

    outcome = registry.receive_inquiry(as_unit("hongkou-center"), member, occurred_on=INQUIRY_ON,
                                       channel="phone", summary="同日电话咨询")

    assert outcome.first_responder == "daning-center"


# --- closing ----------------------------------------------------------------------


@pytest.mark.parametrize("action", CASE_ACTIONS, ids=list(CASE_ACTIONS))
def test_after_the_closing_activity_case_actions_are_refused(
    registry: Registry, action: str
) -> None:
    member, case = attached_and_closed(registry)

    refused(registry, "R9_CASE_CLOSED", lambda: CASE_ACTIONS[action](registry, member, case))


def test_after_the_closing_activity_the_member_has_no_open_case(registry: Registry) -> None:
    member, case = attached_and_closed(registry)

    refused(registry, "R9_NO_OPEN_CASE",
            lambda: CASE_ACTIONS["record_evidence"](registry, member, None))

    closed = registry.member(member).state.cases[case]
    assert (closed.closed_on, closed.closed_by) == (date(2026, 3, 25), "activity")


def test_an_activity_at_another_unit_does_not_close_the_case(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")

    registry.attend_activity(as_unit("hongkou-center"), member, occurred_on=date(2026, 3, 25),
                             kind="主题党日")

    assert registry.member(member).state.open_case is not None


def test_an_activity_dated_before_the_attachment_does_not_close_the_case(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry)
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")

    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 19), kind="补录活动")

    assert registry.member(member).state.open_case is not None


def test_an_activity_on_the_attachment_day_closes_the_case(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")

    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 20), kind="组织生活会")

    assert registry.member(member).state.open_case is None


def test_a_closed_case_still_takes_the_return_receipt(registry: Registry) -> None:
    member, case = attached_and_closed(registry)

    registry.return_receipt(as_unit("factory-superior"), member, occurred_on=date(2026, 4, 1),
                            letter_no=LETTER_NO)

    assert last_event(registry, member, ReceiptReturned).case_id == case


def test_a_receipt_returns_once_and_is_corrected_by_voiding_it(registry: Registry) -> None:
    """A second receipt would move the day R6 judges the receipt by (a receipt back in
    time would become overdue): refused; a wrong day is voided and recorded again."""
    member, _ = attached_and_closed(registry)  # attached 2026-03-20
    factory = as_unit("factory-superior")
    registry.return_receipt(factory, member, occurred_on=date(2026, 4, 1), letter_no=LETTER_NO)

    error = refused(registry, "RECEIPT_ALREADY_RETURNED", lambda: registry.return_receipt(
        factory, member, occurred_on=date(2026, 6, 1), letter_no=LETTER_NO))

    assert error.field == "letter_no" and "2026-04-01" in error.message
    registry.void_entry(factory, member, occurred_on=date(2026, 4, 2),
                        position=position_of(registry, member, ReceiptReturned), reason="日期误录")
    registry.return_receipt(factory, member, occurred_on=date(2026, 4, 2), letter_no=LETTER_NO)
    letter = registry.member(member).state.find_letter(LETTER_NO)
    assert letter is not None and letter.receipt_returned_on == date(2026, 4, 2)


def test_a_closed_case_still_takes_a_void(registry: Registry) -> None:
    member, case = attached_and_closed(registry)
    position = position_of(registry, member, ArchiveReviewed)

    registry.void_entry(daning, member, occurred_on=date(2026, 4, 1), position=position,
                        reason="录入错误")

    assert last_event(registry, member, EntryVoided).case_id == case


def test_after_the_closing_activity_an_expiry_is_judged_on_the_letter_not_refused_by_r9(
    registry: Registry,
) -> None:
    member, _ = attached_and_closed(registry)

    refused(registry, "LETTER_NOT_OUTSTANDING",
            lambda: registry.expire_letter(as_unit("factory-superior"), member,
                                           occurred_on=date(2026, 6, 9), letter_no=LETTER_NO))


def test_an_activity_entered_before_a_back_dated_attachment_closes_the_case(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry)
    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 25), kind="组织生活会")

    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")

    assert registry.member(member).state.open_case is None


def test_a_withdrawal_closes_the_case(registry: Registry) -> None:
    member, case = withdrawn_after_voiding_the_letter(registry)

    refused(registry, "R9_CASE_CLOSED",
            lambda: CASE_ACTIONS["record_evidence"](registry, member, case))

    closed = registry.member(member).state.cases[case]
    assert (closed.closed_on, closed.closed_by) == (date(2026, 3, 15), "withdrawn")


def test_a_case_with_a_letter_out_cannot_be_withdrawn(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    refused(registry, "R2_LETTER_OUTSTANDING",
            lambda: registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 15),
                                           reason="本人撤回"))

    assert registry.member(member).state.open_case_id is not None


def test_a_withdrawn_case_still_takes_a_void_of_its_entries(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    registry.review_archive(daning, member, occurred_on=date(2026, 3, 13), finding="档案完整")
    registry.void_letter(as_unit("factory-superior"), member, occurred_on=date(2026, 3, 14),
                         letter_no=LETTER_NO, reason="本人撤回")
    registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 15), reason="本人撤回")
    position = position_of(registry, member, ArchiveReviewed)

    registry.void_entry(daning, member, occurred_on=date(2026, 3, 16), position=position,
                        reason="误录")

    state = registry.member(member).state
    assert state.voided and next(iter(state.cases.values())).closed_by == "withdrawn"


def test_a_letter_void_cannot_itself_be_voided(registry: Registry) -> None:
    member, _ = withdrawn_after_voiding_the_letter(registry)
    position = position_of(registry, member, LetterVoided)

    refused(registry, "NOT_VOIDABLE",
            lambda: registry.void_entry(as_unit("factory-superior"), member,
                                        occurred_on=date(2026, 3, 16), position=position,
                                        reason="误录"))


def test_dues_after_the_close_are_recorded_outside_the_case(registry: Registry) -> None:
    member, _ = attached_and_closed(registry)

    registry.receive_dues(daning, member, occurred_on=date(2026, 4, 1), months_from="2026-03",
                          months_to="2026-03", amount="2.00")

    assert last_event(registry, member, DuesReceived).case_id is None


def test_a_new_inquiry_after_the_close_opens_a_second_case(registry: Registry) -> None:
    member, first = attached_and_closed(registry)

    second = open_case(registry, member, by="hongkou-center", on=date(2026, 5, 6))

    state = registry.member(member).state
    assert second != first
    assert state.open_case_id == second
    assert state.cases[second].number == 2
    assert last_event(registry, member, InquiryReceived).case_id == second


def test_a_new_inquiry_after_a_withdrawal_opens_a_second_case(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)
    first = open_case(registry, member)
    registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 3), reason="本人撤回")

    second = open_case(registry, member, on=date(2026, 3, 4))

    assert second != first
    assert registry.member(member).state.cases[second].number == 2


def test_the_second_case_starts_without_the_first_cases_evidence(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member)
    record_evidence(registry, member, "lease")
    registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 3), reason="本人撤回")

    second = open_case(registry, member, on=date(2026, 3, 4))

    assert registry.member(member).state.cases[second].evidence == []


def test_a_letter_issued_in_the_second_case_belongs_to_it(registry: Registry) -> None:
    member, _ = attached_and_closed(registry)
    second = open_case(registry, member, by="hongkou-center", on=date(2026, 5, 6))

    issue_letter(registry, member, by="daning-center", to="hongkou-center",
                 on=date(2026, 5, 7), letter_no="2026-101")

    letter = registry.member(member).state.find_letter("2026-101")
    assert letter is not None
    assert letter.case_id == second


def test_an_inquiry_dated_while_a_closed_case_was_open_cannot_open_a_second_case(
    registry: Registry,
) -> None:
    """Case 1 ran from 03-02 to 03-25; a paper inquiry dated 03-12, entered afterwards, would
    open a case overlapping it (two open on 03-12): refused, naming the day it may bear."""
    member = member_with_letter_out(registry)  # case 1 opened 2026-03-02, letter 03-10
    daning = as_unit("daning-center")
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")  # fmt: skip
    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 25), kind="组织生活会")

    error = refused(registry, "R9_CASE_CLOSED", lambda: registry.receive_inquiry(
        as_unit("hongkou-center"), member, occurred_on=date(2026, 3, 12), channel="phone",
        summary="补录：电话咨询",
    ))  # fmt: skip
    assert error.field == "occurred_on" and "2026-03-25" in error.message
    opened = registry.receive_inquiry(
        as_unit("hongkou-center"), member, occurred_on=date(2026, 3, 25), channel="phone",
        summary="补录：电话咨询",
    )
    state = registry.member(member).state
    assert len(state.cases) == 2 and state.open_case_id == opened.case_id


def _case_one_closed_then_case_two(registry: Registry) -> UUID:
    """Case 1 from 03-02, attached at Daning 03-20 and closed 03-25; case 2 opened 06-01."""
    member = member_with_letter_out(registry)
    daning = as_unit("daning-center")
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")  # fmt: skip
    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 25), kind="组织生活会")
    registry.receive_inquiry(as_unit("hongkou-center"), member, occurred_on=date(2026, 6, 1),
                             channel="walk_in", summary="申请转入虹口")  # fmt: skip
    return member


def test_an_inquiry_joining_a_case_cannot_be_dated_while_the_case_before_was_open(
    registry: Registry,
) -> None:
    """Joining case 2 with a date inside case 1 would make both open that day (and the
    joining unit case 2's first responder): refused, as an inquiry opening a case is."""
    member = _case_one_closed_then_case_two(registry)

    error = refused(registry, "R9_CASE_CLOSED", lambda: registry.receive_inquiry(
        as_unit("sh-univ"), member, occurred_on=date(2026, 3, 22), channel="phone",
        summary="补录：电话咨询",
    ))  # fmt: skip

    assert error.field == "occurred_on" and "2026-03-25" in error.message


def test_a_case_entry_cannot_be_dated_while_the_case_before_was_open(registry: Registry) -> None:
    """An attachment in case 2 dated inside case 1 would put the holdings out of order."""
    member = _case_one_closed_then_case_two(registry)

    error = refused(registry, "R9_CASE_CLOSED", lambda: registry.attach_member(
        as_unit("hongkou-center"), member, occurred_on=date(2026, 3, 1), basis="other",
        override_reason="补录",
    ))  # fmt: skip

    assert error.field == "occurred_on"
    registry.attach_member(as_unit("hongkou-center"), member, occurred_on=date(2026, 6, 1),
                           basis="other", override_reason="补录")  # fmt: skip
    holdings = registry.member(member).state.holdings
    assert [h.since for h in holdings] == sorted(h.since for h in holdings)


def test_a_withdrawal_cannot_be_dated_before_the_cases_latest_entry(registry: Registry) -> None:
    """Closed on a day before its own entries, the case would overlap the next one: a unit
    could open a case inside it and attach before the first case's attachment."""
    register_article_units(registry)
    member = enrol(registry)
    case = open_case(registry, member, on=date(2026, 3, 10))
    registry.review_archive(daning, member, occurred_on=date(2026, 3, 20), finding="档案齐全")

    error = refused(registry, "INVALID_INPUT",
                    lambda: registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 1),
                                                   reason="本人撤回"))

    assert error.field == "occurred_on" and "on or after 2026-03-20" in error.message
    registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 20), reason="本人撤回")
    assert registry.member(member).state.cases[case].closed_on == date(2026, 3, 20)


def test_an_activity_recorded_before_the_inquiry_closes_the_case_it_falls_in(
    registry: Registry,
) -> None:
    """Paper records out of order: the activity (no case open when it was entered) is
    dated after the attachment entered later, so R9 closes the case on its day — as if
    the three had been entered in date order."""
    register_article_units(registry)
    in_order, out_of_order = enrol(registry, n=1), enrol(registry, n=2)
    activity = (date(2026, 6, 20), "组织生活会")

    def inquire_and_attach(member: UUID) -> UUID:
        case = open_case(registry, member, on=date(2026, 5, 8))
        registry.attach_member(daning, member, occurred_on=date(2026, 6, 5), basis="other",
                               override_reason="本人要求")
        return case

    case = inquire_and_attach(in_order)
    registry.attend_activity(daning, in_order, occurred_on=activity[0], kind=activity[1])
    registry.attend_activity(daning, out_of_order, occurred_on=activity[0], kind=activity[1])
    late = inquire_and_attach(out_of_order)

    for member, its in ((in_order, case), (out_of_order, late)):
        state = registry.member(member).state
        assert (state.cases[its].closed_on, state.cases[its].closed_by) == (
            date(2026, 6, 20), "activity"
        )
        assert state.open_case_id is None
    # An activity elsewhere, or dated before the attachment, closes nothing.
    third = enrol(registry, n=3)
    registry.attend_activity(daning, third, occurred_on=date(2026, 6, 1), kind="组织生活会")
    registry.attend_activity(as_unit("hongkou-center"), third, occurred_on=date(2026, 6, 20),
                             kind="组织生活会")
    inquire_and_attach(third)
    assert registry.member(third).state.open_case_id is not None


def test_a_receipt_for_an_attachment_since_voided_does_not_count_for_the_next(
    registry: Registry,
) -> None:
    """The receipt answered the attachment that was voided: the letter is out again with no
    receipt, and the receipt for the attachment that follows is recorded anew."""
    member = member_with_letter_out(registry)  # 2026-001 to daning-center, issued 03-10
    factory = as_unit("factory-superior")
    attached = registry.attach_member(
        daning, member, occurred_on=date(2026, 3, 12), basis="other", letter_no=LETTER_NO,
        override_reason="本人要求",
    )  # fmt: skip
    registry.return_receipt(factory, member, occurred_on=date(2026, 3, 14), letter_no=LETTER_NO)
    assert attached.position is not None
    registry.void_entry(daning, member, occurred_on=date(2026, 3, 20), position=attached.position,
                        reason="误录")

    letter = registry.member(member).state.find_letter(LETTER_NO)
    assert letter is not None and (letter.status, letter.receipt_returned_on) == (
        "outstanding", None
    )
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 21), basis="other",
                           letter_no=LETTER_NO, override_reason="本人要求")
    registry.return_receipt(factory, member, occurred_on=date(2026, 3, 25), letter_no=LETTER_NO)
    letter = registry.member(member).state.find_letter(LETTER_NO)
    assert letter is not None and letter.receipt_returned_on == date(2026, 3, 25)


def test_dues_entered_during_an_earlier_case_can_still_be_corrected(registry: Registry) -> None:
    """A wrong dues entry is voided even after a later case opened (R7 counts dues); the
    earlier case's own entries stay final."""
    member = member_with_letter_out(registry)
    registry.review_archive(daning, member, occurred_on=date(2026, 3, 12), finding="档案齐全")
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")
    registry.receive_dues(daning, member, occurred_on=date(2026, 3, 22), months_from="2026-01",
                          months_to="2026-03", amount="9.00")  # while case 1 is open
    registry.attend_activity(daning, member, occurred_on=date(2026, 3, 25), kind="组织生活会")
    dues = position_of(registry, member, DuesReceived)
    (paid,) = [e for e in registry.member(member).history if isinstance(e, DuesReceived)]
    assert paid.case_id == registry.member(member).state.latest_case().case_id  # type: ignore[union-attr]
    review = position_of(registry, member, ArchiveReviewed)
    open_case(registry, member, by="hongkou-center", on=date(2026, 4, 10))

    registry.void_entry(daning, member, occurred_on=date(2026, 4, 11), position=dues,
                        reason="金额误录")

    assert last_event(registry, member, EntryVoided).voided == dues
    refused(registry, "NOT_VOIDABLE", lambda: registry.void_entry(
        daning, member, occurred_on=date(2026, 4, 11), position=review, reason="误录"))


def _activity_entered_before_its_case(registry: Registry) -> tuple[UUID, int]:
    """An activity at Daning dated 06-20 entered while no case was open, then the case it
    falls in: inquiry 05-08, attachment 06-05. Returns (member, the activity's position)."""
    register_article_units(registry)
    member = enrol(registry)
    registry.attend_activity(daning, member, occurred_on=date(2026, 6, 20), kind="组织生活会")
    activity = position_of(registry, member, ActivityAttended)
    open_case(registry, member, on=date(2026, 5, 8))
    return member, activity


def test_an_activity_that_closed_an_earlier_case_stays_final_though_entered_outside_it(
    registry: Registry,
) -> None:
    """Voided once a later case exists, it would reopen the earlier case beside the later."""
    member, activity = _activity_entered_before_its_case(registry)
    registry.attach_member(daning, member, occurred_on=date(2026, 6, 5), basis="other",
                           override_reason="本人要求")
    open_case(registry, member, by="hongkou-center", on=date(2026, 8, 1))

    refused(registry, "NOT_VOIDABLE", lambda: registry.void_entry(
        daning, member, occurred_on=date(2026, 8, 2), position=activity, reason="误录"))

    cases = registry.member(member).state.cases.values()
    assert [c.is_open for c in cases] == [False, True]


def test_an_activity_dated_before_an_entry_of_the_case_does_not_close_it(
    registry: Registry,
) -> None:
    """Entered out of order, an archive review dated 07-01 shows the case was still worked
    on after the 06-20 activity: the case closes at the next activity after it, so no
    second case can open inside the first."""
    member, _ = _activity_entered_before_its_case(registry)
    registry.review_archive(daning, member, occurred_on=date(2026, 7, 1), finding="档案齐全")
    registry.attach_member(daning, member, occurred_on=date(2026, 6, 5), basis="other",
                           override_reason="本人要求")
    assert registry.member(member).state.open_case is not None

    joined = open_case(registry, member, by="hongkou-center", on=date(2026, 6, 25))

    state = registry.member(member).state
    assert len(state.cases) == 1 and joined == state.open_case_id  # it joined, opened nothing
    registry.attend_activity(daning, member, occurred_on=date(2026, 7, 2), kind="组织生活会")
    closed = registry.member(member).state.cases[joined]
    assert (closed.closed_on, closed.closed_by) == (date(2026, 7, 2), "activity")


def test_dues_and_contacts_in_a_case_do_not_bound_its_withdrawal(registry: Registry) -> None:
    """Paid and reached while the case was open, the member then withdrew on paper on 03-15:
    only the case's own entries bound the day of the withdrawal."""
    register_article_units(registry)
    member = enrol(registry)
    case = open_case(registry, member, on=date(2026, 3, 1))
    registry.receive_dues(daning, member, occurred_on=date(2026, 4, 1), months_from="2026-01",
                          months_to="2026-03", amount="9.00")
    registry.make_contact(daning, member, occurred_on=date(2026, 5, 1), channel="phone",
                          note="回访")

    registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 15), reason="本人撤回")

    assert registry.member(member).state.cases[case].closed_on == date(2026, 3, 15)
