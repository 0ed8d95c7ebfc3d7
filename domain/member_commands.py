"""Commands on a member's relationship: one method each, as the Registry offers them.

Each method parses what the caller sent, names the fields that make the
command what it is (for its idempotency fingerprint), and hands a ``decide``
function to the Registry's machinery, which loads the member, checks who
acts, runs the aggregate's command (the rules) and saves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.inputs import (
    as_decimal,
    as_optional_uuid,
    as_prior_contact,
    as_uuid,
    letter_no_taken,
)
from domain.letter_number import LetterNumber, letter_number_id
from domain.member import Act, MemberRelationship
from domain.receipts import Outcome
from domain.unit import Unit
from domain.values import (
    Basis,
    Channel,
    ContactOutcome,
    DeclineReason,
    EvidenceKind,
    Handover,
    PriorContact,
    YearMonth,
    parse_enum,
)

if TYPE_CHECKING:
    from domain.registry import Actor

Decide = Callable[[MemberRelationship, Act], Sequence[Aggregate] | None]


class MemberCommands:
    """The member and case commands of the Registry (mixed into it)."""

    if TYPE_CHECKING:

        def _on_member(
            self,
            command: str,
            actor: Actor,
            member_id: UUID | str,
            occurred_on: date | None,
            expected_version: int | None,
            idempotency_key: str | None,
            params: dict[str, Any],
            decide: Decide,
        ) -> Outcome: ...

        def unit(self, code: str, field: str = "unit_id") -> Unit: ...
        def _opt_unit(self, code: str | None, field: str) -> Unit | None: ...
        def _taken_before_append(self, aggregate_id: UUID) -> bool: ...
        def _version_at(self, member_id: UUID, position: int) -> int: ...

    def confirm_membership(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """转正: the probationary member becomes a full member."""
        return self._on_member(
            "confirm_membership",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            {},
            lambda m, act: m.confirm_membership(act),
        )

    def extend_probation(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        months: int,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Extend probation by whole months."""
        return self._on_member(
            "extend_probation",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(months=months),
            lambda m, act: m.extend_probation(act, months=months),
        )

    # --- members: the case ---------------------------------------------------------

    def receive_inquiry(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        channel: Channel | str,
        summary: str,
        prior_contacts: Sequence[PriorContact | dict[str, str]] = (),
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The member came forward: opens a case or joins the open one."""
        contacts = [as_prior_contact(c, i) for i, c in enumerate(prior_contacts)]

        def decide(m: MemberRelationship, act: Act) -> None:
            m.receive_inquiry(
                act,
                channel=parse_enum(Channel, channel, "channel"),
                summary=summary,
                prior_contacts=contacts,
            )

        return self._on_member(
            "receive_inquiry",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(channel=channel, summary=summary, prior=[(c.who, c.answer) for c in contacts]),
            decide,
        )

    def notify_requirements(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        documents: Sequence[str],
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """一次性告知: tell the member every document needed, at once."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "notify_requirements",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, documents=list(documents)),
            lambda m, act: m.notify_requirements(act, case_id=cid, documents=documents),
        )

    def record_evidence(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        kind: EvidenceKind | str,
        reference: str,
        valid_until: date | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record a document the member showed (labour contract, lease, ...)."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "record_evidence",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, kind=kind, reference=reference, valid_until=valid_until),
            lambda m, act: m.record_evidence(
                act,
                case_id=cid,
                kind=parse_enum(EvidenceKind, kind, "kind"),
                reference=reference,
                valid_until=valid_until,
            ),
        )

    def review_archive(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        finding: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record what the member's personal file (档案) showed."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "review_archive",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, finding=finding),
            lambda m, act: m.review_archive(act, case_id=cid, finding=finding),
        )

    def contact_origin(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        outcome: ContactOutcome | str,
        contacted_unit_id: str | None = None,
        contacted_name: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record an attempt to reach the member's original unit or its superior."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "contact_origin",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, outcome=outcome, unit=contacted_unit_id, name=contacted_name),
            lambda m, act: m.contact_origin(
                act,
                case_id=cid,
                outcome=parse_enum(ContactOutcome, outcome, "outcome"),
                contacted_unit=self._opt_unit(contacted_unit_id, "contacted_unit_id"),
                contacted_name=contacted_name,
            ),
        )

    def consult_unit(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        consulted_unit_id: str,
        note: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record coordination with another unit (the case stays here)."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "consult_unit",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, unit=consulted_unit_id, note=note),
            lambda m, act: m.consult_unit(
                act,
                case_id=cid,
                consulted=self.unit(consulted_unit_id, "consulted_unit_id"),
                note=note,
            ),
        )

    def issue_introduction(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        purpose: str,
        to_unit_id: str | None = None,
        to_name: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Issue an introduction letter so the member can inquire somewhere."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "issue_introduction",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, purpose=purpose, unit=to_unit_id, name=to_name),
            lambda m, act: m.issue_introduction(
                act,
                case_id=cid,
                to_unit=self._opt_unit(to_unit_id, "to_unit_id"),
                to_name=to_name,
                purpose=purpose,
            ),
        )

    def hold_transfer(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        rule: str,
        note: str,
        until: date | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that the transfer waits under a named rule."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "hold_transfer",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, rule=rule, note=note, until=until),
            lambda m, act: m.hold_transfer(act, case_id=cid, rule=rule, until=until, note=note),
        )

    def send_performance_report(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        to_unit_id: str,
        covering_from: date,
        covering_to: date,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record the performance report (考察材料) sent to the receiving unit."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "send_performance_report",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, to=to_unit_id, start=covering_from, end=covering_to),
            lambda m, act: m.send_performance_report(
                act,
                case_id=cid,
                to_unit=self.unit(to_unit_id, "to_unit_id"),
                covering_from=covering_from,
                covering_to=covering_to,
            ),
        )

    def issue_letter(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        to_unit_id: str,
        dues_paid_through: YearMonth | str,
        valid_until: date | None = None,
        special_circumstances: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Issue the transfer letter (组织关系介绍信) to the receiving unit."""
        cid = as_optional_uuid(case_id, "case_id")
        dues = (
            dues_paid_through
            if isinstance(dues_paid_through, YearMonth)
            else YearMonth.parse(dues_paid_through, "dues_paid_through")
        )

        def decide(m: MemberRelationship, act: Act) -> Sequence[Aggregate]:
            m.issue_letter(
                act,
                case_id=cid,
                letter_no=letter_no,
                to_unit=self.unit(to_unit_id, "to_unit_id"),
                valid_until=valid_until,
                dues_paid_through=dues,
                special_circumstances=special_circumstances,
            )
            number = letter_no.strip()
            if self._taken_before_append(letter_number_id(act.actor.code, act.on.year, number)):
                raise letter_no_taken(act.actor.code, act.on.year, number)
            return [LetterNumber.take(act.actor.code, act.on.year, number, m.id)]

        return self._on_member(
            "issue_letter",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(
                case=cid,
                no=letter_no,
                to=to_unit_id,
                dues=str(dues),
                until=valid_until,
                special=special_circumstances,
            ),
            decide,
        )

    def decline_letter(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        reason_code: DeclineReason | str,
        note: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """拒接: the addressee refuses the letter, with a stated cause."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "decline_letter",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, no=letter_no, reason=reason_code, note=note),
            lambda m, act: m.decline_letter(
                act,
                case_id=cid,
                letter_no=letter_no,
                reason_code=parse_enum(DeclineReason, reason_code, "reason_code"),
                note=note,
            ),
        )

    def void_letter(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        reason: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The issuer withdraws its letter (lost, re-issued, ...)."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "void_letter",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, no=letter_no, reason=reason),
            lambda m, act: m.void_letter(act, case_id=cid, letter_no=letter_no, reason=reason),
        )

    def expire_letter(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that an expired letter came back unused."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "expire_letter",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, no=letter_no),
            lambda m, act: m.expire_letter(act, case_id=cid, letter_no=letter_no),
        )

    def return_receipt(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        letter_no: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that the receipt (回执) of a used letter reached its issuer."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "return_receipt",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, no=letter_no),
            lambda m, act: m.return_receipt(act, case_id=cid, letter_no=letter_no),
        )

    def refer_case(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        to_unit_id: str,
        handover: Handover | str,
        reason: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Send the member on to another unit, warm (accompanied) or cold."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "refer_case",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, to=to_unit_id, handover=handover, reason=reason),
            lambda m, act: m.refer(
                act,
                case_id=cid,
                to_unit=self.unit(to_unit_id, "to_unit_id"),
                handover=parse_enum(Handover, handover, "handover"),
                reason=reason,
            ),
        )

    def accept_referral(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The addressee takes the referred case on."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "accept_referral",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid),
            lambda m, act: m.accept_referral(act, case_id=cid),
        )

    def decline_referral(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        reason_code: DeclineReason | str,
        note: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The addressee refuses the referral, with a stated cause."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "decline_referral",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, reason=reason_code, note=note),
            lambda m, act: m.decline_referral(
                act,
                case_id=cid,
                reason_code=parse_enum(DeclineReason, reason_code, "reason_code"),
                note=note,
            ),
        )

    def attach_member(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        basis: Basis | str,
        letter_no: str | None = None,
        override_reason: str | None = None,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """The acting unit takes the member in and becomes the holder."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "attach_member",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, basis=basis, no=letter_no, reason=override_reason),
            lambda m, act: m.attach(
                act,
                case_id=cid,
                basis=parse_enum(Basis, basis, "basis"),
                letter_no=letter_no,
                override_reason=override_reason,
            ),
        )

    def withdraw_case(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        reason: str,
        case_id: UUID | str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Close the case without an attachment."""
        cid = as_optional_uuid(case_id, "case_id")
        return self._on_member(
            "withdraw_case",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(case=cid, reason=reason),
            lambda m, act: m.withdraw_case(act, case_id=cid, reason=reason),
        )

    # --- members: life of the relationship ------------------------------------------

    def receive_dues(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        months_from: YearMonth | str,
        months_to: YearMonth | str,
        amount: Decimal | str | int,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record party dues (党费) received for whole months."""
        start = (
            months_from
            if isinstance(months_from, YearMonth)
            else YearMonth.parse(months_from, "months_from")
        )
        end = (
            months_to
            if isinstance(months_to, YearMonth)
            else YearMonth.parse(months_to, "months_to")
        )
        money = as_decimal(amount, "amount")
        return self._on_member(
            "receive_dues",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(start=str(start), end=str(end), amount=str(money)),
            lambda m, act: m.receive_dues(act, months_from=start, months_to=end, amount=money),
        )

    def attend_activity(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        kind: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that the member took part in an activity of the acting unit."""
        return self._on_member(
            "attend_activity",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(kind=kind),
            lambda m, act: m.attend_activity(act, kind=kind),
        )

    def make_contact(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        channel: Channel | str,
        note: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Record that the acting unit reached the member."""
        return self._on_member(
            "make_contact",
            actor,
            member_id,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(channel=channel, note=note),
            lambda m, act: m.make_contact(
                act, channel=parse_enum(Channel, channel, "channel"), note=note
            ),
        )

    def void_entry(
        self,
        actor: Actor,
        member_id: UUID | str,
        *,
        occurred_on: date | None = None,
        position: int,
        reason: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Void an entry (by its log position): it stays in the trail and stops counting."""
        mid = as_uuid(member_id, "member_id")

        def decide(m: MemberRelationship, act: Act) -> Sequence[Aggregate]:
            version = self._version_at(mid, position)
            m.void_entry(act, position=position, version=version, reason=reason)
            return []

        return self._on_member(
            "void_entry",
            actor,
            mid,
            occurred_on,
            expected_version,
            idempotency_key,
            dict(position=position, reason=reason),
            decide,
        )
