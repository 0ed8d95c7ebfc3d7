"""Reading the projections: status, case trail, unit queues, scorecards, findings.

Queries read the stable views (the live generation) and judge time-dependent
rules against the date asked for (default: today in Asia/Shanghai).
"""

from __future__ import annotations

import base64
import json
import statistics
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from operator import attrgetter
from typing import Any
from uuid import UUID

from domain import rules
from domain.errors import InvalidInput, NotFound
from domain.registry import Registry
from domain.values import LAST_DAY
from projections import judgements as j
from projections.schema import COLUMNS, ensure_schema, view
from projections.writer import IN_CHUNK
from store.sql import Db

Rec = dict[str, Any]


def _recs(db: Db, name: str, where: str = "", params: tuple[Any, ...] = ()) -> list[Rec]:
    columns = COLUMNS[name]
    rows = db.query(f"SELECT {', '.join(columns)} FROM {view(name)} {where}", params)
    return [dict(zip(columns, row, strict=True)) for row in rows]


@dataclass(frozen=True)
class ScoreCard:
    """How a unit answers first: cases, seen through (句号), dropped (逗号)."""

    unit_id: str
    answered_first: int
    seen_through: int
    dropped: int
    withdrawn: int
    open: int
    median_days_to_attachment: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain values."""
        return dict(self.__dict__)


def _member_status_sql(where: str = "m.member_id = ?", extra: str = "") -> str:
    m_cols, c_cols = COLUMNS["members"], COLUMNS["cases"]
    # One round trip: the member, its holder's dissolution and its open case. Aliases
    # keep the columns apart. ``extra`` columns come last.
    return (
        f"SELECT {', '.join(f'm.{c} AS m_{c}' for c in m_cols)}, u.dissolved_on AS u_gone,"
        f" {', '.join(f'c.{c} AS c_{c}' for c in c_cols)}{extra}"
        f" FROM {view('members')} m"
        f" LEFT JOIN {view('units')} u ON u.code = m.holder_unit_id"
        f" LEFT JOIN {view('cases')} c ON c.case_id = m.open_case_id"
        f" WHERE {where}"
    )


MEMBER_STATUS_SQL = _member_status_sql()  # also what bench/suite.py's baseline runs
# The same columns for every member a unit holds or has a letter coming for, and those
# held by a dissolved unit it is the parent or successor of (R8: it stands in for them).
def _roster_where(m: str) -> str:
    """The roster's members, as member rows aliased ``m`` (four parameters: the unit)."""
    return (
        f"{m}.holder_unit_id = ? OR {m}.in_transit_to = ? OR {m}.holder_unit_id IN"
        f" (SELECT g.code FROM {view('units')} g WHERE g.dissolved_on IS NOT NULL"
        " AND (g.parent_unit_id = ? OR g.successor_unit_id = ?))"
    )


_ROSTER_WHERE = _roster_where("m")
# Names sort by their bytes on both backends (SQLite's BINARY, PostgreSQL's "C"), so the
# pages of one roster are the same whichever store serves them. The count rides on every
# row (a window), so a page and its total come from the same snapshot.
ROSTER_SQL = (
    _member_status_sql(_ROSTER_WHERE, ", COUNT(*) OVER () AS total")
    + " ORDER BY m.name{collate}, m.member_id{collate} LIMIT ? OFFSET ?"
)
ROSTER_COUNT_SQL = f"SELECT COUNT(*) FROM {view('members')} m WHERE {_ROSTER_WHERE}"
# A page after a cursor (the last member of the page before, by name and id): a member
# attached or gone meanwhile does not shift the rest, as it would an offset. Its total
# counts the whole roster in the same statement.
ROSTER_AFTER_SQL = (
    _member_status_sql(
        f"({_ROSTER_WHERE}) AND (m.name{{collate}}, m.member_id{{collate}}) > (?, ?)",
        f", (SELECT COUNT(*) FROM {view('members')} t WHERE {_roster_where('t')}) AS total",
    )
    + " ORDER BY m.name{collate}, m.member_id{collate} LIMIT ?"
)
ROSTER_LIMIT = 1000  # members per page at most
ROSTER_PAGE = 200  # members per page unless asked otherwise
MAX_OFFSET = 2**62  # what both backends' integers hold


def on_roster(status: Rec, unit_id: str) -> Rec:
    """A member's status as a unit's roster lists it: with its ``relation`` to the unit."""
    relation = (
        "held"
        if status["holder_unit_id"] == unit_id
        else "arriving"
        if status["in_transit_to"] == unit_id
        else "orphaned"  # held by a dissolved unit this one stands in for (R8)
    )
    return {**status, "relation": relation}


def check_roster_page(limit: int | None, offset: int, after: str | None) -> None:
    """Refuse a roster page that cannot be read (naming the parameter)."""
    if limit is not None and not 1 <= limit <= ROSTER_LIMIT:
        raise InvalidInput(f"limit is 1 to {ROSTER_LIMIT}", field="limit")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"offset is 0 to {MAX_OFFSET}", field="offset")
    if after is not None and offset:
        raise InvalidInput("give offset or after, not both", field="after")


def next_cursor(member: Rec) -> str:
    """The roster cursor after ``member``: opaque to callers, its name and id inside."""
    text = json.dumps([member["name"], member["member_id"]], ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def roster_cursor(cursor: str) -> tuple[str, str]:
    """The (name, member id) a roster cursor stands for; InvalidInput if it is not one."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = json.loads(raw.decode("utf-8"))
        if (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, str) and "\x00" not in v for v in value)
        ):
            value[0].encode(), value[1].encode()  # a lone surrogate is text no backend stores
            return value[0], value[1]
    except (ValueError, RecursionError):  # also binascii's and UTF-8's errors; nested JSON
        pass
    raise InvalidInput(
        "after is not a roster cursor: pass the next_after of the page before, unchanged",
        field="after",
    )


class ReadModels:
    """The read side of Harbor, over the live projection tables."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
        ensure_schema(self.db)

    def _today(self, on: date | None) -> date:
        rules.date_in_calendar(on, "on")
        return on or self.registry.clock()

    # --- units -------------------------------------------------------------------

    def units(self) -> list[Rec]:
        """Every unit as the projection knows it."""
        return _recs(self.db, "units", "ORDER BY code")

    def letters_out(self, unit_id: str, day: date, *, issued_too: bool = True) -> list[Rec]:
        """The letters to the unit (and, with ``issued_too``, from it) that were out on
        ``day``, as they stood then."""
        iso = day.isoformat()
        units = "(to_unit_id = ? OR issuer_unit_id = ?)" if issued_too else "to_unit_id = ?"
        found = _recs(
            self.db,
            "letters",
            f"WHERE {units} AND issued_on <= ? AND (status = 'outstanding' OR settled_on > ?)",
            (unit_id, unit_id, iso, iso) if issued_too else (unit_id, iso, iso),
        )
        return [
            letter
            for letter in (j.letter_on(row, day) for row in found)
            if letter is not None and letter["status"] == "outstanding"
        ]

    def members_ever_held_by(
        self, units: set[str], also: Collection[str] = ()
    ) -> list[Rec]:
        """The member rows whose holders include one of ``units`` (and the ``also`` ids)."""
        # Every holder is in the holdings' JSON as a quoted code (see ``findings``).
        conditions = ["holdings LIKE ?"] * len(units)
        params: list[Any] = [f'%"{u}"%' for u in sorted(units)]
        found = _recs(self.db, "members", "WHERE " + " OR ".join(conditions), tuple(params))
        missing = sorted(set(also) - {m["member_id"] for m in found})
        for i in range(0, len(missing), 500):
            chunk = missing[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found += _recs(self.db, "members", f"WHERE member_id IN ({marks})", tuple(chunk))
        return found

    def dissolved(self) -> dict[str, date]:
        """The dissolved units' codes, with the day each was dissolved."""
        return {
            u["code"]: date.fromisoformat(u["dissolved_on"])
            for u in _recs(self.db, "units", "WHERE dissolved_on IS NOT NULL")
        }

    # --- members --------------------------------------------------------------------

    def member_names(self, member_ids: set[str]) -> dict[str, str]:
        """Each member's name, a few hundred ids per statement."""
        ids, found = sorted(member_ids), dict[str, str]()
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            rows = self.db.query(
                f"SELECT member_id, name FROM {view('members')}"
                f" WHERE member_id IN ({self.db.placeholders(len(chunk))})",
                chunk,
            )
            found.update((str(member), str(name)) for member, name in rows)
        return found

    def members_named(self, name: str, limit: int = 50) -> list[tuple[str, str]]:
        """(member id, name) of members with exactly this name."""
        rows = self.db.query(
            f"SELECT member_id, name FROM {view('members')} WHERE name = ?"
            f" ORDER BY member_id LIMIT {int(limit)}",
            (name,),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def member_status(self, member_id: UUID | str, on: date | None = None) -> Rec:
        """Holder, since, standing, status and ledger colour of one member."""
        day = self._today(on)
        rows = self.db.query(MEMBER_STATUS_SQL, (str(member_id),))
        return self.status_from_rows(member_id, rows, day)

    def status_from_rows(
        self, member_id: UUID | str, rows: Sequence[Sequence[Any]], on: date | None = None
    ) -> Rec:
        """``member_status`` from the rows of MEMBER_STATUS_SQL run elsewhere (asynchronously)."""
        day = self._today(on)
        m_cols, c_cols = COLUMNS["members"], COLUMNS["cases"]
        if not rows:
            raise NotFound(
                f"no member {member_id} in the projections (yet)",
                code="UNKNOWN_MEMBER",
                field="member_id",
            )
        row = rows[0]
        member = dict(zip(m_cols, row[: len(m_cols)], strict=True))
        gone = row[len(m_cols)]
        dissolved = date.fromisoformat(gone) if gone else None
        case_values = row[len(m_cols) + 1 :]
        open_case = dict(zip(c_cols, case_values, strict=True)) if case_values[0] else None
        return {
            "member_id": member["member_id"],
            "name": member["name"],
            "standing": member["standing"],
            "holder_unit_id": member["holder_unit_id"],
            "since": member["holder_since"],
            "status": j.member_status(member, dissolved, day),
            "in_transit_to": member["in_transit_to"],
            "letter_no": member["letter_no"],
            "letter_valid_until": member["letter_valid_until"],
            "open_case_id": member["open_case_id"],
            "colour": j.ledger_colour(member, open_case, day),
            "version": member["version"],
            "on": day.isoformat(),
        }

    def roster(
        self,
        unit_id: str,
        on: date | None = None,
        *,
        limit: int | None = ROSTER_PAGE,
        offset: int = 0,
        after: str | None = None,
    ) -> Rec:
        """在册: the members a unit holds, and those with its letter coming, by name.

        Each as ``member_status`` gives it, plus ``relation``: ``held`` (this unit is the
        holder), ``arriving`` (a letter to this unit is out; the issuer still holds them,
        R2) or ``orphaned`` (held by a dissolved unit this one is the parent or successor
        of, and so may issue their letter: R2, R8). One page of ``limit`` (None: all of
        them) from ``offset``, or after the cursor ``after``; ``total`` counts them all,
        and ``next_after`` is the cursor of the next page (None on the last). Offset pages
        shift when a member joins or leaves the roster between two reads; cursor pages do
        not (a member joining before the cursor is simply not on the later pages).
        """
        day = self._today(on)
        check_roster_page(limit, offset, after)
        collate = ' COLLATE "C"' if self.db.backend == "postgres" else ""
        # All of them: a LIMIT no roster reaches (SQLite takes no OFFSET without a LIMIT).
        # One row more than the page says whether another page follows.
        page = MAX_OFFSET if limit is None else limit + 1
        params: tuple[str | int, ...]
        if after is None:
            sql, params = ROSTER_SQL, (unit_id,) * 4 + (page, offset)
        else:
            sql, params = ROSTER_AFTER_SQL, (unit_id,) * 8 + roster_cursor(after) + (page,)
        rows = self.db.query(sql.format(collate=collate), params)
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if more else rows
        if rows:
            total = rows[0][-1]
        else:  # past the end (or none at all): the window had no row to ride on
            (total,) = self.db.query(ROSTER_COUNT_SQL, (unit_id,) * 4)[0]
        members = [
            on_roster(self.status_from_rows(row[0], [row[:-1]], day), unit_id) for row in rows
        ]
        return {
            "unit_id": unit_id,
            "on": day.isoformat(),
            "total": int(total),
            "offset": offset,
            "after": after,
            "members": members,
            "next_after": next_cursor(members[-1]) if more else None,
        }

    # --- cases -----------------------------------------------------------------------

    def case(self, case_id: UUID | str, on: date | None = None) -> Rec:
        """A case's audit trail and its R5 judgement."""
        day = self._today(on)
        found = _recs(self.db, "cases", "WHERE case_id = ?", (str(case_id),))
        if not found:
            raise NotFound(f"no case {case_id}", code="UNKNOWN_CASE", field="case_id")
        case = found[0]
        referrals = _recs(
            self.db, "referrals", "WHERE case_id = ? ORDER BY version", (case["case_id"],)
        )
        trail = _recs(self.db, "trail", "WHERE case_id = ? ORDER BY position", (case["case_id"],))
        # Judged on an earlier day, the case as it stood then: nothing recorded for later
        # (before it opened, no trail at all).
        trail = [t for t in trail if date.fromisoformat(t["occurred_on"]) <= day]
        return summarise_case(j.case_on(case, day), j.referrals_on(referrals, day), trail, day)

    # --- queues ------------------------------------------------------------------------

    def unit_queue(
        self,
        unit_id: str,
        on: date | None = None,
        *,
        names: bool = False,
        within: int = j.DUE_WITHIN_DAYS,
    ) -> Rec:
        """待办, 未办结, the open cases a unit answered first, and 预警: the breaches against
        it that begin within ``within`` days unless someone acts; with ``names``, each
        item's ``member_name`` too (for readers who may read those members: see the route)."""
        day = self._today(on)
        if not isinstance(within, int) or not 0 <= within <= j.DUE_WITHIN_MAX:
            raise InvalidInput(
                f"within is a number of days from 0 to {j.DUE_WITHIN_MAX} (got {within!r})",
                field="within",
            )
        todo: list[Rec] = []
        waiting: list[Rec] = []
        iso = day.isoformat()
        # Everything as it stood on the day (``letter_on``, ``case_on``, ``referrals_on``):
        # read for an earlier day, the queue is the one the clerk had then.
        for letter in self.letters_out(unit_id, day):
            item = {
                "kind": "letter",
                "member_id": letter["member_id"],
                "case_id": letter["case_id"],
                "letter_no": letter["letter_no"],
                "since": letter["issued_on"],
                "valid_until": letter["valid_until"],
                # Days left to use it (negative: expired): R6 makes an unused one a breach.
                "days_left": (date.fromisoformat(letter["valid_until"]) - day).days,
                "from": letter["issuer_unit_id"],
                "to": letter["to_unit_id"],
            }
            (todo if letter["to_unit_id"] == unit_id else waiting).append(item)
        unanswered = "referred_on <= ? AND (answer IS NULL OR answered_on > ?)"
        open_then = "opened_on <= ? AND (closed_on IS NULL OR closed_on > ?)"
        pending = j.referrals_on(
            _recs(
                self.db,
                "referrals",
                f"WHERE (to_unit_id = ? OR from_unit_id = ?) AND {unanswered}",
                (unit_id, unit_id, iso, iso),
            ),
            day,
        )
        # Only the cases open on the day that this unit answered first or has a pending
        # referral in, and their referrals, each in one statement: a centre's queue stays a
        # few reads however many cases the registry or the centre holds.
        open_cases = {
            c["case_id"]: j.case_on(c, day)
            for c in _recs(
                self.db,
                "cases",
                f"WHERE {open_then} AND (first_responder = ? OR case_id IN"
                f" (SELECT case_id FROM {view('referrals')} WHERE {unanswered}"
                " AND (to_unit_id = ? OR from_unit_id = ?)) OR case_id IN"
                f" (SELECT case_id FROM {view('referrals')} WHERE to_unit_id = ?"
                " AND referred_on <= ?))",
                (iso, iso, unit_id, iso, iso, unit_id, unit_id, unit_id, iso),
            )
        }
        for referral in pending:
            case = open_cases.get(referral["case_id"])
            if case is None or j.accepted_on(referral, case) is not None:
                continue  # the addressee took it on (accepted it, or acted in the case since)
            item = {
                "kind": "referral",
                "member_id": referral["member_id"],
                "case_id": referral["case_id"],
                "since": referral["referred_on"],
                "handover": referral["handover"],
                "from": referral["from_unit_id"],
                "to": referral["to_unit_id"],
            }
            (todo if referral["to_unit_id"] == unit_id else waiting).append(item)
        todo += self._taken_on(unit_id, day, open_cases)
        first = []
        refs_of: dict[str, list[Rec]] = defaultdict(list)
        for r in _recs(
            self.db,
            "referrals",
            f"WHERE case_id IN (SELECT case_id FROM {view('cases')}"
            f" WHERE {open_then} AND first_responder = ?) ORDER BY version",
            (iso, iso, unit_id),
        ):
            refs_of[r["case_id"]].append(r)
        for case in open_cases.values():
            if case["first_responder"] != unit_id:
                continue
            made = j.referrals_on(refs_of[case["case_id"]], day)
            outcome, _ = j.case_outcome(case, made, day)
            first.append(
                {
                    "case_id": case["case_id"],
                    "member_id": case["member_id"],
                    "opened_on": case["opened_on"],
                    "outcome": outcome,
                    "stalled": j.stalled_since(case, day) is not None,
                }
            )
        due = self._due_soon(unit_id, day, within)
        def key(item: Rec) -> tuple[str, str, str, str]:
            # By date, then the same way on every backend and every read.
            day = item["since"] if "since" in item else item["opened_on"]
            return (day, item["member_id"], item["case_id"], item.get("letter_no") or "")

        if names:
            items = (*todo, *waiting, *first, *due)
            named = self.member_names({item["member_id"] for item in items})
            for item in items:
                item["member_name"] = named.get(item["member_id"])
        return {
            "unit_id": unit_id,
            "on": day.isoformat(),
            "todo": sorted(todo, key=key),
            "waiting_on_others": sorted(waiting, key=key),
            "first_responder_cases": sorted(first, key=key),
            "due_within_days": within,
            "due_soon": due,
        }

    def _taken_on(self, unit_id: str, day: date, open_cases: dict[str, Rec]) -> list[Rec]:
        """已接手: the referrals this unit took on (accepted, or acted in the case since) whose
        case is still open and not yet attached, and which it has not passed on: the case is
        now this unit's to see through, so it stays in its 待办 until then."""
        iso = day.isoformat()
        mine = j.referrals_on(
            _recs(
                self.db,
                "referrals",
                "WHERE (to_unit_id = ? OR from_unit_id = ?) AND referred_on <= ?"
                f" AND case_id IN (SELECT case_id FROM {view('cases')} WHERE opened_on <= ?"
                " AND (closed_on IS NULL OR closed_on > ?)) ORDER BY version",
                (unit_id, unit_id, iso, iso, iso),
            ),
            day,
        )
        items = []
        for referral in mine:
            case = open_cases.get(referral["case_id"])
            taken = None if case is None else j.accepted_on(referral, case)
            if (
                case is None
                or referral["to_unit_id"] != unit_id
                or referral["answer"] == "declined"
                or taken is None
                or taken > day
                or case["attached_unit_id"] is not None
            ):
                continue
            passed_on = any(
                r["from_unit_id"] == unit_id
                and r["case_id"] == referral["case_id"]
                and r["version"] > referral["version"]
                for r in mine
            )
            if passed_on:
                continue
            items.append(
                {
                    "kind": "referral",
                    "member_id": referral["member_id"],
                    "case_id": referral["case_id"],
                    "since": referral["referred_on"],
                    "taken_on": taken.isoformat(),
                    "handover": referral["handover"],
                    "from": referral["from_unit_id"],
                    "to": referral["to_unit_id"],
                }
            )
        return items

    def _due_soon(self, unit_id: str, day: date, within: int) -> list[Rec]:
        """预警: breaches against the unit that begin in the next ``within`` days, soonest
        first, each with what the unit can still do."""
        if within == 0:
            return []
        # The registry's calendar ends with 2999: nothing can begin after its last day.
        last = min(day + timedelta(days=within), LAST_DAY)
        later = self.findings(on=last, unit_id=unit_id, known_by=day)
        return [
            {
                "kind": "breach",
                "rule": f.rule,
                "member_id": f.member_id,
                "case_id": f.case_id,
                "due_on": f.since.isoformat(),
                "days_left": (f.since - day).days,
                "detail": f.detail,
                "action": j.what_to_do(f),
            }
            for f in sorted(j.due_soon(later, day), key=attrgetter("since", "rule", "member_id"))
        ]

    # --- scorecards ------------------------------------------------------------------------

    def scorecards(self, unit_id: str | None = None, on: date | None = None) -> list[ScoreCard]:
        """Per unit: answered first, seen through, dropped, median days to attachment."""
        day = self._today(on)
        # One unit's card reads only the cases it answered first and their referrals.
        mine, params = ("WHERE first_responder = ?", (unit_id,)) if unit_id else ("", ())
        cases = [
            c for c in _recs(self.db, "cases", mine, params)
            if date.fromisoformat(c["opened_on"]) <= day
        ]
        referrals: dict[str, list[Rec]] = defaultdict(list)
        theirs = f"WHERE case_id IN (SELECT case_id FROM {view('cases')} {mine})" if unit_id else ""
        for r in _recs(self.db, "referrals", f"{theirs} ORDER BY version".strip(), params):
            referrals[r["case_id"]].append(r)
        by_unit: dict[str, list[Rec]] = defaultdict(list)
        for c in cases:
            by_unit[c["first_responder"]].append(c)
        units = [unit_id] if unit_id else sorted({u["code"] for u in self.units()} | set(by_unit))
        cards = []
        for unit in units:
            outcomes = [
                j.case_outcome(past, j.referrals_on(referrals[past["case_id"]], day), day)[0]
                for past in (j.case_on(c, day) for c in by_unit[unit])
            ]
            days = [
                (date.fromisoformat(c["attached_on"]) - date.fromisoformat(c["opened_on"])).days
                for c in by_unit[unit]
                if c["attached_on"] and date.fromisoformat(c["attached_on"]) <= day
            ]
            cards.append(
                ScoreCard(
                    unit_id=unit,
                    answered_first=len(outcomes),
                    seen_through=outcomes.count("seen_through"),
                    dropped=outcomes.count("dropped"),
                    withdrawn=outcomes.count("withdrawn"),
                    open=outcomes.count("open"),
                    median_days_to_attachment=statistics.median(days) if days else None,
                )
            )
        return cards

    # --- findings --------------------------------------------------------------------------

    def findings(
        self,
        *,
        on: date | None = None,
        rule: str | None = None,
        unit_id: str | None = None,
        severity: str | None = None,
        open_only: bool = False,
        resolved_only: bool = False,
        member_id: str | None = None,
        known_by: date | None = None,
    ) -> list[j.Finding]:
        """Compliance findings judged on ``on``, filtered as asked (``known_by``: of what had
        happened by that earlier date, as ``judge_findings`` says)."""
        day = self._today(on)
        if unit_id is not None and "\x00" in unit_id:
            return []  # no unit's code holds one (and PostgreSQL's text cannot)

        def rows(name: str, against: str, *unit_params: str, order: str = "") -> list[Rec]:
            # Asked for one unit, each table is read only where a finding could name it
            # (``against``: a superset, the filter below decides), not the whole registry.
            conditions = ["member_id = ?"] if member_id else []
            params: list[Any] = [member_id] if member_id else []
            if unit_id is not None:
                conditions.append(against)
                params += unit_params
            where = "WHERE " + " AND ".join(conditions) if conditions else ""
            return _recs(self.db, name, f"{where} {order}".strip(), tuple(params))

        unit = unit_id or ""
        # R7 and R8 name a unit that held the member: every holder is in the holdings'
        # JSON as a quoted code (codes are ASCII letters, digits and '-_.'; '_' matching
        # any character only widens the superset).
        members = rows("members", "holdings LIKE ?", f'%"{unit}"%')
        cases = rows("cases", "first_responder = ?", unit)  # R5
        letters = rows("letters", "issuer_unit_id = ?", unit)  # R6
        overrides = rows("overrides", "unit_id = ?", unit)  # R1-R3
        referrals: dict[str, list[Rec]] = defaultdict(list)
        answered_first = (
            f"case_id IN (SELECT case_id FROM {view('cases')} WHERE first_responder = ?)"
        )
        for r in rows("referrals", answered_first, unit, order="ORDER BY version"):
            referrals[r["case_id"]].append(r)
        found = judge_findings(
            members, cases, referrals, letters, overrides, self.dissolved(), day, known_by
        )
        return [
            f
            for f in found
            if (rule is None or f.rule == rule)
            and (unit_id is None or f.unit_id == unit_id)
            and (severity is None or f.severity == severity)
            and (not open_only or f.resolved is None)
            and (not resolved_only or f.resolved is not None)
        ]


def judge_findings(
    members: list[Rec],
    cases: list[Rec],
    referrals: dict[str, list[Rec]],
    letters: list[Rec],
    overrides: list[Rec],
    dissolved: dict[str, date],
    on: date,
    known_by: date | None = None,
) -> list[j.Finding]:
    """Every finding the rows support on ``on`` (also used for "as of" histories).

    With ``known_by`` (a date before ``on``): of what had happened by then, as if nothing
    were recorded after it — the breaches that will have begun by ``on`` unless someone
    acts (预警, ``ReadModels.unit_queue``).
    """
    seen = on if known_by is None else known_by
    found = [f for f in j.override_findings(overrides) if f.since <= seen]
    found += j.r5_findings(cases, referrals, on, known_by)
    found += j.r6_findings(letters, on, known_by)
    for member in members:
        # Parsed once for both rules, and only when one of them needs it.
        periods = j.holdings(member) if dissolved else None
        if periods is not None and known_by is not None:
            periods = j.holdings_known_by(periods, known_by)  # cut once for both
        r7 = j.r7_finding(member, on, periods, known_by)
        if r7 is not None:
            found.append(r7)
        if periods:
            found += j.r8_findings(member, dissolved, on, periods, known_by)
    return sorted(found, key=attrgetter("since", "rule", "member_id"))


def summarise_case(case: Rec, referrals: list[Rec], trail: list[Rec], on: date) -> Rec:
    """A case as auditors read it: who answered first, the path, referrals, outcome, trail."""
    outcome, decided = j.case_outcome(case, referrals, on)
    taken = {r["version"]: j.accepted_on(r, case) for r in referrals}
    return {
        "case_id": case["case_id"],
        "member_id": case["member_id"],
        "number": case["number"],
        "first_responder": case["first_responder"],
        "path": case_path(case, referrals),
        "participants": json.loads(case["participants"]),
        "opened_on": case["opened_on"],
        "closed_on": case["closed_on"],
        "closed_by": case["closed_by"],
        "attached_unit_id": case["attached_unit_id"],
        "attached_on": case["attached_on"],
        "outcome": outcome,
        "outcome_since": decided.isoformat() if decided else None,
        "stalled": j.stalled_since(case, on) is not None,
        "referrals": [
            {
                "from": r["from_unit_id"],
                "to": r["to_unit_id"],
                "handover": r["handover"],
                "referred_on": r["referred_on"],
                "reason": r["reason"],
                "state": j.referral_state(r, case, on)[0],
                # The answer, apart from the R5 judgement above (a cold referral stays
                # "cold" there even once the addressee took the member on).
                "answer": "declined"
                if r["answer"] == "declined"
                else "accepted"
                if taken[r["version"]] is not None
                else None,
                "answered_on": r["answered_on"]
                if r["answer"] == "declined"
                else _iso(taken[r["version"]]),
            }
            for r in referrals
        ],
        "trail": trail,
        "on": on.isoformat(),
    }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def case_path(case: Rec, referrals: list[Rec]) -> list[str]:
    """Where the member was sent: the first responder, each referral's addressee, the holder."""
    path = [case["first_responder"]]
    for r in referrals:
        if r["to_unit_id"] != path[-1]:
            path.append(r["to_unit_id"])
    if case["attached_unit_id"] and case["attached_unit_id"] != path[-1]:
        path.append(case["attached_unit_id"])
    return path
