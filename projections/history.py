"""A member's history as it was: the same fold as everywhere, stopped early.

``as_of`` asks what had *happened* by a date (events with ``occurred_on`` up
to it, as the registry knows them now); ``as_recorded`` and ``position`` ask
what the registry *knew* then (events recorded up to that time or log
position). A back-dated entry shows in one and not the other.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from domain import rules
from domain.errors import InvalidInput, NotFound
from domain.member_events import MemberEvent
from domain.member_state import fold
from domain.registry import SHANGHAI, Registry
from projections import rows
from projections.queries import judge_findings, summarise_case
from projections.schema import COLUMNS
from store.sql import Db

Rec = dict[str, Any]


def _rec(name: str, row: rows.Row) -> Rec:
    return dict(zip(COLUMNS[name], row, strict=True))


def member_events_with_positions(
    registry: Registry, member_id: UUID
) -> list[tuple[int, MemberEvent]]:
    """The member's stream, each event with its log position."""
    db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
    table = registry.recorder.events_table_name  # type: ignore[attr-defined]
    if db.backend == "postgres":
        found = db.query(
            f"SELECT originator_version, notification_id FROM {table} WHERE originator_id = ?",
            (member_id,),
        )
    else:
        found = db.query(
            f"SELECT originator_version, rowid FROM {table} WHERE originator_id = ?",
            (member_id.hex,),
        )
    positions = {int(v): int(p) for v, p in found}
    stored = registry.recorder.select_events(member_id)
    events = [registry.mapper.to_domain_event(s) for s in stored]
    return [(positions[e.originator_version], e) for e in events if isinstance(e, MemberEvent)]


def member_history(
    registry: Registry,
    member_id: UUID | str,
    *,
    as_of: date | None = None,
    as_recorded: date | None = None,
    position: int | None = None,
) -> Rec:
    """The member's trail, holder, cases and findings, as of a date or as recorded."""
    if sum(x is not None for x in (as_of, as_recorded, position)) > 1:
        raise InvalidInput("give at most one of as_of, as_recorded and position", field="as_of")
    for day, name in ((as_of, "as_of"), (as_recorded, "as_recorded")):
        rules.date_in_calendar(day, name)
    mid = member_id if isinstance(member_id, UUID) else UUID(str(member_id))
    events = member_events_with_positions(registry, mid)
    if not events:
        raise NotFound(f"no member {mid}", code="UNKNOWN_MEMBER", field="member_id")
    if as_of is not None:
        events = [(p, e) for p, e in events if e.occurred_on <= as_of]
    elif as_recorded is not None:
        cutoff = datetime.combine(as_recorded + timedelta(days=1), time(), SHANGHAI)
        events = [(p, e) for p, e in events if e.timestamp < cutoff]
    elif position is not None:
        events = [(p, e) for p, e in events if p <= position]
    on = as_of or as_recorded or registry.clock()
    state = fold((e for _, e in events), by_date=as_of is not None)
    if not events:
        return {
            "member_id": str(mid),
            "known": False,
            "on": on.isoformat(),
            "trail": [],
            "cases": [],
            "findings": [],
        }
    version = events[-1][1].originator_version
    member = _rec("members", rows.member_row(mid, version, state))
    cases = [_rec("cases", r) for r in rows.case_rows(mid, state)]
    referrals: dict[str, list[Rec]] = defaultdict(list)
    for r in rows.referral_rows(mid, state):
        rec = _rec("referrals", r)
        referrals[rec["case_id"]].append(rec)
    trail = []
    for p, e in events:
        row = _rec("trail", rows.trail_row(p, e))
        row["voided"] = int(e.originator_version in state.voided)
        row["void_reason"] = state.voided.get(e.originator_version)
        trail.append(row)
    dissolved = {
        u.code: u.dissolved_on
        for u in registry.units()
        if u.dissolved_on is not None and u.dissolved_on <= on
    }
    findings = judge_findings(
        [member],
        cases,
        referrals,
        [_rec("letters", r) for r in rows.letter_rows(mid, state)],
        [_rec("overrides", r) for r in rows.override_rows(mid, state)],
        dissolved,
        on,
    )
    return {
        "member_id": str(mid),
        "known": True,
        "name": state.name,
        "standing": state.standing.value,
        "holder_unit_id": state.holder_unit_id,
        "since": member["holder_since"],
        "in_transit_to": state.in_transit_to,
        "on": on.isoformat(),
        "as_of": as_of.isoformat() if as_of else None,
        "as_recorded": as_recorded.isoformat() if as_recorded else None,
        "position": position,
        "cases": [
            summarise_case(
                c, referrals[c["case_id"]], [t for t in trail if t["case_id"] == c["case_id"]], on
            )
            for c in cases
        ],
        "trail": trail,
        "findings": [f.as_dict() for f in findings],
    }
