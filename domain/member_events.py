"""The events of a member's relationship stream (DESIGN.md "Events and fields").

Every event carries the acting unit (``unit_id``), the business date
(``occurred_on``), who recorded it (``recorded_by``) and the case it belongs
to (``case_id``, or None). ``evolve`` says what the event does to the folded
state; events never validate anything (rules run before an event exists).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.member_state import (
    Action,
    Case,
    Evidence,
    Hold,
    Holding,
    Inquiry,
    Letter,
    MemberState,
    Override,
    Referral,
    Report,
)
from domain.values import (
    Basis,
    Channel,
    ContactOutcome,
    DeclineReason,
    EvidenceKind,
    Handover,
    PriorContact,
    Standing,
    YearMonth,
)

# Every member event's topic starts with this (the library's topic is module:class).
TOPIC_PREFIX = f"{__name__}:"


class MemberEvent(Aggregate.Event):
    """Fields every member event carries."""

    unit_id: str
    occurred_on: date
    recorded_by: str
    case_id: UUID | None

    def apply(self, aggregate: Any) -> None:
        aggregate.absorb(self)

    def evolve(self, state: MemberState) -> None:
        """Change ``state`` as this event says; the base event changes nothing."""

    def case(self, state: MemberState) -> Case:
        """The case this event belongs to."""
        assert self.case_id is not None
        return state.cases[self.case_id]


class MemberEnrolled(Aggregate.Created, MemberEvent):
    class_version = 1
    name: str
    id_digest: str
    standing: Standing
    probation_started_on: date | None
    developing_unit_id: str | None
    household_region: str
    holder_unit_id: str

    def evolve(self, state: MemberState) -> None:
        state.name = self.name
        state.id_digest = self.id_digest
        state.standing = self.standing
        state.probation_started_on = self.probation_started_on
        state.developing_unit_id = self.developing_unit_id
        state.household_region = self.household_region
        state.enrolled_on = self.occurred_on
        state.holder_unit_id = self.holder_unit_id
        state.holder_since = self.occurred_on
        state.holdings.append(
            Holding(self.holder_unit_id, self.occurred_on, self.originator_version)
        )
        state.signs_of_life.append((self.occurred_on, self.occurred_on))


class MembershipConfirmed(MemberEvent):
    class_version = 1

    def evolve(self, state: MemberState) -> None:
        state.standing = Standing.FULL
        state.confirmed_on = self.occurred_on


class ProbationExtended(MemberEvent):
    class_version = 1
    months: int

    def evolve(self, state: MemberState) -> None:
        state.probation_extension_months += self.months
        state.extensions.append((self.occurred_on, self.months))


class InquiryReceived(MemberEvent):
    class_version = 1
    channel: Channel
    summary: str
    prior_contacts: list[PriorContact]

    def evolve(self, state: MemberState) -> None:
        assert self.case_id is not None
        case = state.cases.get(self.case_id)
        if case is None:
            case = Case(
                case_id=self.case_id, number=len(state.cases) + 1, opened_on=self.occurred_on
            )
            state.cases[self.case_id] = case
            state.open_case_id = self.case_id
        case.opened_on = min(case.opened_on, self.occurred_on)
        case.inquiries.append(Inquiry(self.unit_id, self.occurred_on, self.originator_version))
        case.enter(self.unit_id, self.occurred_on, self.originator_version)
        state.signs_of_life.append((self.occurred_on, self.occurred_on))


class CaseEvent(MemberEvent):
    """An action inside a case: it makes the acting unit a participant."""

    def evolve(self, state: MemberState) -> None:
        case = self.case(state)
        if isinstance(self, AFTER_CLOSE):  # a receipt or an expiry coming back: no work on it
            case.touch(self.unit_id, self.occurred_on, self.originator_version)
        else:
            case.enter(self.unit_id, self.occurred_on, self.originator_version)


class RequirementsNotified(CaseEvent):
    class_version = 1
    documents: list[str]


class EvidenceRecorded(CaseEvent):
    class_version = 1
    kind: EvidenceKind
    reference: str
    valid_until: date | None

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        self.case(state).evidence.append(
            Evidence(
                self.kind,
                self.reference,
                self.occurred_on,
                self.valid_until,
                self.originator_version,
            )
        )


class ArchiveReviewed(CaseEvent):
    class_version = 1
    finding: str


class OriginContacted(CaseEvent):
    class_version = 1
    contacted_unit_id: str | None
    contacted_name: str | None
    outcome: ContactOutcome


class UnitConsulted(CaseEvent):
    class_version = 1
    consulted_unit_id: str
    note: str

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        consulted = self.case(state).consulted
        if self.consulted_unit_id not in consulted:
            consulted.append(self.consulted_unit_id)


class IntroductionIssued(CaseEvent):
    class_version = 1
    to_unit_id: str | None
    to_name: str | None
    purpose: str


class TransferHeld(CaseEvent):
    class_version = 1
    rule: str
    until: date | None
    note: str

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        self.case(state).holds.append(Hold(self.rule, self.until, self.originator_version))


class PerformanceReportSent(CaseEvent):
    class_version = 1
    to_unit_id: str
    covering_from: date
    covering_to: date

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        self.case(state).reports.append(
            Report(self.unit_id, self.to_unit_id, self.occurred_on, self.originator_version)
        )


class LetterIssued(CaseEvent):
    class_version = 1
    letter_no: str
    to_unit_id: str
    valid_until: date
    dues_paid_through: YearMonth
    special_circumstances: str | None
    overridden_rules: list[str]

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        assert self.case_id is not None
        self.case(state).latest_letter_version = self.originator_version
        state.letters.append(
            Letter(
                letter_no=self.letter_no,
                issuer_unit_id=self.unit_id,
                to_unit_id=self.to_unit_id,
                issued_on=self.occurred_on,
                valid_until=self.valid_until,
                dues_paid_through=self.dues_paid_through,
                case_id=self.case_id,
                version=self.originator_version,
            )
        )
        if self.overridden_rules:
            state.overrides.append(
                Override(
                    "R3",
                    self.unit_id,
                    self.occurred_on,
                    self.originator_version,
                    self.case_id,
                    self.special_circumstances or "",
                )
            )


class LetterEvent(CaseEvent):
    """An event about one letter, named by its number."""

    letter_no: str

    def letter(self, state: MemberState) -> Letter | None:
        """The letter this event is about: the acting unit's own (the issuer acts on it)."""
        return state.find_letter(self.letter_no, issued_by=self.unit_id, in_case=self.case_id)

    def settle(self, state: MemberState, status: str) -> None:
        """Mark the letter as no longer outstanding."""
        letter = self.letter(state)
        if letter is not None and letter.outstanding:
            letter.status = status
            letter.settled_on = self.occurred_on


class LetterDeclined(LetterEvent):
    class_version = 1
    reason_code: DeclineReason
    note: str

    def letter(self, state: MemberState) -> Letter | None:
        """The letter declined: one addressed to the acting unit."""
        return state.find_letter(self.letter_no, addressed_to=self.unit_id, in_case=self.case_id)

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        self.settle(state, "declined")


class LetterVoided(LetterEvent):
    class_version = 1
    reason: str

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        self.settle(state, "voided")


class LetterExpired(LetterEvent):
    class_version = 1

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        self.settle(state, "expired")


class ReceiptReturned(LetterEvent):
    class_version = 1

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        letter = self.letter(state)
        # The first receipt counts: a repeat, stored before repeats were refused, does not
        # move the day R6 judges the receipt by. A receipt for an attachment since voided
        # answered that attachment, not one still to come.
        if (
            letter is not None
            and letter.status == "attached"
            and letter.receipt_returned_on is None
        ):
            letter.receipt_returned_on = self.occurred_on


class Referred(CaseEvent):
    class_version = 1
    to_unit_id: str
    handover: Handover
    reason: str

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        self.case(state).referrals.append(
            Referral(
                from_unit_id=self.unit_id,
                to_unit_id=self.to_unit_id,
                handover=self.handover,
                reason=self.reason,
                referred_on=self.occurred_on,
                version=self.originator_version,
            )
        )


def _answer_referral(event: CaseEvent, state: MemberState, answer: str) -> None:
    for referral in reversed(event.case(state).referrals):
        if referral.to_unit_id == event.unit_id and referral.answer is None:
            referral.answer = answer
            referral.answered_on = event.occurred_on
            referral.answered_version = event.originator_version
            return


class ReferralAccepted(CaseEvent):
    class_version = 1

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        _answer_referral(self, state, "accepted")


class ReferralDeclined(CaseEvent):
    class_version = 1
    reason_code: DeclineReason
    note: str

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        _answer_referral(self, state, "declined")


class Attached(CaseEvent):
    class_version = 1
    basis: Basis
    letter_no: str | None
    override_reason: str | None
    overridden_rules: list[str]

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        case = self.case(state)
        case.attached_unit_id = self.unit_id
        case.attached_on = self.occurred_on
        case.attached_basis = self.basis
        # R9 in business dates: an activity there recorded earlier, outside any case, yet
        # dated on or after this attachment is the case's first activity as much as one
        # recorded later.
        case.activities.extend(
            a
            for a in state.loose_activities
            if a.unit_id == self.unit_id and a.occurred_on >= self.occurred_on
        )
        _close_if_attended(state, case)
        for letter in state.letters:
            if letter.outstanding:
                used = letter.to_unit_id == self.unit_id
                letter.status = "attached" if used else "superseded"
                letter.settled_on = self.occurred_on
        if state.holder_unit_id != self.unit_id:
            state.holdings.append(Holding(self.unit_id, self.occurred_on, self.originator_version))
        state.holder_unit_id = self.unit_id
        state.holder_since = self.occurred_on
        for rule in self.overridden_rules:
            state.overrides.append(
                Override(
                    rule,
                    self.unit_id,
                    self.occurred_on,
                    self.originator_version,
                    self.case_id,
                    self.override_reason or "",
                )
            )


def _close_if_attended(state: MemberState, case: Case) -> None:
    case.close_if_attended()
    if not case.is_open and state.open_case_id == case.case_id:
        state.open_case_id = None


class CaseWithdrawn(CaseEvent):
    class_version = 1
    reason: str

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        case = self.case(state)
        case.closed_on = self.occurred_on
        case.closed_by = "withdrawn"
        if state.open_case_id == case.case_id:
            state.open_case_id = None


class LooseEvent(MemberEvent):
    """An event that may happen inside or outside a case (dues, activities, contact)."""

    def evolve(self, state: MemberState) -> None:
        if self.case_id is not None and self.case_id in state.cases:
            self.case(state).touch(self.unit_id, self.occurred_on, self.originator_version)


class DuesReceived(LooseEvent):
    class_version = 1
    months_from: YearMonth
    months_to: YearMonth
    amount: Decimal

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        # Paid for months ahead, the member is in good standing until they end: known
        # from the day the dues came in (R7 counts from the end of the months covered).
        state.signs_of_life.append((self.occurred_on, self.months_to.last_day()))


class ActivityAttended(LooseEvent):
    class_version = 1
    kind: str

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        state.signs_of_life.append((self.occurred_on, self.occurred_on))
        case = state.cases.get(self.case_id) if self.case_id else None
        attended = Action(self.unit_id, self.occurred_on, self.originator_version)
        if case is not None:
            case.activities.append(attended)
            _close_if_attended(state, case)
        else:
            state.loose_activities.append(attended)


class ContactMade(LooseEvent):
    class_version = 1
    channel: Channel
    note: str

    def evolve(self, state: MemberState) -> None:
        super().evolve(state)
        state.signs_of_life.append((self.occurred_on, self.occurred_on))


class EntryVoided(LooseEvent):
    class_version = 1
    voided: int  # log position of the voided event
    voided_version: int  # its version in this stream
    reason: str


# Events a closed case still accepts (R9).
AFTER_CLOSE: tuple[type[MemberEvent], ...] = (ReceiptReturned, LetterExpired, EntryVoided)

MEMBER_EVENTS: tuple[type[MemberEvent], ...] = (
    MemberEnrolled,
    MembershipConfirmed,
    ProbationExtended,
    InquiryReceived,
    RequirementsNotified,
    EvidenceRecorded,
    ArchiveReviewed,
    OriginContacted,
    UnitConsulted,
    IntroductionIssued,
    TransferHeld,
    PerformanceReportSent,
    LetterIssued,
    LetterDeclined,
    LetterVoided,
    LetterExpired,
    ReceiptReturned,
    Referred,
    ReferralAccepted,
    ReferralDeclined,
    Attached,
    DuesReceived,
    ActivityAttended,
    ContactMade,
    CaseWithdrawn,
    EntryVoided,
)
