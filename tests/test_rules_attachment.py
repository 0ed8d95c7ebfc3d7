"""R1 (attachment basis) and the attachment side of R2 (no limbo), through the Registry.

The usual scene: a full member held by factory-superior walks in at daning-center
(上海·闸北); factory-superior sends letter 2026-001 to daning-center on 2026-03-10,
and daning-center attaches the member on 2026-03-20.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

import pytest

from domain.member_events import Attached
from domain.registry import Registry
from domain.values import Basis
from tests.scenarios import (
    LETTER_NO,
    enrol,
    issue_letter,
    last_event,
    letter_status,
    member_with_letter_out,
    open_case,
    record_evidence,
    refused,
)
from tests.support import as_unit, register_article_units

EVIDENCE_ON = date(2026, 3, 12)
ATTACH_ON = date(2026, 3, 20)


def attach(
    registry: Registry,
    member: UUID,
    basis: str,
    *,
    by: str = "daning-center",
    on: date = ATTACH_ON,
    **fields: Any,
) -> Attached:
    """``by`` takes the member in; returns the Attached event it stored."""
    registry.attach_member(as_unit(by), member, occurred_on=on, basis=basis, **fields)
    return last_event(registry, member, Attached)


def evidence(registry: Registry, member: UUID, kind: str, **fields: Any) -> int:
    """daning-center records a document on 2026-03-12; returns its log position."""
    return record_evidence(registry, member, kind, on=EVIDENCE_ON, **fields)


# --- R1: a basis needs valid evidence ------------------------------------------


def test_attaching_on_a_basis_without_evidence_is_refused(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    error = refused(registry, "R1_BASIS_WITHOUT_EVIDENCE",
                    lambda: attach(registry, member, "workplace"))

    assert error.field == "basis"


@pytest.mark.parametrize(
    ("basis", "kind"),
    [
        ("workplace", "labour_contract"),
        ("workplace", "employment_proof"),
        ("residence", "lease"),
        ("residence", "property_certificate"),
        ("household", "household_registration"),
    ],
)
def test_attaching_is_accepted_with_evidence_for_the_basis(
    registry: Registry, basis: str, kind: str
) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, kind)

    attached = attach(registry, member, basis)

    assert attached.basis is Basis(basis)
    assert attached.overridden_rules == []
    assert attached.override_reason is None
    assert registry.member(member).holder_unit_id == "daning-center"


def test_evidence_for_another_basis_does_not_count(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "household_registration")

    refused(registry, "R1_BASIS_WITHOUT_EVIDENCE", lambda: attach(registry, member, "residence"))


def test_household_basis_stands_on_the_unit_region_equal_to_the_household_region(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry, household_region="上海·闸北")

    attached = attach(registry, member, "household")

    assert attached.basis is Basis.HOUSEHOLD
    assert attached.overridden_rules == []


def test_household_basis_in_another_region_without_registration_is_refused(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry, household_region="上海·虹口")

    refused(registry, "R1_BASIS_WITHOUT_EVIDENCE", lambda: attach(registry, member, "household"))


def test_evidence_expired_before_the_attachment_does_not_count(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "lease", valid_until=date(2026, 3, 19))

    refused(registry, "R1_BASIS_WITHOUT_EVIDENCE", lambda: attach(registry, member, "residence"))


def test_evidence_counts_up_to_and_including_its_valid_until(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "lease", valid_until=ATTACH_ON)

    attached = attach(registry, member, "residence")

    assert attached.overridden_rules == []


def test_evidence_recorded_after_the_attachment_date_does_not_count(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    record_evidence(registry, member, "lease", on=date(2026, 3, 25))

    refused(registry, "R1_BASIS_WITHOUT_EVIDENCE",
            lambda: attach(registry, member, "residence", on=date(2026, 3, 20)))


def test_voided_evidence_does_not_count(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    position = evidence(registry, member, "lease")
    registry.void_entry(as_unit("daning-center"), member, occurred_on=date(2026, 3, 13),
                        position=position, reason="租赁合同系伪造")

    refused(registry, "R1_BASIS_WITHOUT_EVIDENCE", lambda: attach(registry, member, "residence"))


def test_evidence_from_an_earlier_case_does_not_count(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member, on=date(2026, 1, 5))
    record_evidence(registry, member, "lease", on=date(2026, 1, 6))
    registry.withdraw_case(as_unit("daning-center"), member, occurred_on=date(2026, 1, 7),
                           reason="本人暂不办理")
    open_case(registry, member)
    issue_letter(registry, member)

    refused(registry, "R1_BASIS_WITHOUT_EVIDENCE", lambda: attach(registry, member, "residence"))


def test_basis_other_without_a_reason_is_refused(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    error = refused(registry, "R1_BASIS_WITHOUT_EVIDENCE",
                    lambda: attach(registry, member, "other"))

    assert error.field == "override_reason"


def test_basis_other_with_a_reason_is_an_r1_override_on_the_record(registry: Registry) -> None:
    member = member_with_letter_out(registry)

    attached = attach(registry, member, "other", override_reason="本人主动要求转入")

    assert attached.basis is Basis.OTHER
    assert attached.overridden_rules == ["R1"]
    assert attached.override_reason == "本人主动要求转入"
    assert attached.letter_no == LETTER_NO


@pytest.mark.parametrize(
    ("kinds", "basis"),
    [
        (["labour_contract", "lease"], "residence"),
        (["employment_proof"], "household"),
        (["property_certificate", "household_registration"], "household"),
    ],
)
def test_a_lower_basis_while_a_higher_one_is_evidenced_needs_a_reason(
    registry: Registry, kinds: list[str], basis: str
) -> None:
    member = member_with_letter_out(registry, household_region="上海·闸北")
    for kind in kinds:
        evidence(registry, member, kind)

    error = refused(registry, "R1_LOWER_BASIS_WITHOUT_REASON",
                    lambda: attach(registry, member, basis))

    assert error.field == "override_reason"


def test_a_lower_basis_with_a_reason_is_an_r1_override_on_the_record(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "labour_contract")
    evidence(registry, member, "lease")

    attached = attach(registry, member, "residence", override_reason="单位无党组织，随居住地管理")

    assert attached.basis is Basis.RESIDENCE
    assert attached.overridden_rules == ["R1"]
    assert attached.override_reason == "单位无党组织，随居住地管理"


def test_expired_evidence_for_a_higher_basis_does_not_make_a_basis_lower(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "labour_contract", valid_until=date(2026, 3, 15))
    evidence(registry, member, "lease")

    attached = attach(registry, member, "residence")

    assert attached.overridden_rules == []


def test_a_reason_does_not_stand_in_for_missing_evidence_on_a_named_basis(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry)

    refused(registry, "R1_BASIS_WITHOUT_EVIDENCE",
            lambda: attach(registry, member, "workplace", override_reason="口头说明在此工作"))


# --- R2: attach only where a letter is addressed -----------------------------------


def test_attaching_at_the_addressee_uses_the_letter_and_moves_the_holder(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "lease")

    attached = attach(registry, member, "residence")

    state = registry.member(member).state
    assert attached.letter_no == LETTER_NO
    assert state.holder_unit_id == "daning-center"
    assert state.holder_since == ATTACH_ON
    assert state.in_transit_to is None
    assert letter_status(registry, member) == "attached"


def test_attaching_at_a_unit_no_outstanding_letter_names_is_refused(registry: Registry) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "lease")

    error = refused(registry, "R2_NOT_ADDRESSED",
                    lambda: attach(registry, member, "residence", by="hongkou-center"))

    assert error.field == "letter_no"


def test_attaching_away_from_the_holder_with_no_letter_out_is_refused(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member)
    evidence(registry, member, "lease")

    refused(registry, "R2_NOT_ADDRESSED", lambda: attach(registry, member, "residence"))


def test_attaching_on_a_letter_number_that_is_not_the_outstanding_one_is_refused(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "lease")

    refused(registry, "R2_NOT_ADDRESSED",
            lambda: attach(registry, member, "residence", letter_no="2026-999"))


def test_attaching_without_the_letter_with_a_reason_is_an_r2_override_on_the_record(
    registry: Registry,
) -> None:
    member = member_with_letter_out(registry)
    evidence(registry, member, "lease")

    attached = attach(registry, member, "residence", by="hongkou-center",
                      override_reason="介绍信遗失，经原单位电话确认")

    state = registry.member(member).state
    assert attached.overridden_rules == ["R2"]
    assert attached.override_reason == "介绍信遗失，经原单位电话确认"
    assert state.holder_unit_id == "hongkou-center"
    assert letter_status(registry, member) == "superseded"


def test_an_attachment_cannot_be_dated_before_its_case_opened(registry: Registry) -> None:
    """Papers may precede the member's inquiry; being taken in may not (the scorecard's
    days from the first inquiry to the attachment would be negative)."""
    register_article_units(registry)
    member = enrol(registry)
    open_case(registry, member, on=date(2026, 3, 10))
    daning = as_unit("daning-center")

    error = refused(registry, "INVALID_INPUT", lambda: registry.attach_member(
        daning, member, occurred_on=date(2026, 3, 5), basis="other", override_reason="本人要求",
    ))  # fmt: skip

    assert error.field == "occurred_on" and "on or after 2026-03-10" in error.message
    registry.attach_member(daning, member, occurred_on=date(2026, 3, 10), basis="other",
                           override_reason="本人要求")
