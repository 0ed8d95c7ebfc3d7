"""What each member event says, in one line of the trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    # A table by exact type rather than a chain of isinstance tests: one lookup per
    # trail row, which a rebuild writes for every event of the log.
    said = _DESCRIBE.get(type(e))
    return said(e) if said is not None else type(e).__name__


def _member_enrolled(e: MemberEnrolled) -> str:
    return f"enrolled ({e.standing.value}), held by {e.holder_unit_id}"


def _membership_confirmed(e: MembershipConfirmed) -> str:
    return "membership confirmed (转正)"


def _probation_extended(e: ProbationExtended) -> str:
    return f"probation extended by {e.months} months"


def _inquiry_received(e: InquiryReceived) -> str:
    contacts = "; ".join(f"{c.who}: “{c.answer}”" for c in e.prior_contacts)
    return f"inquiry ({e.channel.value}): {e.summary}" + (
        f" — earlier: {contacts}" if contacts else ""
    )


def _requirements_notified(e: RequirementsNotified) -> str:
    return "requirements told at once: " + ", ".join(e.documents)


def _evidence_recorded(e: EvidenceRecorded) -> str:
    until = f", valid until {e.valid_until}" if e.valid_until else ""
    return f"evidence {e.kind.value} {e.reference}{until}"


def _archive_reviewed(e: ArchiveReviewed) -> str:
    return f"archive reviewed: {e.finding}"


def _origin_contacted(e: OriginContacted) -> str:
    return f"origin contacted: {e.contacted_unit_id or e.contacted_name} → {e.outcome.value}"


def _unit_consulted(e: UnitConsulted) -> str:
    return f"consulted {e.consulted_unit_id}: {e.note}"


def _introduction_issued(e: IntroductionIssued) -> str:
    return f"introduction issued to {e.to_unit_id or e.to_name}: {e.purpose}"


def _transfer_held(e: TransferHeld) -> str:
    until = f" until {e.until}" if e.until else ""
    return f"transfer held under {e.rule}{until}: {e.note}"


def _performance_report_sent(e: PerformanceReportSent) -> str:
    return f"performance report to {e.to_unit_id} ({e.covering_from}–{e.covering_to})"


def _letter_issued(e: LetterIssued) -> str:
    extra = f", overrides {', '.join(e.overridden_rules)}" if e.overridden_rules else ""
    return (
        f"letter {e.letter_no} to {e.to_unit_id}, valid until {e.valid_until},"
        f" dues paid through {e.dues_paid_through}{extra}"
    )


def _letter_declined(e: LetterDeclined) -> str:
    return f"letter {e.letter_no} declined: {e.reason_code.value} {e.note}".rstrip()


def _letter_voided(e: LetterVoided) -> str:
    return f"letter {e.letter_no} voided: {e.reason}"


def _letter_expired(e: LetterExpired) -> str:
    return f"letter {e.letter_no} came back expired"


def _receipt_returned(e: ReceiptReturned) -> str:
    return f"receipt for letter {e.letter_no} returned"


def _referred(e: Referred) -> str:
    return f"referred to {e.to_unit_id} ({e.handover.value}): {e.reason}"


def _referral_accepted(e: ReferralAccepted) -> str:
    return "referral accepted"


def _referral_declined(e: ReferralDeclined) -> str:
    return f"referral declined: {e.reason_code.value} {e.note}".rstrip()


def _attached(e: Attached) -> str:
    letter = f" on letter {e.letter_no}" if e.letter_no else ""
    why = (
        f" — override ({', '.join(e.overridden_rules)}): {e.override_reason}"
        if (e.overridden_rules)
        else ""
    )
    return f"attached, basis {e.basis.value}{letter}{why}"


def _case_withdrawn(e: CaseWithdrawn) -> str:
    return f"case withdrawn: {e.reason}"


def _dues_received(e: DuesReceived) -> str:
    return f"dues {e.months_from}–{e.months_to}, {e.amount}"


def _activity_attended(e: ActivityAttended) -> str:
    return f"activity attended: {e.kind}"


def _contact_made(e: ContactMade) -> str:
    return f"contact made ({e.channel.value}): {e.note}"


def _entry_voided(e: EntryVoided) -> str:
    return f"entry v{e.voided_version} (position {e.voided}) voided: {e.reason}"


_DESCRIBE: dict[type[MemberEvent], Callable[[Any], str]] = {
    MemberEnrolled: _member_enrolled,
    MembershipConfirmed: _membership_confirmed,
    ProbationExtended: _probation_extended,
    InquiryReceived: _inquiry_received,
    RequirementsNotified: _requirements_notified,
    EvidenceRecorded: _evidence_recorded,
    ArchiveReviewed: _archive_reviewed,
    OriginContacted: _origin_contacted,
    UnitConsulted: _unit_consulted,
    IntroductionIssued: _introduction_issued,
    TransferHeld: _transfer_held,
    PerformanceReportSent: _performance_report_sent,
    LetterIssued: _letter_issued,
    LetterDeclined: _letter_declined,
    LetterVoided: _letter_voided,
    LetterExpired: _letter_expired,
    ReceiptReturned: _receipt_returned,
    Referred: _referred,
    ReferralAccepted: _referral_accepted,
    ReferralDeclined: _referral_declined,
    Attached: _attached,
    CaseWithdrawn: _case_withdrawn,
    DuesReceived: _dues_received,
    ActivityAttended: _activity_attended,
    ContactMade: _contact_made,
    EntryVoided: _entry_voided,
}
