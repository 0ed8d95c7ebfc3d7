"""A member's case trail as clerks and auditors read it: date, unit, action."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from domain.member import MemberRelationship
from domain.member_events import (
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


@dataclass(frozen=True)
class TrailRow:
    """One line of the trail."""

    version: int
    occurred_on: date
    unit_id: str
    recorded_by: str
    case_id: UUID | None
    action: str
    voided: bool


def _describe(e: MemberEvent) -> str:
    match e:
        case MemberEnrolled():
            return f"enrolled ({e.standing.value}), held by {e.holder_unit_id}"
        case MembershipConfirmed():
            return "membership confirmed (转正)"
        case ProbationExtended():
            return f"probation extended by {e.months} months"
        case InquiryReceived():
            contacts = "; ".join(f"{c.who}: “{c.answer}”" for c in e.prior_contacts)
            return f"inquiry ({e.channel.value}): {e.summary}" + (
                f" — earlier: {contacts}" if contacts else ""
            )
        case RequirementsNotified():
            return "requirements told at once: " + ", ".join(e.documents)
        case EvidenceRecorded():
            until = f", valid until {e.valid_until}" if e.valid_until else ""
            return f"evidence {e.kind.value} {e.reference}{until}"
        case ArchiveReviewed():
            return f"archive reviewed: {e.finding}"
        case OriginContacted():
            return (
                f"origin contacted: {e.contacted_unit_id or e.contacted_name} → {e.outcome.value}"
            )
        case UnitConsulted():
            return f"consulted {e.consulted_unit_id}: {e.note}"
        case IntroductionIssued():
            return f"introduction issued to {e.to_unit_id or e.to_name}: {e.purpose}"
        case TransferHeld():
            until = f" until {e.until}" if e.until else ""
            return f"transfer held under {e.rule}{until}: {e.note}"
        case PerformanceReportSent():
            return f"performance report to {e.to_unit_id} ({e.covering_from}–{e.covering_to})"
        case LetterIssued():
            extra = f", overrides {', '.join(e.overridden_rules)}" if e.overridden_rules else ""
            return (
                f"letter {e.letter_no} to {e.to_unit_id}, valid until {e.valid_until},"
                f" dues paid through {e.dues_paid_through}{extra}"
            )
        case LetterDeclined():
            return f"letter {e.letter_no} declined: {e.reason_code.value} {e.note}".rstrip()
        case LetterVoided():
            return f"letter {e.letter_no} voided: {e.reason}"
        case LetterExpired():
            return f"letter {e.letter_no} came back expired"
        case ReceiptReturned():
            return f"receipt for letter {e.letter_no} returned"
        case Referred():
            return f"referred to {e.to_unit_id} ({e.handover.value}): {e.reason}"
        case ReferralAccepted():
            return "referral accepted"
        case ReferralDeclined():
            return f"referral declined: {e.reason_code.value} {e.note}".rstrip()
        case Attached():
            letter = f" on letter {e.letter_no}" if e.letter_no else ""
            why = (
                f" — override ({', '.join(e.overridden_rules)}): {e.override_reason}"
                if (e.overridden_rules)
                else ""
            )
            return f"attached, basis {e.basis.value}{letter}{why}"
        case CaseWithdrawn():
            return f"case withdrawn: {e.reason}"
        case DuesReceived():
            return f"dues {e.months_from}–{e.months_to}, {e.amount}"
        case ActivityAttended():
            return f"activity attended: {e.kind}"
        case ContactMade():
            return f"contact made ({e.channel.value}): {e.note}"
        case EntryVoided():
            return f"entry v{e.voided_version} (position {e.voided}) voided: {e.reason}"
    return type(e).__name__


def trail(member: MemberRelationship) -> list[TrailRow]:
    """Every event of the member's stream, in order, voided ones marked."""
    return [
        TrailRow(
            version=e.originator_version,
            occurred_on=e.occurred_on,
            unit_id=e.unit_id,
            recorded_by=e.recorded_by,
            case_id=e.case_id,
            action=_describe(e),
            voided=e.originator_version in member.state.voided,
        )
        for e in member.history
    ]


def render_trail(member: MemberRelationship, unit_name: Callable[[str], str]) -> str:
    """The trail as text: a header per case naming the first responder, then its rows."""
    state = member.state
    lines = [
        f"{state.name}  member {member.id}",
        f"  holder: {unit_name(state.holder_unit_id)} ({state.holder_unit_id}) since"
        f" {state.holder_since}"
        + (f", in transit to {state.in_transit_to}" if state.in_transit_to else ""),
    ]
    current: UUID | None = None
    for row in trail(member):
        if row.case_id is not None and row.case_id != current:
            current = row.case_id
            case = state.cases.get(row.case_id)
            if case is not None:
                status = "open" if case.is_open else f"closed {case.closed_on} ({case.closed_by})"
                lines.append(
                    f"  case {case.number} ({status}) — answered first by"
                    f" {unit_name(case.first_responder)} ({case.first_responder})"
                )
        mark = " [voided]" if row.voided else ""
        indent = "    " if row.case_id is not None else "  "
        lines.append(f"{indent}{row.occurred_on}  {unit_name(row.unit_id)}  {row.action}{mark}")
    return "\n".join(lines)
