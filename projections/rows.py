"""Rows of the read models, derived from folded state (pure functions, no SQL).

Only what follows from the events is stored: no ages, colours or
time-dependent findings — those are judged when read, against a date.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import orjson

from domain import rules
from domain.member_events import MemberEvent
from domain.member_state import MemberState
from domain.unit import Unit
from projections.describe import describe

Row = tuple[Any, ...]


_UUID_TEXT: dict[int, str] = {}


def as_json(value: Any) -> str:
    """``value`` as compact JSON text (readers parse it; a rebuild writes a lot of it)."""
    return orjson.dumps(value).decode()


def text(u: UUID) -> str:
    """The id as stored (``str``), remembered: a rebuild writes the same ids over and over."""
    key = u.int
    found = _UUID_TEXT.get(key)
    if found is None:
        if len(_UUID_TEXT) >= 16_384:
            _UUID_TEXT.clear()
        found = _UUID_TEXT[key] = str(u)
    return found


def iso(day: date | None) -> str | None:
    """A date as stored (ISO text), or None."""
    return day.isoformat() if day is not None else None


def member_row(member_id: UUID, version: int, s: MemberState) -> Row:
    """The attachment row: who holds the member, since when, what is open."""
    letter = s.outstanding_letter
    hold = _active_hold(s)
    return (
        text(member_id),
        s.name,
        s.standing.value,
        s.household_region,
        s.developing_unit_id,
        iso(s.enrolled_on),
        iso(s.probation_started_on),
        iso(rules.probation_end(s)),
        s.holder_unit_id,
        iso(s.holder_since),
        letter.to_unit_id if letter else None,
        letter.letter_no if letter else None,
        letter.issuer_unit_id if letter else None,
        iso(letter.valid_until) if letter else None,
        str(s.open_case_id) if s.open_case_id else None,
        hold[0] if hold else None,
        hold[1] if hold else None,
        version,
        as_json([[h.unit_id, iso(h.since)] for h in s.holdings]),
        as_json(sorted([k.isoformat(), t.isoformat()] for k, t in s.signs_of_life)),
    )


def _active_hold(s: MemberState) -> tuple[str, str | None] | None:
    case = s.open_case
    hold = case.active_hold if case else None
    return (hold.rule, iso(hold.until)) if hold else None


def case_rows(member_id: UUID, s: MemberState) -> list[Row]:
    """One row per case: first responder, path, closure, every action (for R5)."""
    return [
        (
            text(c.case_id),
            text(member_id),
            c.number,
            iso(c.opened_on),
            c.first_responder,
            iso(c.closed_on),
            c.closed_by,
            c.attached_unit_id,
            iso(c.attached_on),
            c.attached_basis.value if c.attached_basis else None,
            iso(c.last_action_on or c.opened_on),
            as_json(c.participants),
            as_json([[a.unit_id, iso(a.occurred_on), a.version] for a in c.actions]),
        )
        for c in s.cases.values()
    ]


def referral_rows(member_id: UUID, s: MemberState) -> list[Row]:
    """One row per referral, with its answer."""
    return [
        (
            text(member_id),
            r.version,
            text(c.case_id),
            r.from_unit_id,
            r.to_unit_id,
            r.handover.value,
            r.reason,
            iso(r.referred_on),
            r.answer,
            iso(r.answered_on),
            r.answered_version,
        )
        for c in s.cases.values()
        for r in c.referrals
    ]


def letter_rows(member_id: UUID, s: MemberState) -> list[Row]:
    """One row per transfer letter, with where it stands."""
    return [
        (
            text(member_id),
            lt.version,
            text(lt.case_id),
            lt.letter_no,
            lt.issuer_unit_id,
            lt.to_unit_id,
            iso(lt.issued_on),
            iso(lt.valid_until),
            lt.status,
            iso(lt.settled_on),
            iso(lt.receipt_returned_on),
        )
        for lt in s.letters
    ]


def override_rows(member_id: UUID, s: MemberState) -> list[Row]:
    """One row per rule bent on the record."""
    return [
        (
            text(member_id),
            o.version,
            o.rule,
            o.unit_id,
            iso(o.occurred_on),
            text(o.case_id) if o.case_id else None,
            o.reason,
        )
        for o in s.overrides
    ]


def trail_row(position: int, e: MemberEvent) -> Row:
    """One line of the audit trail."""
    recorded_at = e.timestamp if isinstance(e.timestamp, datetime) else None
    return (
        position,
        text(e.originator_id),
        e.originator_version,
        text(e.case_id) if e.case_id else None,
        type(e).__name__,
        e.unit_id,
        e.recorded_by,
        e.occurred_on.isoformat(),
        recorded_at.isoformat() if recorded_at else "",
        describe(e),
        0,
        None,
    )


def unit_row(u: Unit) -> Row:
    """The unit as it stands."""
    return (
        u.code,
        u.name,
        u.kind.value,
        u.parent_unit_id,
        u.region,
        iso(u.registered_on),
        iso(u.dissolved_on),
        u.successor_unit_id,
    )
