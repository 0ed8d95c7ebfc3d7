"""The MemberRelationship aggregate: one stream per member, every case in it.

One stream per member is what makes "exactly one holder" (R2) and "one open
case at a time" (R9) consistent invariants. Each command method checks the
rules (``domain.rules``) and then triggers exactly the events DESIGN.md
names; a refused command triggers nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate

from domain import rules
from domain.errors import InvalidInput, NotFound, RuleRefused
from domain.member_events import (
    AFTER_CLOSE,
    ActivityAttended,
    ArchiveReviewed,
    Attached,
    CaseWithdrawn,
    ContactMade,
    DuesReceived,
    EntryVoided,
    EvidenceRecorded,
    InquiryReceived,
    IntroductionIssued,
    LetterDeclined,
    LetterExpired,
    LetterIssued,
    LetterVoided,
    MemberEnrolled,
    MemberEvent,
    MembershipConfirmed,
    OriginContacted,
    PerformanceReportSent,
    ProbationExtended,
    ReceiptReturned,
    ReferralAccepted,
    ReferralDeclined,
    Referred,
    RequirementsNotified,
    TransferHeld,
    UnitConsulted,
)
from domain.member_state import Case, Letter, MemberState, fold
from domain.unit import Unit
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
    optional_text,
    require_text,
)

LETTER_VALIDITY = timedelta(days=90)


def case_id_for(member_id: uuid.UUID, number: int) -> uuid.UUID:
    """The id of the member's ``number``-th case (deterministic, so replays agree)."""
    return uuid.uuid5(member_id, f"case-{number}")


@dataclass(frozen=True)
class Act:
    """Who does a command, when it happened, and what today is."""

    actor: Unit
    recorded_by: str
    on: date
    today: date
    holder: Unit | None = None


class MemberRelationship(Aggregate):
    """A member's organisational relationship: holder, letters and cases."""

    def __init__(self) -> None:
        self.history: list[MemberEvent] = []
        self.state = MemberState()

    def absorb(self, event: MemberEvent) -> None:
        """Fold one more event into the state (a void refolds the whole stream)."""
        self.history.append(event)
        if isinstance(event, EntryVoided):
            self.state = fold(self.history)
        else:
            event.evolve(self.state)

    # --- enrolment and standing ----------------------------------------

    @classmethod
    def enrol(
        cls,
        act: Act,
        *,
        member_id: uuid.UUID,
        name: str,
        id_digest: str,
        standing: Standing,
        probation_started_on: date | None,
        developing_unit: Unit | None,
        household_region: str,
        holder: Unit,
    ) -> MemberRelationship:
        """A new member stream, held by ``holder`` from the enrolment date."""
        rules.date_is_not_in_future(act.on, act.today)
        rules.unit_can_act(act.actor, act.on)
        rules.unit_can_act(holder, act.on, field="holder_unit_id")
        if standing is Standing.PROBATIONARY:
            if probation_started_on is None:
                raise InvalidInput(
                    "a probationary member needs probation_started_on", field="probation_started_on"
                )
            rules.date_is_not_in_future(probation_started_on, act.today, "probation_started_on")
        elif probation_started_on is not None:
            raise InvalidInput(
                "probation_started_on is only for probationary members",
                field="probation_started_on",
            )
        return cls._create(
            MemberEnrolled,
            id=member_id,
            unit_id=act.actor.code,
            occurred_on=act.on,
            recorded_by=act.recorded_by,
            case_id=None,
            name=require_text(name, "name", max_length=100),
            id_digest=id_digest,
            standing=standing,
            probation_started_on=probation_started_on,
            developing_unit_id=developing_unit.code if developing_unit else None,
            household_region=require_text(household_region, "household_region", max_length=100),
            holder_unit_id=holder.code,
        )

    def confirm_membership(self, act: Act) -> None:
        """转正: the probationary member becomes a full member."""
        self._begin(act)
        rules.member_is_probationary(self.state)
        rules.unit_is_holder(self.state, act.actor, "confirm membership")
        self._trigger(MembershipConfirmed, act, None)

    def extend_probation(self, act: Act, *, months: int) -> None:
        """Probation is extended by whole months (it then ends later, R3)."""
        self._begin(act)
        rules.member_is_probationary(self.state)
        rules.unit_is_holder(self.state, act.actor, "extend probation")
        if not isinstance(months, int) or not 1 <= months <= 12:
            raise InvalidInput("months must be a whole number from 1 to 12", field="months")
        self._trigger(ProbationExtended, act, None, months=months)

    # --- the case ------------------------------------------------------------

    def receive_inquiry(
        self,
        act: Act,
        *,
        channel: Channel,
        summary: str,
        prior_contacts: Sequence[PriorContact] = (),
    ) -> uuid.UUID:
        """The member came forward: opens a case, or joins the open one (R9). Returns its id."""
        self._begin(act)
        case = self.state.open_case
        if case is None:
            rules.new_case_after_the_last(self.state, act.on)
        else:
            rules.dated_in_its_case(self.state, case, act.on)
        case_id = case.case_id if case else case_id_for(self.id, len(self.state.cases) + 1)
        contacts = [
            PriorContact(
                who=require_text(c.who, f"prior_contacts[{i}].who", max_length=200),
                answer=require_text(c.answer, f"prior_contacts[{i}].answer"),
            )
            for i, c in enumerate(prior_contacts)
        ]
        self._trigger(
            InquiryReceived,
            act,
            case_id,
            channel=channel,
            summary=require_text(summary, "summary"),
            prior_contacts=contacts,
        )
        return case_id

    def notify_requirements(
        self, act: Act, *, case_id: uuid.UUID | None, documents: Sequence[str]
    ) -> None:
        """一次性告知: everything the member must bring, told at once."""
        case = self._case(act, case_id)
        docs = [require_text(d, f"documents[{i}]", max_length=200) for i, d in enumerate(documents)]
        if not docs:
            raise InvalidInput("documents must list at least one document", field="documents")
        self._trigger(RequirementsNotified, act, case.case_id, documents=docs)

    def record_evidence(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        kind: EvidenceKind,
        reference: str,
        valid_until: date | None,
    ) -> None:
        """A document the member showed (the basis of an attachment, R1)."""
        case = self._case(act, case_id)
        rules.date_in_calendar(valid_until, "valid_until")
        if valid_until is not None and valid_until < act.on:
            raise InvalidInput(
                f"valid_until {valid_until} is before the date the evidence is recorded",
                field="valid_until",
            )
        self._trigger(
            EvidenceRecorded,
            act,
            case.case_id,
            kind=kind,
            reference=require_text(reference, "reference", max_length=200),
            valid_until=valid_until,
        )

    def review_archive(self, act: Act, *, case_id: uuid.UUID | None, finding: str) -> None:
        """The member's personal file (档案) was read."""
        case = self._case(act, case_id)
        self._trigger(ArchiveReviewed, act, case.case_id, finding=require_text(finding, "finding"))

    def contact_origin(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        contacted_unit: Unit | None,
        contacted_name: str | None,
        outcome: ContactOutcome,
    ) -> None:
        """The member's original unit (or whoever stands for it) was looked for."""
        case = self._case(act, case_id)
        name = optional_text(contacted_name, "contacted_name", max_length=200)
        if (contacted_unit is None) == (name is None):
            raise InvalidInput(
                "give exactly one of contacted_unit_id (a registered unit) or contacted_name",
                field="contacted_unit_id",
            )
        self._trigger(
            OriginContacted,
            act,
            case.case_id,
            contacted_unit_id=contacted_unit.code if contacted_unit else None,
            contacted_name=name,
            outcome=outcome,
        )

    def consult_unit(
        self, act: Act, *, case_id: uuid.UUID | None, consulted: Unit, note: str
    ) -> None:
        """Coordination with another unit, without handing the case over."""
        case = self._case(act, case_id)
        self._check_other_unit(act, consulted, "consulted_unit_id")
        self._trigger(
            UnitConsulted,
            act,
            case.case_id,
            consulted_unit_id=consulted.code,
            note=require_text(note, "note"),
        )

    def issue_introduction(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        to_unit: Unit | None,
        to_name: str | None,
        purpose: str,
    ) -> None:
        """A letter so the member can inquire somewhere (not a transfer letter)."""
        case = self._case(act, case_id)
        name = optional_text(to_name, "to_name", max_length=200)
        if (to_unit is None) == (name is None):
            raise InvalidInput(
                "give exactly one of to_unit_id (a registered unit) or to_name", field="to_unit_id"
            )
        self._trigger(
            IntroductionIssued,
            act,
            case.case_id,
            to_unit_id=to_unit.code if to_unit else None,
            to_name=name,
            purpose=require_text(purpose, "purpose"),
        )

    def hold_transfer(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        rule: str,
        until: date | None,
        note: str,
    ) -> None:
        """The transfer waits, under a named rule (e.g. R3 until confirmation)."""
        case = self._case(act, case_id)
        rules.date_in_calendar(until, "until")
        if until is not None and until < act.on:
            raise InvalidInput("until may not be before the hold itself", field="until")
        self._trigger(
            TransferHeld,
            act,
            case.case_id,
            rule=require_text(rule, "rule", max_length=50),
            until=until,
            note=require_text(note, "note"),
        )

    def send_performance_report(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        to_unit: Unit,
        covering_from: date,
        covering_to: date,
    ) -> None:
        """考察材料 sent to the receiving unit (what R4 waits for)."""
        case = self._case(act, case_id)
        self._check_other_unit(act, to_unit, "to_unit_id")
        rules.date_in_calendar(covering_from, "covering_from")
        rules.date_in_calendar(covering_to, "covering_to")
        if covering_to < covering_from:
            raise InvalidInput("covering_to is before covering_from", field="covering_to")
        if covering_to > act.on:
            raise InvalidInput(
                "the report cannot cover days after it was sent", field="covering_to"
            )
        self._trigger(
            PerformanceReportSent,
            act,
            case.case_id,
            to_unit_id=to_unit.code,
            covering_from=covering_from,
            covering_to=covering_to,
        )

    def issue_letter(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        letter_no: str,
        to_unit: Unit,
        valid_until: date | None,
        dues_paid_through: YearMonth,
        special_circumstances: str | None,
    ) -> None:
        """组织关系介绍信: the holder sends the member on to ``to_unit`` (R2, R3, R4)."""
        case = self._case(act, case_id)
        number = require_text(letter_no, "letter_no", max_length=50)
        self._check_other_unit(act, to_unit, "to_unit_id")
        if case.attached_unit_id is not None:
            # Its transfer is done: a letter now could be neither attached (the case has its
            # attachment) nor voided once the first activity closes the case (R9).
            if case.attached_on is not None and act.on <= case.attached_on:
                # A paper letter entered after the attachment it led to.
                raise RuleRefused(
                    f"case {case.number} already attached the member at"
                    f" {case.attached_unit_id} on {case.attached_on}: to enter the letter that"
                    " led there, void that attachment, record the letter, then attach again"
                    " naming it",
                    code="ALREADY_ATTACHED",
                    field="occurred_on",
                )
            raise RuleRefused(
                f"case {case.number} already attached the member at {case.attached_unit_id} on"
                f" {case.attached_on}; record their first activity there to close it (R9), then"
                " a new inquiry opens the case for the next move",
                code="ALREADY_ATTACHED",
            )
        rules.no_letter_outstanding(self.state, act.on)
        rules.issuer_holds_member(self.state, act.actor, act.holder, act.on)
        if to_unit.code == self.state.holder_unit_id:
            raise InvalidInput(
                "the letter is addressed to the unit that already holds the member",
                field="to_unit_id",
            )
        rules.date_in_calendar(valid_until, "valid_until")
        until = valid_until or act.on + LETTER_VALIDITY
        if until < act.on:
            raise InvalidInput("valid_until is before the letter's date", field="valid_until")
        special = optional_text(special_circumstances, "special_circumstances")
        overridden = ["R3"] if rules.probation_allows_transfer(self.state, act.on, special) else []
        rules.performance_report_sent(self.state, case, to_unit.code, act.on, act.actor.code)
        self._trigger(
            LetterIssued,
            act,
            case.case_id,
            letter_no=number,
            to_unit_id=to_unit.code,
            valid_until=until,
            dues_paid_through=dues_paid_through,
            special_circumstances=special,
            overridden_rules=overridden,
        )

    def decline_letter(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        letter_no: str,
        reason_code: DeclineReason,
        note: str | None,
    ) -> None:
        """拒接: the addressee refuses the letter, with a stated cause."""
        case, letter = self._letter(act, case_id, letter_no, after_close=False, as_addressee=True)
        if letter.to_unit_id != act.actor.code:
            raise RuleRefused(
                f"letter {letter_no} is addressed to {letter.to_unit_id}, not {act.actor.code}",
                code="NOT_ADDRESSEE",
            )
        self._must_be_outstanding(letter)
        self._trigger(
            LetterDeclined,
            act,
            case.case_id,
            letter_no=letter.letter_no,
            reason_code=reason_code,
            note=self._decline_note(reason_code, note),
        )

    def void_letter(
        self, act: Act, *, case_id: uuid.UUID | None, letter_no: str, reason: str
    ) -> None:
        """The issuer withdraws its letter (lost, re-issued, ...)."""
        case, letter = self._letter(act, case_id, letter_no, after_close=False)
        self._must_be_issuer(act, letter)
        self._must_be_outstanding(letter)
        self._trigger(
            LetterVoided,
            act,
            case.case_id,
            letter_no=letter.letter_no,
            reason=require_text(reason, "reason"),
        )

    def expire_letter(self, act: Act, *, case_id: uuid.UUID | None, letter_no: str) -> None:
        """An expired letter came back unused to its issuer."""
        case, letter = self._letter(act, case_id, letter_no, after_close=True)
        self._must_be_issuer(act, letter)
        self._must_be_outstanding(letter)
        if act.on <= letter.valid_until:
            raise RuleRefused(
                f"letter {letter_no} is valid until {letter.valid_until}; it can be recorded"
                " expired only after that (void it instead if it is withdrawn)",
                code="LETTER_NOT_EXPIRED",
                field="occurred_on",
            )
        self._trigger(LetterExpired, act, case.case_id, letter_no=letter.letter_no)

    def return_receipt(self, act: Act, *, case_id: uuid.UUID | None, letter_no: str) -> None:
        """回执: the receiving unit's receipt reached the issuer."""
        case, letter = self._letter(act, case_id, letter_no, after_close=True)
        self._must_be_issuer(act, letter)
        if letter.status != "attached":
            raise RuleRefused(
                f"letter {letter_no} is {letter.status}; a receipt returns only for a letter"
                " that led to an attachment",
                code="LETTER_NOT_USED",
                field="letter_no",
            )
        if letter.receipt_returned_on is not None:
            # A receipt comes back once: a second one would move the day R6 judges it by.
            raise RuleRefused(
                f"the receipt for letter {letter.letter_no} came back on"
                f" {letter.receipt_returned_on}; to correct that day, void that entry and"
                " record the receipt again",
                code="RECEIPT_ALREADY_RETURNED",
                field="letter_no",
            )
        if letter.settled_on is not None and act.on < letter.settled_on:
            raise InvalidInput(
                "the receipt cannot return before the attachment", field="occurred_on"
            )
        self._trigger(ReceiptReturned, act, case.case_id, letter_no=letter.letter_no)

    def refer(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        to_unit: Unit,
        handover: Handover,
        reason: str,
    ) -> None:
        """The acting unit sends the member on to another unit (warm or cold, R5)."""
        case = self._case(act, case_id)
        self._check_other_unit(act, to_unit, "to_unit_id")
        self._trigger(
            Referred,
            act,
            case.case_id,
            to_unit_id=to_unit.code,
            handover=handover,
            reason=require_text(reason, "reason"),
        )

    def accept_referral(self, act: Act, *, case_id: uuid.UUID | None) -> None:
        """The addressee takes the referred case on."""
        case = self._case(act, case_id)
        self._pending_referral_to(act, case)
        self._trigger(ReferralAccepted, act, case.case_id)

    def decline_referral(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        reason_code: DeclineReason,
        note: str | None,
    ) -> None:
        """The addressee refuses the referral, with a stated cause."""
        case = self._case(act, case_id)
        self._pending_referral_to(act, case)
        self._trigger(
            ReferralDeclined,
            act,
            case.case_id,
            reason_code=reason_code,
            note=self._decline_note(reason_code, note),
        )

    def attach(
        self,
        act: Act,
        *,
        case_id: uuid.UUID | None,
        basis: Basis,
        letter_no: str | None,
        override_reason: str | None,
    ) -> None:
        """The acting unit takes the member in: it becomes the holder (R1, R2)."""
        case = self._case(act, case_id)
        if case.attached_unit_id is not None:
            raise RuleRefused(
                f"case {case.number} was already attached at {case.attached_unit_id} on"
                f" {case.attached_on}; void that entry first to attach again",
                code="ALREADY_ATTACHED",
            )
        number = optional_text(letter_no, "letter_no", max_length=50)
        reason = optional_text(override_reason, "override_reason")
        letter, r2_overridden = rules.attachment_is_addressed(
            self.state, act.actor.code, number, reason
        )
        r1_overridden = rules.attachment_has_basis(
            case,
            basis,
            act.on,
            unit_region=act.actor.region,
            household_region=self.state.household_region,
            override_reason=reason,
        )
        if act.on < case.opened_on:
            # Papers may come before the member formally asked; being taken in may not: the
            # days from the first inquiry to the attachment (the scorecard's) would be negative.
            raise InvalidInput(
                f"case {case.number} opened with an inquiry on {case.opened_on}; the attachment"
                f" cannot come before it — date it on or after {case.opened_on}, or record the"
                " earlier inquiry first",
                field="occurred_on",
            )
        if letter is not None and act.on < letter.issued_on:
            raise InvalidInput("the attachment cannot precede its letter", field="occurred_on")
        out = self.state.outstanding_letter
        if out is not None and act.on < out.issued_on:
            # Attaching settles every letter out; dated before one, it would settle a letter
            # not yet issued, from a unit that by then no longer held the member (R2).
            raise InvalidInput(
                f"letter {out.letter_no} from {out.issuer_unit_id} is out since {out.issued_on}"
                f" and this attachment settles it: date it on or after {out.issued_on}",
                field="occurred_on",
            )
        self._trigger(
            Attached,
            act,
            case.case_id,
            basis=basis,
            letter_no=letter.letter_no if letter else number,
            override_reason=reason,
            overridden_rules=[
                r for r, used in (("R1", r1_overridden), ("R2", r2_overridden)) if used
            ],
        )

    def withdraw_case(self, act: Act, *, case_id: uuid.UUID | None, reason: str) -> None:
        """The case ends without an attachment (the member withdrew, died, ...)."""
        case = self._case(act, case_id)
        letter = self.state.outstanding_letter
        if letter is not None and letter.case_id == case.case_id:
            raise RuleRefused(
                f"letter {letter.letter_no} to {letter.to_unit_id} is still out; its issuer must"
                " void it before the case is withdrawn (a closed case takes no letter voids)",
                code="R2_LETTER_OUTSTANDING",
            )
        if case.last_entry_on is not None and act.on < case.last_entry_on:
            # Closed before its own entries, the case would overlap the next one and put
            # the holders of an `as_of` history out of order (R9: one open case a day).
            # Dues and contacts that fell in it are no entries of the case: they bound nothing.
            raise InvalidInput(
                f"case {case.number} has an entry dated {case.last_entry_on}; its withdrawal"
                f" cannot be dated before it — date it on or after {case.last_entry_on}",
                field="occurred_on",
            )
        self._trigger(CaseWithdrawn, act, case.case_id, reason=require_text(reason, "reason"))

    # --- life of the relationship -------------------------------------------

    def receive_dues(
        self, act: Act, *, months_from: YearMonth, months_to: YearMonth, amount: Decimal
    ) -> None:
        """党费 received for whole months."""
        self._begin(act)
        if months_to < months_from:
            raise InvalidInput("months_to is before months_from", field="months_to")
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise InvalidInput("amount must be a non-negative decimal number", field="amount")
        self._trigger(
            DuesReceived,
            act,
            self.state.open_case_id,
            months_from=months_from,
            months_to=months_to,
            amount=amount,
        )

    def attend_activity(self, act: Act, *, kind: str) -> None:
        """The member took part in an activity of the acting unit (closes an attached case)."""
        self._begin(act)
        self._trigger(
            ActivityAttended,
            act,
            self.state.open_case_id,
            kind=require_text(kind, "kind", max_length=200),
        )

    def make_contact(self, act: Act, *, channel: Channel, note: str) -> None:
        """The acting unit reached the member."""
        self._begin(act)
        self._trigger(
            ContactMade,
            act,
            self.state.open_case_id,
            channel=channel,
            note=require_text(note, "note"),
        )

    def void_entry(self, act: Act, *, position: int, version: int, reason: str) -> None:
        """A correction: the entry stays in the trail, marked, and stops counting."""
        self._begin(act)
        if not 1 <= version <= len(self.history):
            raise NotFound(
                f"no entry at position {position} for this member",
                code="UNKNOWN_ENTRY",
                field="voided",
            )
        target = self.history[version - 1]
        why_not = self._why_not_voidable(act, target)
        if why_not:
            raise RuleRefused(why_not, code="NOT_VOIDABLE", field="voided")
        if act.on < target.occurred_on:
            # A history as of a day between them would show the correction of an entry
            # that had not happened yet.
            raise InvalidInput(
                f"the entry at position {position} is dated {target.occurred_on}; its void"
                f" cannot be dated before it — date the void on or after {target.occurred_on}",
                field="occurred_on",
            )
        self._trigger(
            EntryVoided,
            act,
            target.case_id,
            voided=position,
            voided_version=version,
            reason=require_text(reason, "reason"),
        )

    # --- helpers ---------------------------------------------------------------

    def _begin(self, act: Act) -> None:
        rules.date_is_not_in_future(act.on, act.today)
        rules.date_is_not_before_enrolment(self.state, act.on)
        rules.unit_can_act(act.actor, act.on)

    def _case(self, act: Act, case_id: uuid.UUID | None, *, after_close: bool = False) -> Case:
        self._begin(act)
        case = rules.case_accepts_actions(self.state, case_id, after_close=after_close)
        rules.dated_in_its_case(self.state, case, act.on)
        return case

    def _letter(
        self,
        act: Act,
        case_id: uuid.UUID | None,
        letter_no: str,
        *,
        after_close: bool,
        as_addressee: bool = False,
    ) -> tuple[Case, Letter]:
        """The letter the acting unit acts on: its own (as issuer, or ``as_addressee``)."""
        self._begin(act)
        unit = act.actor.code
        letter = self.state.find_letter(
            require_text(letter_no, "letter_no", max_length=50),
            issued_by=None if as_addressee else unit,
            addressed_to=unit if as_addressee else None,
            in_case=case_id,
        )
        if letter is None or (case_id is not None and letter.case_id != case_id):
            raise NotFound(
                f"this member has no letter {letter_no}"
                + (f" in case {case_id}" if case_id else ""),
                code="UNKNOWN_LETTER",
                field="letter_no",
            )
        case = rules.case_accepts_actions(self.state, letter.case_id, after_close=after_close)
        rules.dated_in_its_case(self.state, case, act.on)
        if act.on < letter.issued_on:
            raise InvalidInput(
                f"letter {letter.letter_no} was issued on {letter.issued_on}; nothing can be"
                " recorded about it before that",
                field="occurred_on",
            )
        return case, letter

    @staticmethod
    def _must_be_issuer(act: Act, letter: Letter) -> None:
        if letter.issuer_unit_id != act.actor.code:
            raise RuleRefused(
                f"letter {letter.letter_no} was issued by {letter.issuer_unit_id},"
                f" not {act.actor.code}",
                code="NOT_ISSUER",
            )

    @staticmethod
    def _must_be_outstanding(letter: Letter) -> None:
        if not letter.outstanding:
            raise RuleRefused(
                f"letter {letter.letter_no} is already {letter.status} (since {letter.settled_on})",
                code="LETTER_NOT_OUTSTANDING",
                field="letter_no",
            )

    @staticmethod
    def _check_other_unit(act: Act, unit: Unit, field: str) -> None:
        if unit.code == act.actor.code:
            raise InvalidInput(f"{field} names the acting unit itself", field=field)
        rules.unit_can_act(unit, act.on, field=field)

    @staticmethod
    def _decline_note(reason_code: DeclineReason, note: str | None) -> str:
        text = optional_text(note, "note")
        if reason_code is DeclineReason.OTHER and not text:
            raise InvalidInput("reason_code other needs a note stating the cause", field="note")
        return text or ""

    @staticmethod
    def _pending_referral_to(act: Act, case: Case) -> None:
        if not any(r.to_unit_id == act.actor.code and r.answer is None for r in case.referrals):
            raise RuleRefused(
                f"no referral in case {case.number} awaits an answer from {act.actor.code}",
                code="NOT_ADDRESSEE",
            )

    def _why_not_voidable(self, act: Act, target: MemberEvent) -> str | None:
        if isinstance(target, EntryVoided):
            return "a void cannot itself be voided"
        if isinstance(target, MemberEnrolled):
            return "the enrolment cannot be voided"
        if target.originator_version in self.state.voided:
            return "this entry is already voided"
        if target.unit_id != act.actor.code:
            return f"only {target.unit_id}, which recorded the entry, may void it"
        if isinstance(target, LetterIssued):
            return "a letter is withdrawn with a letter void (LetterVoided), not an entry void"
        if isinstance(target, LetterVoided | LetterDeclined | LetterExpired):
            return "a letter once settled stays settled; issue a new letter instead"
        if isinstance(target, Attached):
            later = [
                letter
                for letter in self.state.letters
                if letter.version > target.originator_version and letter.status != "voided"
            ]
            if later:
                # Undone, the attachment would leave the member with its former holder and
                # this later letter (from a unit that never held them) out beside any other.
                return (
                    f"{later[0].issuer_unit_id} has issued letter {later[0].letter_no} since;"
                    " void that letter first"
                )
        if isinstance(target, InquiryReceived):
            case = self.state.cases.get(target.case_id) if target.case_id else None
            if (
                case is not None
                and case.inquiries
                and case.inquiries[0].version == target.originator_version
            ):
                return (
                    "the inquiry that opened the case cannot be voided; withdraw the case instead"
                )
        latest = self.state.latest_case()
        owner = target.case_id
        if owner is None and isinstance(target, ActivityAttended):
            # Entered while no case was open, it may since have closed a back-dated case.
            owner = next(
                (
                    c.case_id
                    for c in self.state.cases.values()
                    if any(a.version == target.originator_version for a in c.activities)
                ),
                None,
            )
        if (
            owner is not None
            and latest is not None
            and owner != latest.case_id
            # Dues and contacts only fell within that case: a wrong amount or date must stay
            # correctable (R7 counts them). An activity may have closed the case, so
            # activities, like the case's own entries, stay final.
            and not isinstance(target, DuesReceived | ContactMade)
        ):
            return "a later case exists; entries of earlier cases can no longer be voided"
        return None

    def _trigger(
        self, event_class: type[MemberEvent], act: Act, case_id: uuid.UUID | None, **fields: Any
    ) -> None:
        if case_id is not None and event_class not in AFTER_CLOSE:
            case = self.state.cases.get(case_id)
            # Loose events (dues, activities) only join a case that is open.
            if case is not None and not case.is_open:
                case_id = None
        self.trigger_event(
            event_class,
            unit_id=act.actor.code,
            occurred_on=act.on,
            recorded_by=act.recorded_by,
            case_id=case_id,
            **fields,
        )

    @property
    def holder_unit_id(self) -> str:
        """The unit that holds the member now (R2: always exactly one)."""
        return self.state.holder_unit_id


__all__ = ["Act", "Basis", "MemberRelationship", "case_id_for"]
