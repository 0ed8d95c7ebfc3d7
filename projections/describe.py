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


def _inquiry_received(e: InquiryReceived) -> str:
    contacts = "; ".join(f"{c.who}: “{c.answer}”" for c in e.prior_contacts)
    return f"inquiry ({e.channel.value}): {e.summary}" + (
        f" — earlier: {contacts}" if contacts else ""
    )


def _evidence_recorded(e: EvidenceRecorded) -> str:
    until = f", valid until {e.valid_until}" if e.valid_until else ""
    return f"evidence {e.kind.value} {e.reference}{until}"


def _transfer_held(e: TransferHeld) -> str:
    until = f" until {e.until}" if e.until else ""
    return f"transfer held under {e.rule}{until}: {e.note}"


def _letter_issued(e: LetterIssued) -> str:
    extra = f", overrides {', '.join(e.overridden_rules)}" if e.overridden_rules else ""
    return (
        f"letter {e.letter_no} to {e.to_unit_id}, valid until {e.valid_until},"
        f" dues paid through {e.dues_paid_through}{extra}"
    )


def _attached(e: Attached) -> str:
    letter = f" on letter {e.letter_no}" if e.letter_no else ""
    why = (
        f" — override ({', '.join(e.overridden_rules)}): {e.override_reason}"
        if (e.overridden_rules)
        else ""
    )
    return f"attached, basis {e.basis.value}{letter}{why}"


# One entry per kind of member event (tests/test_describe.py checks none is missing).
_DESCRIBE: dict[type[MemberEvent], Callable[[Any], str]] = {
    MemberEnrolled: lambda e: f"enrolled ({e.standing.value}), held by {e.holder_unit_id}",
    MembershipConfirmed: lambda e: "membership confirmed (转正)",
    ProbationExtended: lambda e: f"probation extended by {e.months} months",
    InquiryReceived: _inquiry_received,
    RequirementsNotified: lambda e: "requirements told at once: " + ", ".join(e.documents),
    EvidenceRecorded: _evidence_recorded,
    ArchiveReviewed: lambda e: f"archive reviewed: {e.finding}",
    OriginContacted: lambda e: (
        f"origin contacted: {e.contacted_unit_id or e.contacted_name} → {e.outcome.value}"
    ),
    UnitConsulted: lambda e: f"consulted {e.consulted_unit_id}: {e.note}",
    IntroductionIssued: lambda e: (
        f"introduction issued to {e.to_unit_id or e.to_name}: {e.purpose}"
    ),
    TransferHeld: _transfer_held,
    PerformanceReportSent: lambda e: (
        f"performance report to {e.to_unit_id} ({e.covering_from}–{e.covering_to})"
    ),
    LetterIssued: _letter_issued,
    LetterDeclined: lambda e: (
        f"letter {e.letter_no} declined: {e.reason_code.value} {e.note}".rstrip()
    ),
    LetterVoided: lambda e: f"letter {e.letter_no} voided: {e.reason}",
    LetterExpired: lambda e: f"letter {e.letter_no} came back expired",
    ReceiptReturned: lambda e: f"receipt for letter {e.letter_no} returned",
    Referred: lambda e: f"referred to {e.to_unit_id} ({e.handover.value}): {e.reason}",
    ReferralAccepted: lambda e: "referral accepted",
    ReferralDeclined: lambda e: f"referral declined: {e.reason_code.value} {e.note}".rstrip(),
    Attached: _attached,
    CaseWithdrawn: lambda e: f"case withdrawn: {e.reason}",
    DuesReceived: lambda e: f"dues {e.months_from}–{e.months_to}, {e.amount}",
    ActivityAttended: lambda e: f"activity attended: {e.kind}",
    ContactMade: lambda e: f"contact made ({e.channel.value}): {e.note}",
    EntryVoided: lambda e: f"entry v{e.voided_version} (position {e.voided}) voided: {e.reason}",
}
