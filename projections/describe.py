"""What each member event says, in one line of the trail."""

from __future__ import annotations

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


def describe(e: MemberEvent) -> str:
    """One line saying what the event records, as a clerk would read it."""
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
