"""R5 and R7 judged on a date, as DESIGN.md defines them, through the projections.

Each scenario is a few commands on one member, folded by the projector, then
judged by the read models on chosen dates: referrals cold or declined, windows
of 14 and 30 days (a finding's ``since`` is the first day it holds), rows
judged on a date before later events, and dues paid for months ahead.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any
from uuid import UUID

import pytest

from domain.registry import Registry
from projections.queries import ReadModels
from projections.runner import Projector
from tests.projection_support import fresh_registry_with_article_units
from tests.support import as_unit

DANING, HONGKOU, RESIDENCE = "daning-center", "hongkou-center", "sh-residence-center"


@pytest.fixture
def registry(store_url: str) -> Iterator[Registry]:
    with fresh_registry_with_article_units(store_url) as app:
        yield app


def _member(registry: Registry, number: str = "310109198001010011") -> UUID:
    outcome = registry.enrol_member(
        as_unit(RESIDENCE), name="王五", id_number=number, standing="full",
        household_region="上海·闸北", occurred_on=date(2020, 1, 1),
    )  # fmt: skip
    assert outcome.member_id is not None
    return outcome.member_id


def _case(registry: Registry, member: UUID, on: date, unit: str = DANING) -> UUID:
    outcome = registry.receive_inquiry(
        as_unit(unit), member, occurred_on=on, channel="walk_in", summary="申请转入"
    )
    assert outcome.case_id is not None
    return outcome.case_id


def _refer(registry: Registry, member: UUID, on: date, handover: str) -> None:
    registry.refer_case(
        as_unit(DANING), member, occurred_on=on, to_unit_id=HONGKOU, handover=handover,
        reason="建议去虹口",
    )  # fmt: skip


def _decline(registry: Registry, member: UUID, on: date) -> None:
    registry.decline_referral(as_unit(HONGKOU), member, occurred_on=on, reason_code="not_our_area")


def _act(registry: Registry, member: UUID, on: date, unit: str = DANING) -> None:
    registry.review_archive(as_unit(unit), member, occurred_on=on, finding="档案齐全")


def _models(registry: Registry) -> ReadModels:
    Projector(registry).catch_up()
    return ReadModels(registry)


def _r5(models: ReadModels, on: date) -> set[tuple[str, str, str | None]]:
    return {
        (f.detail, f.since.isoformat(), f.resolved and f.resolved.isoformat())
        for f in models.findings(on=on, rule="R5")
    }


def _spans(models: ReadModels, on: date, rule: str, member: UUID) -> list[tuple[str, Any]]:
    """(since, resolved) of the member's findings under ``rule`` judged on ``on``."""
    return [
        (f.since.isoformat(), f.resolved and f.resolved.isoformat())
        for f in models.findings(on=on, rule=rule, member_id=str(member))
    ]


def _outcome(models: ReadModels, case: UUID, on: date) -> tuple[str, Any]:
    summary = models.case(case, on)
    return summary["outcome"], summary["outcome_since"]


def test_a_cold_referral_stays_dropped_when_the_addressee_declines_it(
    registry: Registry,
) -> None:
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "cold")
    _decline(registry, member, date(2025, 6, 3))
    _act(registry, member, date(2025, 6, 5))  # the first responder acted again at once

    models = _models(registry)

    assert _outcome(models, case, date(2025, 6, 10)) == ("dropped", "2025-06-01")
    assert ("dropped", "2025-06-01", None) in _r5(models, date(2025, 6, 10))


def test_a_warm_referral_not_taken_on_in_14_days_is_cold_from_the_15th_whatever_comes_later(
    registry: Registry,
) -> None:
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")
    _decline(registry, member, date(2025, 6, 25))  # too late to be an answer within 14 days
    _act(registry, member, date(2025, 6, 26))

    models = _models(registry)

    assert _outcome(models, case, date(2025, 6, 15))[0] == "open"  # the 14th day: still pending
    assert _outcome(models, case, date(2025, 6, 16)) == ("dropped", "2025-06-16")
    assert _outcome(models, case, date(2025, 6, 30)) == ("dropped", "2025-06-16")


def test_a_warm_referral_declined_in_time_drops_the_case_only_if_left_for_14_days(
    registry: Registry,
) -> None:
    kept = _member(registry, "310109198001010011")
    kept_case = _case(registry, kept, date(2025, 6, 1))
    _refer(registry, kept, date(2025, 6, 1), "warm")
    _decline(registry, kept, date(2025, 6, 5))
    _act(registry, kept, date(2025, 6, 19))  # the 14th day after the decline: in time
    left = _member(registry, "310109198001010029")
    left_case = _case(registry, left, date(2025, 6, 1))
    _refer(registry, left, date(2025, 6, 1), "warm")
    _decline(registry, left, date(2025, 6, 5))

    models = _models(registry)

    assert _outcome(models, kept_case, date(2025, 7, 30))[0] == "open"
    assert _outcome(models, left_case, date(2025, 6, 19))[0] == "open"
    assert _outcome(models, left_case, date(2025, 6, 20)) == ("dropped", "2025-06-20")


def test_judged_on_an_earlier_date_later_events_do_not_count(registry: Registry) -> None:
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 20), "cold")

    models = _models(registry)

    before = date(2025, 6, 10)
    assert _outcome(models, case, before)[0] == "open"
    assert _r5(models, before) == set()
    (card,) = models.scorecards(DANING, before)
    assert (card.answered_first, card.dropped, card.open) == (1, 0, 1)
    assert models.case(case, before)["referrals"] == []
    assert _outcome(models, case, date(2025, 6, 20)) == ("dropped", "2025-06-20")
    (card,) = models.scorecards(DANING, date(2025, 6, 20))
    assert card.dropped == 1


def test_judged_before_it_was_withdrawn_a_case_is_still_open(registry: Registry) -> None:
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    registry.withdraw_case(as_unit(DANING), member, occurred_on=date(2025, 6, 3), reason="本人撤回")

    models = _models(registry)

    assert models.case(case, date(2025, 6, 2))["closed_on"] is None
    assert _outcome(models, case, date(2025, 6, 2))[0] == "open"
    assert _outcome(models, case, date(2025, 6, 3)) == ("withdrawn", "2025-06-03")


def test_a_stalled_case_is_stalled_from_the_31st_day_without_action(registry: Registry) -> None:
    member = _member(registry)
    _case(registry, member, date(2025, 1, 1))

    models = _models(registry)

    assert _r5(models, date(2025, 1, 31)) == set()
    assert _r5(models, date(2025, 2, 1)) == {("stalled", "2025-02-01", None)}


def test_an_addressee_that_acts_in_a_cold_referred_case_has_taken_it_on(
    registry: Registry,
) -> None:
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "cold")
    models = _models(registry)
    assert [i["case_id"] for i in models.unit_queue(HONGKOU, date(2025, 6, 2))["todo"]] == [
        str(case)
    ]

    _act(registry, member, date(2025, 6, 4), unit=HONGKOU)
    models = _models(registry)

    (referral,) = models.case(case, date(2025, 6, 5))["referrals"]
    assert (referral["state"], referral["answer"], referral["answered_on"]) == (
        "cold", "accepted", "2025-06-04",
    )  # fmt: skip
    # No longer a request waiting for an answer: a case it took on (已接手).
    assert [i.get("taken_on") for i in models.unit_queue(HONGKOU, date(2025, 6, 5))["todo"]] == [
        "2025-06-04"
    ]
    assert models.unit_queue(DANING, date(2025, 6, 5))["waiting_on_others"] == []


def test_dues_paid_for_months_ahead_keep_the_member_in_contact_until_they_end(
    registry: Registry,
) -> None:
    member = _member(registry)
    registry.receive_dues(
        as_unit(RESIDENCE), member, occurred_on=date(2020, 1, 5), months_from="2020-01",
        months_to="2022-12", amount="36.00",
    )  # fmt: skip

    models = _models(registry)

    def r7(on: date) -> list[tuple[str, Any]]:
        return _spans(models, on, "R7", member)

    assert r7(date(2021, 6, 1)) == []  # paid through 2022: not lost, though unheard of since
    assert r7(date(2023, 6, 30)) == []
    assert r7(date(2023, 7, 1)) == [("2023-07-01", None)]


def test_a_case_is_dropped_from_its_earliest_drop_whichever_referral_came_first(
    registry: Registry,
) -> None:
    """A warm referral going cold on the 16th does not move a drop that a cold referral
    made on the 5th."""
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")  # never answered: cold from 6/16
    registry.refer_case(
        as_unit(DANING), member, occurred_on=date(2025, 6, 5), to_unit_id=RESIDENCE,
        handover="cold", reason="建议去居住地",
    )  # fmt: skip
    models = _models(registry)

    for on in (date(2025, 6, 10), date(2025, 6, 20)):
        assert models.case(case, on)["outcome_since"] == "2025-06-05", on
    assert _r5(models, date(2025, 6, 20)) == {("dropped", "2025-06-05", None)}


def test_dues_paid_late_for_months_long_past_do_not_end_a_lost_contact_stretch(
    registry: Registry,
) -> None:
    """R7 counts from the end of the months dues cover: months paid for long after they
    passed are no word from the member, and the stretch since October 2024 goes on."""
    member = _member(registry)
    registry.receive_dues(
        as_unit(RESIDENCE), member, occurred_on=date(2024, 3, 15), months_from="2023-04",
        months_to="2024-03", amount="12.00",
    )  # fmt: skip
    registry.receive_dues(
        as_unit(RESIDENCE), member, occurred_on=date(2026, 3, 1), months_from="2024-04",
        months_to="2025-06", amount="15.00",
    )  # fmt: skip
    models = _models(registry)

    def r7(on: date) -> list[tuple[str, Any]]:
        return _spans(models, on, "R7", member)

    assert r7(date(2026, 2, 28)) == [("2024-10-01", None)]
    assert r7(date(2026, 3, 1)) == [("2024-10-01", None)]
    registry.make_contact(
        as_unit(RESIDENCE), member, occurred_on=date(2026, 4, 1), channel="phone", note="找到了"
    )
    models = _models(registry)
    assert r7(date(2026, 4, 2)) == [("2024-10-01", "2026-04-01")]


def test_a_letter_declined_after_it_ran_out_was_a_pocket_letter_until_the_decline(
    registry: Registry,
) -> None:
    """R6: declined after valid-until, the letter was unused from the day after it until
    the decline (as a letter voided late is); declined in time, it never was."""
    member = _member(registry)
    _case(registry, member, date(2025, 6, 1))
    registry.issue_letter(
        as_unit(RESIDENCE), member, occurred_on=date(2025, 6, 2), letter_no="2025-001",
        to_unit_id=DANING, dues_paid_through="2025-05", valid_until=date(2025, 6, 30),
    )  # fmt: skip
    registry.decline_letter(
        as_unit(DANING), member, occurred_on=date(2025, 7, 20), letter_no="2025-001",
        reason_code="not_our_area",
    )  # fmt: skip
    models = _models(registry)

    def r6(on: date) -> list[tuple[str, Any]]:
        return _spans(models, on, "R6", member)

    assert r6(date(2025, 7, 10)) == [("2025-07-01", None)]
    assert r6(date(2025, 7, 25)) == [("2025-07-01", "2025-07-20")]


def test_a_case_read_on_an_earlier_day_lists_only_the_units_that_had_acted_by_then(
    registry: Registry,
) -> None:
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _act(registry, member, date(2025, 6, 20), unit=RESIDENCE)
    models = _models(registry)

    assert models.case(case, date(2025, 6, 10))["participants"] == [DANING]
    assert models.case(case, date(2025, 6, 20))["participants"] == [DANING, RESIDENCE]


def test_a_referral_taken_on_in_time_then_declined_late_is_judged_from_the_decline(
    registry: Registry,
) -> None:
    """Hongkou acted in the case on the 3rd (it took the referral on), then declined it on
    the 20th: the case is not dropped from the 16th as if never taken on; the first
    responder has 14 days from the decline to act again."""
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")
    _act(registry, member, date(2025, 6, 3), unit=HONGKOU)
    _decline(registry, member, date(2025, 6, 20))
    models = _models(registry)

    assert _outcome(models, case, date(2025, 6, 19)) == ("open", None)
    assert _outcome(models, case, date(2025, 7, 4)) == ("open", None)
    assert _outcome(models, case, date(2025, 7, 5)) == ("dropped", "2025-07-05")


def test_an_entry_back_dated_to_before_a_decline_is_not_acting_again_after_it(
    registry: Registry,
) -> None:
    """Declined on the 5th; the first responder's next entry, recorded afterwards but
    dated the 4th, is not an answer to the decline: declined and left from the 20th."""
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")
    _decline(registry, member, date(2025, 6, 5))
    _act(registry, member, date(2025, 6, 4))
    models = _models(registry)

    assert _outcome(models, case, date(2025, 6, 19)) == ("open", None)
    assert _outcome(models, case, date(2025, 6, 30)) == ("dropped", "2025-06-20")


def _referral_states(models: ReadModels, case: UUID, on: date) -> list[str]:
    return [r["state"] for r in models.case(case, on)["referrals"]]


def test_a_warm_referral_still_pending_when_the_case_is_withdrawn_does_not_go_cold(
    registry: Registry,
) -> None:
    """Nobody can act in a closed case: the referral's 14 days stop at the withdrawal."""
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")
    registry.withdraw_case(as_unit(DANING), member, occurred_on=date(2025, 6, 6), reason="出国")
    models = _models(registry)

    assert _outcome(models, case, date(2025, 9, 1)) == ("withdrawn", "2025-06-06")
    assert _referral_states(models, case, date(2025, 9, 1)) == ["overtaken"]
    assert _r5(models, date(2025, 9, 1)) == set()
    # Judged before the withdrawal, it was pending.
    assert _referral_states(models, case, date(2025, 6, 5)) == ["pending"]


def test_a_case_closed_by_an_activity_while_a_warm_referral_was_pending_is_seen_through(
    registry: Registry,
) -> None:
    """The first responder took the member in itself before Hongkou answered."""
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")
    registry.attach_member(
        as_unit(DANING), member, occurred_on=date(2025, 6, 8), basis="other",
        override_reason="原介绍信遗失，经组织部同意接收",
    )  # fmt: skip
    registry.attend_activity(as_unit(DANING), member, occurred_on=date(2025, 6, 10), kind="支部会")
    models = _models(registry)

    assert _outcome(models, case, date(2025, 9, 1)) == ("seen_through", "2025-06-10")
    assert _r5(models, date(2025, 9, 1)) == set()


def test_a_decline_still_within_its_14_days_when_the_case_closes_is_not_left(
    registry: Registry,
) -> None:
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")
    _decline(registry, member, date(2025, 6, 5))
    registry.withdraw_case(as_unit(RESIDENCE), member, occurred_on=date(2025, 6, 12), reason="出国")
    models = _models(registry)

    assert _outcome(models, case, date(2025, 9, 1)) == ("withdrawn", "2025-06-12")
    assert _referral_states(models, case, date(2025, 9, 1)) == ["declined"]


def test_a_referral_gone_cold_before_the_case_closed_still_drops_it(registry: Registry) -> None:
    member = _member(registry)
    case = _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")
    registry.withdraw_case(as_unit(DANING), member, occurred_on=date(2025, 6, 20), reason="出国")
    models = _models(registry)

    assert _outcome(models, case, date(2025, 9, 1)) == ("dropped", "2025-06-16")
    assert _referral_states(models, case, date(2025, 9, 1)) == ["cold"]


def test_an_override_stays_open_on_the_record_until_its_entry_is_voided(
    registry: Registry,
) -> None:
    """Flexibility used (R1 basis `other`) is nothing to put right: never resolved, listed
    among the open findings; voiding the attachment that used it takes the finding away."""
    member = _member(registry)
    _case(registry, member, date(2025, 6, 1))
    attached = registry.attach_member(
        as_unit(DANING), member, occurred_on=date(2025, 6, 8), basis="other",
        override_reason="原介绍信遗失，经组织部同意接收",
    )  # fmt: skip
    models = _models(registry)
    later = date(2026, 6, 1)

    (found,) = models.findings(on=later, rule="R1")
    assert (found.severity, found.since, found.resolved) == ("override", date(2025, 6, 8), None)
    assert [f.rule for f in models.findings(on=later, open_only=True, rule="R1")] == ["R1"]
    assert models.findings(on=later, resolved_only=True, rule="R1") == []

    assert attached.position is not None
    registry.void_entry(as_unit(DANING), member, occurred_on=date(2025, 6, 9),
                        position=attached.position, reason="误录")
    assert _models(registry).findings(on=later, rule="R1") == []


def test_dues_for_months_before_enrolment_entered_that_day_are_no_lost_stretch(
    registry: Registry,
) -> None:
    """Arrears entered on the enrolment day cover months before it: the member is heard
    from that day, not lost since six months after those months ended."""
    member = _member(registry)  # enrolled 2020-01-01
    registry.receive_dues(
        as_unit(RESIDENCE), member, occurred_on=date(2020, 1, 1), months_from="2019-01",
        months_to="2019-06", amount="6.00",
    )  # fmt: skip
    models = _models(registry)

    assert _spans(models, date(2020, 6, 30), "R7", member) == []
    assert _spans(models, date(2020, 7, 2), "R7", member) == [("2020-07-02", None)]


def test_word_on_the_day_a_stretch_would_begin_leaves_the_last_real_stretch_standing(
    registry: Registry,
) -> None:
    """A contact on the very first day of a stretch ends it before it lasted a day: it is
    no finding, and does not hide the stretch before it."""
    member = _member(registry)  # enrolled 2020-01-01: lost from 2020-07-02
    contact = as_unit(RESIDENCE)
    registry.make_contact(contact, member, occurred_on=date(2021, 1, 10), channel="phone",
                          note="找到了")  # ends 2020-07-02 .. 2021-01-10
    registry.make_contact(contact, member, occurred_on=date(2021, 7, 11), channel="phone",
                          note="按时联系")  # the day the next stretch would begin
    models = _models(registry)

    assert _spans(models, date(2021, 8, 1), "R7", member) == [("2020-07-02", "2021-01-10")]


def test_a_referral_taken_on_stays_in_the_addressees_queue_until_it_sees_the_case_on(
    registry: Registry,
) -> None:
    """Accepted, the referral leaves 待办 as a request and stays there as a case taken on
    (已接手) — or the case would vanish from every list the addressee has — until the
    member is attached or the addressee passes the case on."""
    member = _member(registry)
    _case(registry, member, date(2025, 6, 1))
    _refer(registry, member, date(2025, 6, 1), "warm")
    registry.accept_referral(as_unit(HONGKOU), member, occurred_on=date(2025, 6, 3))
    models = _models(registry)

    def todo(on: date) -> list[tuple[str, Any]]:
        return [(i["kind"], i.get("taken_on")) for i in models.unit_queue(HONGKOU, on)["todo"]]

    assert todo(date(2025, 6, 2)) == [("referral", None)]  # asked, not yet answered
    assert todo(date(2025, 6, 10)) == [("referral", "2025-06-03")]
    assert models.unit_queue(DANING, date(2025, 6, 10))["waiting_on_others"] == []
    registry.refer_case(as_unit(HONGKOU), member, occurred_on=date(2025, 6, 12),
                        to_unit_id=RESIDENCE, handover="warm", reason="住在街道")
    models = _models(registry)
    assert todo(date(2025, 6, 11)) == [("referral", "2025-06-03")]
    assert todo(date(2025, 6, 13)) == []  # passed on: the residence centre's now
    registry.accept_referral(as_unit(RESIDENCE), member, occurred_on=date(2025, 6, 14))
    registry.attach_member(as_unit(RESIDENCE), member, occurred_on=date(2025, 6, 20),
                           basis="other", override_reason="本人要求")
    models = _models(registry)
    residence = models.unit_queue(RESIDENCE, date(2025, 6, 15))["todo"]
    assert [i.get("taken_on") for i in residence] == ["2025-06-14"]
    assert models.unit_queue(RESIDENCE, date(2025, 6, 21))["todo"] == []  # attached
