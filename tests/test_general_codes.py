"""The general refusal codes: units, members, dates, versions, letters, voids, input."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.member_events import (
    EntryVoided,
    EvidenceRecorded,
    InquiryReceived,
    LetterExpired,
    LetterIssued,
    MemberEnrolled,
)
from domain.registry import Registry
from tests.conftest import TODAY
from tests.scenarios import (
    ENROLLED_ON,
    INQUIRY_ON,
    LETTER_NO,
    enrol,
    id_number,
    issue_letter,
    last_event,
    letter_status,
    member_with_letter_out,
    open_case,
    position_of,
    record_evidence,
    refused,
)
from tests.support import ADMIN, as_unit, register_article_units

daning = as_unit("daning-center")
hongkou = as_unit("hongkou-center")
factory = as_unit("factory-superior")
LETTER_VALID_UNTIL = date(2026, 6, 8)  # 2026-03-10 + 90 days


def member_in_case(registry: Registry) -> UUID:
    """A full member held by factory-superior with a case open at daning-center."""
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member)
    return member


def inquire(registry: Registry, member: UUID, *, by: str = "daning-center",
            on: date = INQUIRY_ON) -> Any:
    return registry.receive_inquiry(as_unit(by), member, occurred_on=on, channel="walk_in",
                                    summary="咨询")


# --- units -------------------------------------------------------------------------


def test_an_unknown_acting_unit_is_refused(registry: Registry) -> None:
    member = member_in_case(registry)

    error = refused(registry, "UNKNOWN_UNIT", lambda: inquire(registry, member, by="nowhere"))

    assert error.field == "unit_id"


@pytest.mark.parametrize(
    "code", ["大宁中心", "daning center", "daning/center", "ｄａｎｉｎｇ", ".", "..", "-x"]
)
def test_a_unit_code_is_ascii_letters_digits_and_dashes(registry: Registry, code: str) -> None:
    register_article_units(registry)

    error = refused(registry, "INVALID_INPUT", lambda: registry.register_unit(
        ADMIN, code=code, name="大宁中心", kind="service_center", region="上海",
        occurred_on=date(2020, 1, 1)))

    assert error.field == "code"


def test_a_unit_cannot_dissolve_itself(registry: Registry) -> None:
    # Dissolving revokes the unit's tokens: an admin unit dissolving itself would lock out
    # the people who record what follows.
    register_article_units(registry)

    for code in (ADMIN.unit_id, f" {ADMIN.unit_id} "):  # padded, it is still the same unit
        error = refused(registry, "SELF_DISSOLUTION",
                        lambda: registry.dissolve_unit(ADMIN, code,  # noqa: B023
                                                       occurred_on=date(2020, 1, 1)))
        assert error.field == "unit_id"
    assert registry.unit(ADMIN.unit_id).dissolved_on is None


def test_an_unknown_addressee_is_refused(registry: Registry) -> None:
    member = member_in_case(registry)

    error = refused(registry, "UNKNOWN_UNIT",
                    lambda: issue_letter(registry, member, to="nowhere"))

    assert error.field == "to_unit_id"


def test_a_dissolved_unit_cannot_act(registry: Registry) -> None:
    member = member_in_case(registry)
    registry.dissolve_unit(ADMIN, "hongkou-center", occurred_on=date(2026, 1, 1))

    error = refused(registry, "UNIT_DISSOLVED",
                    lambda: inquire(registry, member, by="hongkou-center"))

    assert error.field == "unit_id"


def test_a_dissolved_unit_cannot_act_on_its_dissolution_day(registry: Registry) -> None:
    member = member_in_case(registry)
    registry.dissolve_unit(ADMIN, "hongkou-center", occurred_on=INQUIRY_ON)

    refused(registry, "UNIT_DISSOLVED", lambda: inquire(registry, member, by="hongkou-center"))


def test_a_dissolved_unit_s_earlier_acts_may_still_be_entered(registry: Registry) -> None:
    member = member_in_case(registry)
    registry.dissolve_unit(ADMIN, "hongkou-center", occurred_on=date(2026, 4, 1))

    outcome = inquire(registry, member, by="hongkou-center", on=date(2026, 3, 31))

    assert outcome.case_id is not None


def test_a_letter_to_a_dissolved_unit_is_refused(registry: Registry) -> None:
    member = member_in_case(registry)
    registry.dissolve_unit(ADMIN, "hongkou-center", occurred_on=date(2026, 1, 1))

    error = refused(registry, "UNIT_DISSOLVED",
                    lambda: issue_letter(registry, member, to="hongkou-center"))

    assert error.field == "to_unit_id"


def test_a_referral_to_a_dissolved_unit_is_refused(registry: Registry) -> None:
    member = member_in_case(registry)
    registry.dissolve_unit(ADMIN, "hongkou-center", occurred_on=date(2026, 1, 1))

    refused(registry, "UNIT_DISSOLVED",
            lambda: registry.refer_case(daning, member, occurred_on=date(2026, 3, 3),
                                        to_unit_id="hongkou-center", handover="warm",
                                        reason="居住在虹口"))


def test_a_member_cannot_be_enrolled_into_a_dissolved_unit(registry: Registry) -> None:
    register_article_units(registry)
    registry.dissolve_unit(ADMIN, "zb-factory", occurred_on=date(2004, 3, 31))

    error = refused(registry, "UNIT_DISSOLVED",
                    lambda: enrol(registry, by="factory-superior", holder_unit_id="zb-factory"))

    assert error.field == "holder_unit_id"


# --- members -------------------------------------------------------------------------


def test_the_same_id_number_cannot_be_enrolled_twice(registry: Registry) -> None:
    register_article_units(registry)
    enrol(registry, by="factory-superior", n=7)

    error = refused(registry, "DUPLICATE_MEMBER", lambda: enrol(registry, by="sh-univ", n=7))

    assert error.field == "id_number"


def test_a_lower_case_x_is_the_same_id_number(registry: Registry) -> None:
    register_article_units(registry)
    registry.enrol_member(factory, name="甲", id_number="11010119800101001X", standing="full",
                          household_region="上海", occurred_on=ENROLLED_ON)

    refused(registry, "DUPLICATE_MEMBER",
            lambda: registry.enrol_member(daning, name="甲", id_number="11010119800101001x",
                                          standing="full", household_region="上海",
                                          occurred_on=ENROLLED_ON))


def test_full_width_digits_are_the_same_id_number(registry: Registry) -> None:
    # What a Chinese input method types: the same person, not a new one (nor a crash).
    register_article_units(registry)
    registry.enrol_member(factory, name="乙", id_number="110101198001010028", standing="full",
                          household_region="上海", occurred_on=ENROLLED_ON)

    full_width = "１１０１０１１９８００１０１００２８"
    refused(registry, "DUPLICATE_MEMBER",
            lambda: registry.enrol_member(daning, name="乙", id_number=full_width,
                                          standing="full", household_region="上海",
                                          occurred_on=ENROLLED_ON))
    assert registry.member_id_for(full_width) == registry.member_id_for("110101198001010028")


@pytest.mark.parametrize("id_number", ["١١٠١٠١١٩٨٠٠١٠١٠٠٢٨", "1101011980010100"])
def test_an_id_number_in_other_digits_is_refused_not_a_crash(
    registry: Registry, id_number: str
) -> None:
    register_article_units(registry)

    error = refused(registry, "INVALID_INPUT",
                    lambda: registry.enrol_member(daning, name="丙", id_number=id_number,
                                                  standing="full", household_region="上海",
                                                  occurred_on=ENROLLED_ON))

    assert error.field == "id_number"


def test_an_unknown_member_is_refused(registry: Registry) -> None:
    register_article_units(registry)

    error = refused(registry, "UNKNOWN_MEMBER", lambda: inquire(registry, uuid.uuid4()))

    assert error.field == "member_id"


def test_an_unknown_case_is_refused(registry: Registry) -> None:
    member = member_in_case(registry)

    error = refused(registry, "UNKNOWN_CASE",
                    lambda: registry.record_evidence(daning, member, occurred_on=INQUIRY_ON,
                                                     kind="lease", reference="L-1",
                                                     case_id=uuid.uuid4()))

    assert error.field == "case_id"


def test_only_the_holder_confirms_membership(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry, by="sh-univ", standing="probationary",
                   probation_started_on=ENROLLED_ON)

    refused(registry, "NOT_HOLDER",
            lambda: registry.confirm_membership(daning, member, occurred_on=date(2021, 1, 6)))


def test_a_full_member_cannot_be_confirmed_again(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)

    refused(registry, "NOT_PROBATIONARY",
            lambda: registry.confirm_membership(factory, member, occurred_on=date(2021, 1, 6)))


# --- dates and versions --------------------------------------------------------------


def test_a_date_in_the_future_is_refused(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)

    error = refused(registry, "INVALID_DATE",
                    lambda: inquire(registry, member, on=TODAY + timedelta(days=1)))

    assert error.field == "occurred_on"


def test_today_is_not_in_the_future(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)

    outcome = inquire(registry, member, on=TODAY)

    assert outcome.case_id is not None


def test_an_enrolment_in_the_future_is_refused(registry: Registry) -> None:
    register_article_units(registry)

    refused(registry, "INVALID_DATE", lambda: enrol(registry, on=TODAY + timedelta(days=1)))


def test_a_date_before_the_enrolment_is_refused(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)

    error = refused(registry, "INVALID_DATE",
                    lambda: inquire(registry, member, on=ENROLLED_ON - timedelta(days=1)))

    assert error.field == "occurred_on"


def test_a_stale_expected_version_is_refused(registry: Registry) -> None:
    member = member_in_case(registry)
    version = registry.member(member).version

    error = refused(registry, "STALE_VERSION",
                    lambda: registry.record_evidence(daning, member, occurred_on=INQUIRY_ON,
                                                     kind="lease", reference="L-1",
                                                     expected_version=version - 1))

    assert error.field == "expected_version"


def test_the_current_expected_version_is_accepted(registry: Registry) -> None:
    member = member_in_case(registry)
    version = registry.member(member).version

    outcome = registry.record_evidence(daning, member, occurred_on=INQUIRY_ON, kind="lease",
                                       reference="L-1", expected_version=version)

    assert outcome.version == version + 1


# --- letter numbers ------------------------------------------------------------------


def two_members_held_by_the_factory(registry: Registry) -> tuple[UUID, UUID]:
    """Members 1 and 2, both held by factory-superior, each with a case open since
    2025-12-01; member 1 already has letter 2026-001 of factory-superior."""
    register_article_units(registry)
    first, second = enrol(registry, n=1), enrol(registry, n=2)
    open_case(registry, first, on=date(2025, 12, 1))
    open_case(registry, second, on=date(2025, 12, 1))
    issue_letter(registry, first)
    return first, second


def test_a_letter_number_the_issuer_used_this_year_is_refused(registry: Registry) -> None:
    _, second = two_members_held_by_the_factory(registry)

    error = refused(registry, "LETTER_NO_TAKEN",
                    lambda: issue_letter(registry, second, to="hongkou-center",
                                         on=date(2026, 3, 11)))

    assert error.field == "letter_no"


def test_the_same_letter_number_in_another_year_is_accepted(registry: Registry) -> None:
    _, second = two_members_held_by_the_factory(registry)

    issue_letter(registry, second, to="hongkou-center", on=date(2025, 12, 30))

    assert last_event(registry, second, LetterIssued).letter_no == LETTER_NO


def test_the_same_letter_number_from_another_issuer_is_accepted(registry: Registry) -> None:
    member_with_letter_out(registry)
    other = enrol(registry, by="sh-univ", n=2)
    open_case(registry, other)

    issue_letter(registry, other, by="sh-univ", to="hongkou-center")

    assert last_event(registry, other, LetterIssued).letter_no == LETTER_NO


# --- answering, voiding and expiring letters ---------------------------------------------


def test_only_the_addressee_declines_a_letter(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    refused(registry, "NOT_ADDRESSEE",
            lambda: registry.decline_letter(hongkou, member, occurred_on=date(2026, 3, 12),
                                            letter_no=LETTER_NO, reason_code="not_our_area"))


def test_only_the_addressee_of_a_referral_answers_it(registry: Registry) -> None:
    member = member_in_case(registry)
    registry.refer_case(daning, member, occurred_on=date(2026, 3, 3),
                        to_unit_id="hongkou-center", handover="warm", reason="居住在虹口")

    refused(registry, "NOT_ADDRESSEE",
            lambda: registry.accept_referral(as_unit("sh-residence-center"), member,
                                             occurred_on=date(2026, 3, 4)))


def test_only_the_issuer_voids_a_letter(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    refused(registry, "NOT_ISSUER",
            lambda: registry.void_letter(daning, member, occurred_on=date(2026, 3, 12),
                                         letter_no=LETTER_NO, reason="遗失"))


def test_only_the_issuer_records_a_letter_expired(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    refused(registry, "NOT_ISSUER",
            lambda: registry.expire_letter(daning, member, occurred_on=date(2026, 6, 9),
                                           letter_no=LETTER_NO))


def test_a_declined_letter_can_no_longer_be_voided(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    registry.decline_letter(daning, member, occurred_on=date(2026, 3, 12), letter_no=LETTER_NO,
                            reason_code="no_residence_evidence")

    error = refused(registry, "LETTER_NOT_OUTSTANDING",
                    lambda: registry.void_letter(factory, member, occurred_on=date(2026, 3, 13),
                                                 letter_no=LETTER_NO, reason="重新开具"))

    assert error.field == "letter_no"


def test_a_letter_cannot_be_declined_twice(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    registry.decline_letter(daning, member, occurred_on=date(2026, 3, 12), letter_no=LETTER_NO,
                            reason_code="not_our_area")

    refused(registry, "LETTER_NOT_OUTSTANDING",
            lambda: registry.decline_letter(daning, member, occurred_on=date(2026, 3, 13),
                                            letter_no=LETTER_NO, reason_code="not_our_area"))


def test_a_letter_is_not_expired_on_its_valid_until_day(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    error = refused(registry, "LETTER_NOT_EXPIRED",
                    lambda: registry.expire_letter(factory, member,
                                                   occurred_on=LETTER_VALID_UNTIL,
                                                   letter_no=LETTER_NO))

    assert error.field == "occurred_on"


def test_a_letter_is_recorded_expired_the_day_after_its_valid_until(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    registry.expire_letter(factory, member, occurred_on=LETTER_VALID_UNTIL + timedelta(days=1),
                           letter_no=LETTER_NO)

    assert last_event(registry, member, LetterExpired).letter_no == LETTER_NO
    assert letter_status(registry, member) == "expired"


def test_a_case_is_attached_only_once(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 20), basis="other",
                           override_reason="本人要求")

    refused(registry, "ALREADY_ATTACHED",
            lambda: registry.attach_member(hongkou, member, occurred_on=date(2026, 3, 21),
                                           basis="other", override_reason="本人要求"))


# --- voiding entries --------------------------------------------------------------------


def void(registry: Registry, member: UUID, position: int, *, by: str = "daning-center"
         ) -> Callable[[], Any]:
    """A void of the entry at ``position`` by ``by``, ready to run."""
    return lambda: registry.void_entry(as_unit(by), member, occurred_on=date(2026, 3, 20),
                                       position=position, reason="更正")


def test_the_enrolment_cannot_be_voided(registry: Registry) -> None:
    member = member_in_case(registry)

    error = refused(registry, "NOT_VOIDABLE",
                    void(registry, member, position_of(registry, member, MemberEnrolled),
                         by="factory-superior"))

    assert error.field == "voided"


def test_a_letter_is_withdrawn_by_a_letter_void_not_an_entry_void(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    refused(registry, "NOT_VOIDABLE",
            void(registry, member, position_of(registry, member, LetterIssued),
                 by="factory-superior"))


def test_the_inquiry_that_opened_the_case_cannot_be_voided(registry: Registry) -> None:
    member = member_in_case(registry)

    refused(registry, "NOT_VOIDABLE",
            void(registry, member, position_of(registry, member, InquiryReceived)))


def test_a_later_inquiry_can_be_voided(registry: Registry) -> None:
    member = member_in_case(registry)
    inquire(registry, member, by="hongkou-center", on=date(2026, 3, 5))

    void(registry, member, position_of(registry, member, InquiryReceived),
         by="hongkou-center")()

    assert last_event(registry, member, EntryVoided).reason == "更正"


def test_only_the_unit_that_recorded_an_entry_voids_it(registry: Registry) -> None:
    member = member_in_case(registry)
    position = record_evidence(registry, member, "lease")

    refused(registry, "NOT_VOIDABLE", void(registry, member, position, by="hongkou-center"))


def test_an_entry_cannot_be_voided_twice(registry: Registry) -> None:
    member = member_in_case(registry)
    position = record_evidence(registry, member, "lease")
    void(registry, member, position)()

    refused(registry, "NOT_VOIDABLE", void(registry, member, position))


def test_a_void_cannot_itself_be_voided(registry: Registry) -> None:
    member = member_in_case(registry)
    void(registry, member, record_evidence(registry, member, "lease"))()

    refused(registry, "NOT_VOIDABLE",
            void(registry, member, position_of(registry, member, EntryVoided)))


def test_entries_of_an_earlier_case_cannot_be_voided_once_a_later_case_exists(
    registry: Registry,
) -> None:
    member = member_in_case(registry)
    position = record_evidence(registry, member, "lease")
    registry.withdraw_case(daning, member, occurred_on=date(2026, 3, 3), reason="本人撤回")
    open_case(registry, member, on=date(2026, 3, 4))

    refused(registry, "NOT_VOIDABLE", void(registry, member, position))


def test_a_position_that_is_not_this_member_s_entry_is_unknown(registry: Registry) -> None:
    member = member_in_case(registry)
    other = enrol(registry, n=2)

    refused(registry, "UNKNOWN_ENTRY",
            void(registry, member, position_of(registry, other, MemberEnrolled),
                 by="factory-superior"))


def test_a_voided_entry_stays_in_the_trail(registry: Registry) -> None:
    member = member_in_case(registry)
    position = record_evidence(registry, member, "lease")

    void(registry, member, position)()

    history = registry.member(member).history
    assert any(isinstance(e, EvidenceRecorded) for e in history)
    assert last_event(registry, member, EntryVoided).voided == position
    case = registry.member(member).state.open_case
    assert case is not None
    assert case.evidence == []


# --- input ------------------------------------------------------------------------------

BAD_ENUMS: dict[str, tuple[str, Callable[[Registry, UUID], Any]]] = {
    "channel": ("channel", lambda r, m: r.receive_inquiry(
        daning, m, occurred_on=INQUIRY_ON, channel="fax", summary="传真咨询")),
    "contact channel": ("channel", lambda r, m: r.make_contact(
        daning, m, occurred_on=INQUIRY_ON, channel="pigeon", note="飞鸽")),
    "evidence kind": ("kind", lambda r, m: r.record_evidence(
        daning, m, occurred_on=INQUIRY_ON, kind="passport", reference="P-1")),
    "basis": ("basis", lambda r, m: r.attach_member(
        daning, m, occurred_on=date(2026, 3, 20), basis="friendship")),
    "handover": ("handover", lambda r, m: r.refer_case(
        daning, m, occurred_on=INQUIRY_ON, to_unit_id="hongkou-center", handover="lukewarm",
        reason="居住在虹口")),
    "reason_code": ("reason_code", lambda r, m: r.decline_letter(
        daning, m, occurred_on=date(2026, 3, 12), letter_no=LETTER_NO, reason_code="busy")),
    "outcome": ("outcome", lambda r, m: r.contact_origin(
        daning, m, occurred_on=INQUIRY_ON, contacted_name="原单位", outcome="maybe")),
    "standing": ("standing", lambda r, m: r.enrol_member(
        daning, name="乙", id_number=id_number(99), standing="candidate",
        household_region="上海", occurred_on=ENROLLED_ON)),
    "unit kind": ("kind", lambda r, m: r.register_unit(
        ADMIN, code="new-club", name="俱乐部", kind="club", region="上海",
        occurred_on=ENROLLED_ON)),
}


@pytest.mark.parametrize("case", BAD_ENUMS, ids=list(BAD_ENUMS))
def test_a_value_outside_a_vocabulary_is_refused_naming_the_field(
    registry: Registry, case: str
) -> None:
    field, command = BAD_ENUMS[case]
    member = member_with_letter_out(registry)

    error = refused(registry, "INVALID_INPUT", lambda: command(registry, member))

    assert error.field == field


def test_a_void_cannot_be_dated_before_the_entry_it_voids(registry: Registry) -> None:
    """A history as of a day between them would show a correction of nothing yet."""
    member = member_in_case(registry)
    position = record_evidence(registry, member, "lease", on=date(2026, 3, 10))

    error = refused(registry, "INVALID_INPUT", lambda: registry.void_entry(
        as_unit("daning-center"), member, occurred_on=date(2026, 3, 9), position=position,
        reason="更正",
    ))  # fmt: skip

    assert error.field == "occurred_on" and "2026-03-10" in error.message
