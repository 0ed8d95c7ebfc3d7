"""A member's history as it was: the same fold as everywhere, stopped early.

``as_of`` asks what had *happened* by a date (events with ``occurred_on`` up
to it, as the registry knows them now); ``as_recorded`` and ``position`` ask
what the registry *knew* then (events recorded up to that time or log
position). A back-dated entry shows in one and not the other.

The same split holds for what the history takes from outside the member's stream
(unit dissolutions) and for corrections (voids): ``as_of`` applies everything the
registry knows now, ``as_recorded`` and ``position`` only what was recorded by then.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from domain import rules
from domain.errors import InvalidInput, NotFound
from domain.member_events import EntryVoided, MemberEvent
from domain.member_state import fold
from domain.registry import SHANGHAI, Registry
from domain.unit import Unit
from projections import judgements as j
from projections import rows
from projections.queries import (
    ROSTER_PAGE,
    ReadModels,
    check_roster_page,
    judge_findings,
    next_cursor,
    on_roster,
    roster_cursor,
    summarise_case,
)
from projections.schema import COLUMNS
from store.sql import Db

Rec = dict[str, Any]

_UNIT_TOPICS = [
    f"{cls.__module__}:{cls.__qualname__}" for cls in (Unit.UnitRegistered, Unit.UnitDissolved)
]
_PAGE = 500


def _rec(name: str, row: rows.Row) -> Rec:
    return dict(zip(COLUMNS[name], row, strict=True))


def member_events_with_positions(
    registry: Registry, member_id: UUID
) -> list[tuple[int, MemberEvent]]:
    """The member's stream, each event with its log position."""
    # The stream first, the positions after: an event appended in between then has a
    # position but is not in the stream read (the other way round it would have none).
    stored = registry.recorder.select_events(member_id)
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
    events = [registry.mapper.to_domain_event(s) for s in stored]
    return [(positions[e.originator_version], e) for e in events if isinstance(e, MemberEvent)]


def unit_dissolutions(
    registry: Registry, *, position: int | None = None, recorded_before: datetime | None = None
) -> dict[str, date]:
    """The dissolved units (code → the business date of the dissolution), read from the log.

    With ``position`` only the dissolutions at or before that log position count, with
    ``recorded_before`` only those recorded before that moment; with neither, every one
    the registry knows now (however far back it is dated).
    """
    codes: dict[UUID, str] = {}
    gone: dict[str, date] = {}
    start = 1
    while True:
        page = registry.recorder.select_notifications(
            start, _PAGE, stop=position, topics=_UNIT_TOPICS
        )
        for n in page:
            e = registry.mapper.to_domain_event(n)
            if isinstance(e, Unit.UnitRegistered):
                codes[e.originator_id] = e.code
            elif isinstance(e, Unit.UnitDissolved) and (
                recorded_before is None or e.timestamp < recorded_before
            ):
                # A unit's registration always comes before its dissolution in the log.
                gone[codes[e.originator_id]] = e.occurred_on
        if len(page) < _PAGE:
            return gone
        start = page[-1].id + 1


def recorded_at(registry: Registry, position: int) -> datetime | None:
    """When the latest event at or before log ``position`` was recorded (None: no such event).

    Positions may have gaps (PostgreSQL's sequence skips numbers of rolled-back inserts),
    so this is the latest event at or before ``position``, not necessarily one at it.
    """
    db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
    table = registry.recorder.events_table_name  # type: ignore[attr-defined]
    column = "notification_id" if db.backend == "postgres" else "rowid"
    found = db.query(f"SELECT MAX({column}) FROM {table} WHERE {column} <= ?", (position,))
    last = found[0][0] if found else None
    if last is None:
        return None
    page = registry.recorder.select_notifications(int(last), 1, stop=int(last))
    if not page:
        return None
    moment = getattr(registry.mapper.to_domain_event(page[0]), "timestamp", None)
    return moment if isinstance(moment, datetime) else None


def member_history(
    registry: Registry,
    member_id: UUID | str,
    *,
    as_of: date | None = None,
    as_recorded: date | None = None,
    position: int | None = None,
) -> Rec:
    """The member's trail, holder, cases and findings, as of a date or as recorded.

    - ``as_of=DATE``: the entries that had *happened* by DATE (``occurred_on ≤ DATE``), as
      the registry knows them now. Every void recorded so far applies: an entry voided
      later is shown marked voided, with the void's reason, and does not count towards
      the holder, cases or findings. A void whose own date is after DATE is no line of
      the trail (it had not happened yet); a void dated on or before DATE is. Units
      count as dissolved from their dissolution dates, as known now. Findings are
      judged on DATE.
    - ``as_recorded=DATE``: what the registry *knew* at the end of DATE (Asia/Shanghai):
      only the entries, voids and unit dissolutions recorded by then count; a later void
      leaves its entry unmarked and counting. Findings are judged on DATE.
    - ``position=N``: what the registry knew at log position N: only the entries, voids
      and unit dissolutions at or before N count. Findings are judged on the day
      (Asia/Shanghai) the latest event at or before N was recorded — when the registry
      knew that much — but never after today; today when nothing is at or before N.
      So a history at N is judged as a reader right after N would have judged it.
    - none of them: everything, judged today.

    The only unit facts a history uses are dissolutions (R8 and nothing else: renames,
    successors and parents do not enter a member's history).
    """
    if sum(x is not None for x in (as_of, as_recorded, position)) > 1:
        raise InvalidInput("give at most one of as_of, as_recorded and position", field="as_of")
    for day, name in ((as_of, "as_of"), (as_recorded, "as_recorded")):
        rules.date_in_calendar(day, name)
    mid = member_id if isinstance(member_id, UUID) else UUID(str(member_id))
    stream = member_events_with_positions(registry, mid)
    if not stream:
        raise NotFound(f"no member {mid}", code="UNKNOWN_MEMBER", field="member_id")
    events = stream
    # Voids that are no line of the trail but still apply (as_of: recorded, dated later).
    later_voids: list[MemberEvent] = []
    recorded_before: datetime | None = None
    today = registry.clock()
    on = today
    if as_of is not None:
        events = [(p, e) for p, e in stream if e.occurred_on <= as_of]
        later_voids = _voided_later([e for _, e in stream], as_of)
        on = as_of
    elif as_recorded is not None:
        recorded_before = datetime.combine(as_recorded + timedelta(days=1), time(), SHANGHAI)
        events = [(p, e) for p, e in stream if e.timestamp < recorded_before]
        on = as_recorded
    elif position is not None:
        events = [(p, e) for p, e in stream if p <= position]
        moment = recorded_at(registry, position)
        if moment is not None:
            on = min(moment.astimezone(SHANGHAI).date(), today)
    if not events:
        return {
            "member_id": str(mid),
            "known": False,
            "on": on.isoformat(),
            "trail": [],
            "cases": [],
            "findings": [],
        }
    state = fold([*(e for _, e in events), *later_voids], by_date=as_of is not None)
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
        code: gone
        for code, gone in unit_dissolutions(
            registry, position=position, recorded_before=recorded_before
        ).items()
        if gone <= on
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


def _voided_later(stream: list[MemberEvent], day: date) -> list[MemberEvent]:
    """The voids dated after ``day``: as of it no line of the trail, yet they apply (a
    history as of a day shows the registry's present knowledge of what had happened)."""
    return [e for e in stream if isinstance(e, EntryVoided) and e.occurred_on > day]


def member_status(
    registry: Registry,
    models: ReadModels,
    member_id: UUID | str,
    on: date | None = None,
    *,
    dissolved: dict[str, date] | None = None,
) -> Rec:
    """``ReadModels.member_status``, and for a day before today the member as they stood
    then: the stream folded over the entries dated on or before it (every void recorded
    so far applies, as for ``as_of``), judged on it. The projection rows hold only now.
    ``dissolved``: ``models.dissolved()``, when the caller read it already."""
    day = on if on is not None else registry.clock()
    rules.date_in_calendar(day, "on")
    if day >= registry.clock():
        return models.member_status(member_id, day)
    mid = member_id if isinstance(member_id, UUID) else UUID(str(member_id))
    stream = registry.member(mid).history
    events = [e for e in stream if e.occurred_on <= day]
    if not events:
        raise NotFound(
            f"member {mid} was not enrolled yet on {day}: ask for a later day",
            code="UNKNOWN_MEMBER",
            field="member_id",
        )
    state = fold([*events, *_voided_later(stream, day)], by_date=True)
    member = _rec("members", rows.member_row(mid, stream[-1].originator_version, state))
    cases = {c["case_id"]: c for c in (_rec("cases", r) for r in rows.case_rows(mid, state))}
    open_case = cases.get(member["open_case_id"] or "")
    gone = (models.dissolved() if dissolved is None else dissolved).get(member["holder_unit_id"])
    row = [
        *(member[c] for c in COLUMNS["members"]),
        gone.isoformat() if gone is not None else None,
        *(open_case[c] if open_case else None for c in COLUMNS["cases"]),
    ]
    return models.status_from_rows(mid, [row], day)


def roster(
    registry: Registry,
    models: ReadModels,
    unit_id: str,
    on: date | None = None,
    *,
    limit: int | None = ROSTER_PAGE,
    offset: int = 0,
    after: str | None = None,
) -> Rec:
    """``ReadModels.roster``, and for a day before today the roster as it stood then: the
    members the unit held that day, those with its letter out to it, and those held by a
    dissolved unit it stands in for, each as ``member_status`` gives them on the day."""
    day = on if on is not None else registry.clock()
    rules.date_in_calendar(day, "on")
    if day >= registry.clock():
        return models.roster(unit_id, day, limit=limit, offset=offset, after=after)
    check_roster_page(limit, offset, after)
    cursor = roster_cursor(after) if after is not None else None
    standing_in = {  # dissolved by then, with this unit as parent or successor (R8)
        u["code"]
        for u in models.units()
        if u["dissolved_on"] is not None
        and date.fromisoformat(u["dissolved_on"]) <= day
        and unit_id in (u["parent_unit_id"], u["successor_unit_id"])
    }
    to_it = models.letters_out(unit_id, day, issued_too=False)
    arriving = {letter["member_id"] for letter in to_it}
    chosen = sorted(
        (
            (m["name"], m["member_id"])
            for m in models.members_ever_held_by({unit_id, *standing_in}, also=arriving)
            if (holder := j.holder_on(m, day)) == unit_id
            or holder in standing_in
            or m["member_id"] in arriving
        ),
        key=lambda pair: (pair[0].encode(), pair[1].encode()),  # as the SQL roster sorts
    )
    start = offset
    if cursor is not None:
        key = (cursor[0].encode(), cursor[1].encode())
        start = next(
            (i for i, (n, m) in enumerate(chosen) if (n.encode(), m.encode()) > key),
            len(chosen),
        )
    page = chosen[start:] if limit is None else chosen[start : start + limit]
    dissolved = models.dissolved()  # once for the page, not once a member
    members = [
        on_roster(member_status(registry, models, member_id, day, dissolved=dissolved), unit_id)
        for _, member_id in page
    ]
    more = limit is not None and start + limit < len(chosen)
    return {
        "unit_id": unit_id,
        "on": day.isoformat(),
        "total": len(chosen),
        "offset": offset,
        "after": after,
        "members": members,
        "next_after": next_cursor(members[-1]) if more and members else None,
    }
