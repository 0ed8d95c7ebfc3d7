"""What a member's event stream adds up to: holder, letters, cases.

The state is a plain fold over the member's events. The aggregate keeps it
up to date event by event; ``fold`` rebuilds it from any prefix of the
stream, which is how voided entries stop counting and how "as of" questions
are answered (the same fold, stopped early).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING
from uuid import UUID

from domain.values import Basis, EvidenceKind, Handover, Standing, YearMonth

if TYPE_CHECKING:
    from domain.member_events import MemberEvent


@dataclass
class Evidence:
    kind: EvidenceKind
    reference: str
    recorded_on: date
    valid_until: date | None
    version: int

    def valid_on(self, day: date) -> bool:
        """True when the document existed and had not lapsed on ``day``."""
        return self.recorded_on <= day and (self.valid_until is None or day <= self.valid_until)


@dataclass
class Report:
    from_unit_id: str
    to_unit_id: str
    sent_on: date
    version: int


@dataclass
class Referral:
    from_unit_id: str
    to_unit_id: str
    handover: Handover
    reason: str
    referred_on: date
    version: int
    answer: str | None = None  # "accepted" or "declined"
    answered_on: date | None = None
    answered_version: int | None = None


@dataclass
class Letter:
    letter_no: str
    issuer_unit_id: str
    to_unit_id: str
    issued_on: date
    valid_until: date
    dues_paid_through: YearMonth
    case_id: UUID
    version: int
    # outstanding → attached | declined | voided | expired | superseded
    status: str = "outstanding"
    settled_on: date | None = None
    receipt_returned_on: date | None = None

    @property
    def outstanding(self) -> bool:
        """True while the letter is out and nobody has acted on it."""
        return self.status == "outstanding"


@dataclass
class Holding:
    """A period in which one unit held the member (from ``since`` until the next holding)."""

    unit_id: str
    since: date
    version: int


@dataclass
class Override:
    """A rule bent on the record (R1, R2 at attachment; R3 on a letter)."""

    rule: str
    unit_id: str
    occurred_on: date
    version: int
    case_id: UUID | None
    reason: str


@dataclass
class Hold:
    """A transfer held under a rule (e.g. R3 until confirmation)."""

    rule: str
    until: date | None
    version: int


@dataclass
class Action:
    """One entry in a case: who acted, when (business date), at which stream version."""

    unit_id: str
    occurred_on: date
    version: int


@dataclass
class Inquiry:
    unit_id: str
    occurred_on: date
    version: int


@dataclass
class Case:
    case_id: UUID
    number: int
    opened_on: date
    inquiries: list[Inquiry] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    activities: list[Action] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    referrals: list[Referral] = field(default_factory=list)
    consulted: list[str] = field(default_factory=list)  # units asked to coordinate
    attached_unit_id: str | None = None
    attached_on: date | None = None
    attached_basis: Basis | None = None
    closed_on: date | None = None
    closed_by: str | None = None  # "activity" or "withdrawn"
    last_action_on: date | None = None
    # The latest entry of the case itself (not a dues payment or contact that fell in it):
    # a closure — by withdrawal or by an activity — comes no earlier (R9 in business dates).
    last_entry_on: date | None = None
    latest_letter_version: int | None = None

    @property
    def is_open(self) -> bool:
        """True until an activity at the attaching unit or a withdrawal closes it."""
        return self.closed_on is None

    @property
    def active_hold(self) -> Hold | None:
        """The latest hold, unless a letter was issued after it."""
        if not self.holds:
            return None
        hold = self.holds[-1]
        return (
            hold
            if self.latest_letter_version is None or self.latest_letter_version < hold.version
            else None
        )

    @property
    def first_responder(self) -> str:
        """The unit of the earliest inquiry, by business date and then log order (R5)."""
        first = min(self.inquiries, key=lambda i: (i.occurred_on, i.version))
        return first.unit_id

    def close_if_attended(self) -> None:
        """R9: the case closes at the first activity at the attaching unit on or after attaching."""
        if not self.is_open or self.attached_unit_id is None or self.attached_on is None:
            return
        # An activity dated before an entry of the case did not end it: the case was still
        # being worked on (entries entered out of order); the next activity after them does.
        since = max(self.attached_on, self.last_entry_on or self.attached_on)
        days = [
            a.occurred_on
            for a in self.activities
            if a.unit_id == self.attached_unit_id and a.occurred_on >= since
        ]
        if days:
            self.closed_on = min(days)
            self.closed_by = "activity"

    def enter(self, unit_id: str, day: date, version: int) -> None:
        """Note an entry of the case itself by ``unit_id`` on ``day`` (stream ``version``)."""
        self.touch(unit_id, day, version)
        if self.last_entry_on is None or day > self.last_entry_on:
            self.last_entry_on = day

    def touch(self, unit_id: str, day: date, version: int) -> None:
        """Note that ``unit_id`` acted in the case on ``day`` (stream ``version``)."""
        self.actions.append(Action(unit_id, day, version))
        if unit_id not in self.participants:
            self.participants.append(unit_id)
        if self.last_action_on is None or day > self.last_action_on:
            self.last_action_on = day


@dataclass
class MemberState:
    """Everything the rules need to know about one member, folded from the stream."""

    name: str = ""
    id_digest: str = ""
    standing: Standing = Standing.FULL
    probation_started_on: date | None = None
    probation_extension_months: int = 0
    # R3 and R4 judge a back-dated letter by the day it bears: when each came about.
    confirmed_on: date | None = None
    extensions: list[tuple[date, int]] = field(default_factory=list)  # (on, months)
    developing_unit_id: str | None = None
    household_region: str = ""
    enrolled_on: date | None = None
    holder_unit_id: str = ""
    holder_since: date | None = None
    letters: list[Letter] = field(default_factory=list)
    cases: dict[UUID, Case] = field(default_factory=dict)
    open_case_id: UUID | None = None
    voided: dict[int, str] = field(default_factory=dict)  # version → reason
    holdings: list[Holding] = field(default_factory=list)
    # R7: (heard from on, good through) — the same day, except dues paid for months ahead.
    signs_of_life: list[tuple[date, date]] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    # Activities recorded while no case was open: paper records entered out of order may
    # date one on or after a later-recorded attachment, which it then closes (R9).
    loose_activities: list[Action] = field(default_factory=list)

    @property
    def open_case(self) -> Case | None:
        """The case now open, if any (R9: at most one)."""
        return self.cases[self.open_case_id] if self.open_case_id else None

    @property
    def outstanding_letter(self) -> Letter | None:
        """The letter now out, if any (R2: at most one)."""
        return next((ltr for ltr in self.letters if ltr.outstanding), None)

    @property
    def in_transit_to(self) -> str | None:
        """The addressee of the outstanding letter: the member is on the way there."""
        letter = self.outstanding_letter
        return letter.to_unit_id if letter else None

    def find_letter(
        self,
        letter_no: str,
        *,
        issued_by: str | None = None,
        addressed_to: str | None = None,
        in_case: UUID | None = None,
    ) -> Letter | None:
        """The latest letter with this number (in case ``in_case``) issued by ``issued_by``
        (or addressed to ``addressed_to``); failing that, the latest with this number.

        A number is unique per issuer and year only: a member moved on twice in a year
        may carry two letters "2026-001" from two units, and each unit acts on its own.
        """
        numbered = [
            letter
            for letter in reversed(self.letters)
            if letter.letter_no == letter_no and in_case in (None, letter.case_id)
        ]
        for letter in numbered:
            if (issued_by is None or letter.issuer_unit_id == issued_by) and (
                addressed_to is None or letter.to_unit_id == addressed_to
            ):
                return letter
        return numbered[0] if numbered else None

    def latest_case(self) -> Case | None:
        """The most recently opened case."""
        return next(reversed(self.cases.values()), None) if self.cases else None


def fold(events: Iterable[MemberEvent], *, by_date: bool = False) -> MemberState:
    """The state after ``events`` (a member stream or a prefix of one), voids applied.

    With ``by_date`` the events are those that had happened by some day: a back-dated
    case entry may then come before any inquiry of its case, and is left out until
    the case exists.
    """
    from domain.member_events import CaseEvent, EntryVoided

    history = list(events)
    state = MemberState()
    for event in history:
        if isinstance(event, EntryVoided):
            state.voided[event.voided_version] = event.reason
    for event in history:
        if event.originator_version in state.voided or isinstance(event, EntryVoided):
            continue
        if by_date and isinstance(event, CaseEvent) and event.case_id not in state.cases:
            continue
        event.evolve(state)
    return state
