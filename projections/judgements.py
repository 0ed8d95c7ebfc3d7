"""Judgements made when read, against a date: R5–R8, statuses and ledger colours.

Nothing here is stored, so the tables stay a deterministic fold of the log.
Every function takes plain rows (dicts keyed by column, as the read-model
tables hold them) and the date to judge on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson

from domain.values import add_months

Rec = dict[str, Any]

WARM_ACCEPT_DAYS = 14
DECLINED_LEFT_DAYS = 14
STALLED_DAYS = 30
RECEIPT_DUE_DAYS = 30
LOST_CONTACT_MONTHS = 6
DUE_WITHIN_DAYS = 14  # how far ahead a unit's queue warns of breaches (预警)
DUE_WITHIN_MAX = 90


def d(text: str | None) -> date | None:
    """A stored ISO date back as a date."""
    return date.fromisoformat(text) if text else None


@dataclass(frozen=True)
class Finding:
    """One compliance finding: a rule broken or bent, by whom, since when."""

    rule: str
    severity: str  # "override" or "breach"
    member_id: str
    case_id: str | None
    unit_id: str
    since: date
    resolved: date | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Plain values for printing, JSON or CSV."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "member_id": self.member_id,
            "case_id": self.case_id,
            "unit_id": self.unit_id,
            "since": self.since.isoformat(),
            "resolved": self.resolved.isoformat() if self.resolved else None,
            "detail": self.detail,
        }


def _actions(case: Rec) -> list[tuple[str, date, int]]:
    return [(u, date.fromisoformat(on), v) for u, on, v in orjson.loads(case["actions"])]


# --- rows as they stood on a date ---------------------------------------------------------
# The tables hold each row as it stands now. Judged on an earlier date, what happened
# after it must not count: a closure, an attachment, an answer or an action recorded
# for a later day. (Histories "as of" a date fold the log stopped early instead.)


def case_on(case: Rec, on: date) -> Rec:
    """The case row as it stood on ``on``: later actions, closure and attachment left out."""
    closed, attached = d(case["closed_on"]), d(case["attached_on"])
    actions = _actions(case)
    if (
        all(day <= on for _, day, _ in actions)
        and (closed is None or closed <= on)
        and (attached is None or attached <= on)
    ):
        return case
    earlier = [(unit, day, version) for unit, day, version in actions if day <= on]
    past = dict(case)
    past["actions"] = json.dumps([[unit, day.isoformat(), v] for unit, day, v in earlier])
    # The units that had acted by then, in the order they first did (as the fold keeps them).
    past["participants"] = json.dumps(list(dict.fromkeys(unit for unit, _, _ in earlier)))
    last = max((day for _, day, _ in earlier), default=None)
    past["last_action_on"] = last.isoformat() if last is not None else case["opened_on"]
    if closed is not None and closed > on:
        past["closed_on"] = past["closed_by"] = None
    if attached is not None and attached > on:
        past["attached_unit_id"] = past["attached_on"] = past["attached_basis"] = None
    return past


def referrals_on(referrals: list[Rec], on: date) -> list[Rec]:
    """The referrals made by ``on``, with an answer only if it was given by then."""
    made = []
    for referral in referrals:
        if d(referral["referred_on"]) > on:  # type: ignore[operator]
            continue
        answered = d(referral["answered_on"])
        if answered is not None and answered > on:
            referral = {**referral, "answer": None, "answered_on": None, "answered_version": None}
        made.append(referral)
    return made


def letter_on(letter: Rec, on: date) -> Rec | None:
    """The letter as it stood on ``on`` (None if not issued yet)."""
    if d(letter["issued_on"]) > on:  # type: ignore[operator]
        return None
    settled, back = d(letter["settled_on"]), d(letter["receipt_returned_on"])
    if (settled is None or settled <= on) and (back is None or back <= on):
        return letter
    past = dict(letter)
    if settled is not None and settled > on:
        past["status"], past["settled_on"] = "outstanding", None
    if back is not None and back > on:
        past["receipt_returned_on"] = None
    return past


# --- R5 first-inquiry responsibility ------------------------------------------


def _first_action(
    actions: list[tuple[str, date, int]], unit: str, after: int, since: date
) -> date | None:
    """The day of ``unit``'s first action in the case recorded after stream version
    ``after`` and dated on or after ``since``: an entry back-dated to before what it
    would answer answers nothing."""
    return min(
        (day for u, day, version in actions if u == unit and version > after and day >= since),
        default=None,
    )


def accepted_on(referral: Rec, case: Rec) -> date | None:
    """When the addressee took the referral on: its acceptance or any later action of its
    in the case (DESIGN.md R5), whatever the handover."""
    referred_on = d(referral["referred_on"])
    assert referred_on is not None
    return _first_action(_actions(case), referral["to_unit_id"], referral["version"], referred_on)


def referral_state(referral: Rec, case: Rec, on: date) -> tuple[str, date | None]:
    """What a referral amounts to for R5 on ``on``, and since when.

    One of ``accepted``, ``pending`` (warm, within its 14 days), ``overtaken`` (below),
    ``cold`` (a cold handover, or warm and neither accepted nor declined within 14
    days — from the 15th), ``declined`` (within the 14 days, and the first responder acted again
    within 14 days of it) and ``declined_and_left`` (it did not: from the 15th day).
    A cold handover stays cold whatever the answer: the first responder sent the
    member off without taking them there.

    A window still running when the case closes stops there: once closed, nobody can
    act in the case, so a warm referral still pending is ``overtaken`` (from the
    closing day) rather than cold 14 days later, and a decline the first responder
    still had time to answer stays ``declined``.
    """
    referred_on = d(referral["referred_on"])
    assert referred_on is not None
    if referral["handover"] == "cold":
        return "cold", referred_on
    deadline = referred_on + timedelta(days=WARM_ACCEPT_DAYS)
    closed = d(case["closed_on"])
    actions = _actions(case)
    taken = _first_action(actions, referral["to_unit_id"], referral["version"], referred_on)
    if taken is not None and taken <= deadline and referral["answer"] != "declined":
        return "accepted", taken
    answered_on = d(referral["answered_on"])
    # Declined in time — or later, having taken the referral on in time (a warm one
    # taken on is not cold): the first responder must act again within 14 days.
    if (
        referral["answer"] == "declined"
        and answered_on is not None
        and taken is not None
        and taken <= deadline
    ):
        left = answered_on + timedelta(days=DECLINED_LEFT_DAYS)
        again = _first_action(
            actions, case["first_responder"], referral["answered_version"], answered_on
        )
        if (
            (again is not None and again <= left)
            or (again is None and on <= left)
            or (closed is not None and closed <= left)
        ):
            return "declined", answered_on
        return "declined_and_left", left + timedelta(days=1)
    if taken is None and answered_on is None:
        if closed is not None and closed <= deadline:
            return "overtaken", closed
        if on <= deadline:
            return "pending", referred_on
    return "cold", deadline + timedelta(days=1)


def case_outcome(case: Rec, referrals: list[Rec], on: date) -> tuple[str, date | None]:
    """The first responder's outcome on ``on``: seen_through, dropped, withdrawn or open.

    ``case`` and ``referrals`` as they stood on ``on`` (``case_on``, ``referrals_on``).
    """
    # Dropped from the earliest drop among the first responder's referrals, whichever
    # was made first: a later cold referral may drop the case before a warm one goes cold.
    drops = [
        since
        for referral in referrals
        if referral["from_unit_id"] == case["first_responder"]
        for state, since in (referral_state(referral, case, on),)
        if state in ("cold", "declined_and_left") and since is not None and since <= on
    ]
    if drops:
        return "dropped", min(drops)
    if case["closed_by"] == "withdrawn":
        return "withdrawn", d(case["closed_on"])
    if case["closed_by"] == "activity":
        return "seen_through", d(case["closed_on"])
    return "open", None


def stalled_since(case: Rec, on: date) -> date | None:
    """R5: an open case nobody acted on for more than 30 days is stalled, from the 31st."""
    if case["closed_on"] is not None:
        return None
    last = d(case["last_action_on"])
    assert last is not None
    since = last + timedelta(days=STALLED_DAYS + 1)
    return since if on >= since else None


# --- member status ------------------------------------------------------------------


def member_status(member: Rec, holder_dissolved_on: date | None, on: date) -> str:
    """attached, in_transit, held or orphaned (R8), on ``on``."""
    if holder_dissolved_on is not None and holder_dissolved_on <= on:
        return "orphaned"
    if member["in_transit_to"]:
        return "in_transit"
    if member["hold_rule"] and (member["hold_until"] is None or d(member["hold_until"]) >= on):  # type: ignore[operator]
        return "held"
    return "attached"


def ledger_colour(member: Rec, open_case: Rec | None, on: date) -> str:
    """The colour units already use: red overdue, yellow papers in progress, green done."""
    if open_case is None:
        return "green"
    valid_until = d(member["letter_valid_until"])
    if stalled_since(open_case, on) is not None or (valid_until is not None and on > valid_until):
        return "red"
    return "yellow"


# --- findings -------------------------------------------------------------------------


def override_findings(overrides: list[Rec]) -> list[Finding]:
    """R1, R2, R3: flexibility used, on the record."""
    return [
        Finding(
            o["rule"],
            "override",
            o["member_id"],
            o["case_id"],
            o["unit_id"],
            date.fromisoformat(o["occurred_on"]),
            None,
            o["reason"],
        )
        for o in overrides
    ]


def r5_findings(
    cases: list[Rec], referrals: dict[str, list[Rec]], on: date, known_by: date | None = None
) -> list[Finding]:
    """R5: dropped cases and stalled cases, against the first responder.

    ``known_by``: judge on ``on`` what had happened by this earlier date, as if nothing
    happened after it (a warning of what is coming, see ``due_soon``); default ``on``.
    """
    seen = on if known_by is None else known_by
    found: list[Finding] = []
    for case in cases:
        if d(case["opened_on"]) > seen:  # type: ignore[operator]
            continue
        case = case_on(case, seen)
        made = referrals_on(referrals.get(case["case_id"], []), seen)
        outcome, since = case_outcome(case, made, on)
        if outcome == "dropped" and since is not None:
            found.append(
                Finding(
                    "R5",
                    "breach",
                    case["member_id"],
                    case["case_id"],
                    case["first_responder"],
                    since,
                    None,
                    "dropped",
                )
            )
        stalled = stalled_since(case, on)
        if stalled is not None:
            found.append(
                Finding(
                    "R5",
                    "breach",
                    case["member_id"],
                    case["case_id"],
                    case["first_responder"],
                    stalled,
                    None,
                    "stalled",
                )
            )
    return found


def r6_findings(letters: list[Rec], on: date, known_by: date | None = None) -> list[Finding]:
    """R6: letters past valid-until with no attachment; receipts not back in 30 days
    (``known_by`` as for ``r5_findings``)."""
    found: list[Finding] = []
    for issued in letters:
        letter = letter_on(issued, on if known_by is None else known_by)
        if letter is None:
            continue
        valid_until = date.fromisoformat(letter["valid_until"])
        settled = d(letter["settled_on"])
        # Settled after it ran out (attached, voided or declined late): it was a pocket
        # letter from the day after valid-until until then.
        unused = settled is None or settled > valid_until
        if on > valid_until and unused:
            resolved = settled if settled is not None and settled <= on else None
            found.append(
                Finding(
                    "R6",
                    "breach",
                    letter["member_id"],
                    letter["case_id"],
                    letter["issuer_unit_id"],
                    valid_until + timedelta(days=1),
                    resolved,
                    f"letter {letter['letter_no']}: pocket-member risk",
                )
            )
        if letter["status"] == "attached" and settled is not None:
            due = settled + timedelta(days=RECEIPT_DUE_DAYS)
            back = d(letter["receipt_returned_on"])
            if on > due and (back is None or back > due):
                found.append(
                    Finding(
                        "R6",
                        "breach",
                        letter["member_id"],
                        letter["case_id"],
                        letter["issuer_unit_id"],
                        due + timedelta(days=1),
                        back if back is not None and back <= on else None,
                        f"letter {letter['letter_no']}: receipt overdue",
                    )
                )
    return found


def lost_contact(
    signs: list[tuple[date, date]], on: date, known_by: date | None = None
) -> tuple[date, date | None] | None:
    """R7: the latest stretch of more than six months without word of the member, by ``on``.

    ``signs`` are (heard from on, good through): dues paid for months ahead keep the
    member in good standing until those months end, counted from the day they came in.
    Returns (since, resolved) — resolved is None while it lasts — or None.
    """
    seen = on if known_by is None else known_by
    # The furthest-reaching sign of a day first: dues for months long past, entered on
    # the enrolment day, are no stretch before the member was enrolled.
    known = sorted(
        ((heard, through) for heard, through in signs if heard <= seen),
        key=lambda sign: (sign[0], -sign[1].toordinal()),
    )
    if not known:
        return None

    def lost_from(through: date) -> date:
        return add_months(through, LOST_CONTACT_MONTHS) + timedelta(days=1)

    latest: tuple[date, date | None] | None = None
    lost: date | None = None  # since when the member is without word, while that lasts
    good_through = known[0][1]
    for heard, through in known[1:]:
        since = lost_from(good_through)
        good_through = max(good_through, through)
        if heard >= since:
            lost = lost or since
            # Dues paid late for months long past are no word from the member now: the
            # stretch goes on unless the months they cover reach back within six months.
            if heard < lost_from(good_through):
                if heard > lost:  # word on the very day it began: no stretch at all
                    latest = (lost, heard)
                lost = None
    since = lost_from(good_through)
    if on >= since:
        latest = (lost or since, None)
    return latest


def signs_of_life(member: Rec) -> list[tuple[date, date]]:
    """The member row's signs of life. A bare date is a row written before dues paid ahead
    counted (then a dues payment was the end of its months): read as a sign on that day,
    which judges such a row as that version did until ``harbor rebuild`` rewrites it."""
    return [
        (date.fromisoformat(s), date.fromisoformat(s))
        if isinstance(s, str)
        else (date.fromisoformat(s[0]), date.fromisoformat(s[1]))
        for s in orjson.loads(member["signs"])
    ]


def r7_finding(
    member: Rec, on: date, periods: Holdings | None = None, known_by: date | None = None
) -> Finding | None:
    """R7 for one member, against its holder (``periods``: its holdings, if parsed already —
    with ``known_by``, as they stood then; ``known_by`` as for ``r5_findings``)."""
    episode = lost_contact(signs_of_life(member), on, known_by)
    if episode is None:
        return None
    if known_by is not None and periods is None:
        periods = holdings_known_by(holdings(member), known_by)
    holder = holder_on(member, episode[0], periods) or member["holder_unit_id"]
    return Finding(
        "R7", "breach", member["member_id"], None, holder, episode[0], episode[1], "lost contact"
    )


Holdings = list[tuple[str, date, date | None]]


def holdings(member: Rec) -> Holdings:
    """The member's holders: (unit, from, until) — until None for the present one."""
    periods = [(u, date.fromisoformat(s)) for u, s in orjson.loads(member["holdings"])]
    return [
        (unit, since, periods[i + 1][1] if i + 1 < len(periods) else None)
        for i, (unit, since) in enumerate(periods)
    ]


def holdings_known_by(periods: Holdings, day: date) -> Holdings:
    """The holdings as they stood on ``day``: later ones left out, a later end not yet known."""
    return [
        (unit, since, until if until is not None and until <= day else None)
        for unit, since, until in periods
        if since <= day
    ]


def holder_on(member: Rec, day: date, periods: Holdings | None = None) -> str | None:
    """Who held the member on ``day``."""
    held = [
        unit
        for unit, since, until in (periods if periods is not None else holdings(member))
        if since <= day and (until is None or day < until)
    ]
    return held[-1] if held else None


def r8_findings(
    member: Rec,
    dissolved: dict[str, date],
    on: date,
    periods: Holdings | None = None,
    known_by: date | None = None,
) -> list[Finding]:
    """R8: held by a dissolved unit, from its dissolution until someone took the member in
    (``periods`` and ``known_by`` as for ``r7_finding``)."""
    found: list[Finding] = []
    if not dissolved:
        return found
    if periods is None:
        periods = holdings(member)
        if known_by is not None:
            periods = holdings_known_by(periods, known_by)
    seen = on if known_by is None else known_by
    for unit, since, until in periods:
        gone = dissolved.get(unit)
        if gone is None or gone > seen or (until is not None and gone >= until):
            continue
        resolved = until if until is not None and until <= on else None
        found.append(
            Finding(
                "R8",
                "breach",
                member["member_id"],
                None,
                unit,
                max(gone, since),
                resolved,
                f"held by dissolved unit {unit}",
            )
        )
    return found


# --- early warnings (预警) ---------------------------------------------------------------


def due_soon(found_later: list[Finding], on: date) -> list[Finding]:
    """The breaches that begin after ``on`` among ``found_later`` (findings judged on a
    later date of what had happened by ``on``: ``known_by=on``): what will be a breach
    unless someone acts first.

    That is exact because every time-dependent finding is a window counted from recorded
    dates (R5's 14 and 30 days, R6's valid-until and 30 days, R7's six months): with
    nothing recorded, only the calendar moves.
    """
    return [
        f
        for f in found_later
        if f.severity == "breach" and f.since > on and f.resolved is None
    ]


def what_to_do(finding: Finding) -> str:
    """What the unit can still do before a coming breach begins, in a clerk's words."""
    if finding.rule == "R5" and finding.detail == "stalled":
        return "nobody has acted in this case for a month: record the next step in the case"
    if finding.rule == "R5":
        return (
            "a referral this unit made is not taken up (not accepted, or declined with"
            " nothing done since): follow it up in the case, or take the member in"
        )
    if finding.rule == "R6" and finding.detail.endswith("receipt overdue"):
        return "the return receipt is due: ask the receiving unit for it, or record it if it came"
    if finding.rule == "R6":
        return "the letter runs out: see that the member attaches before then, or issue a new one"
    if finding.rule == "R7":
        return "no word of the member for almost six months: record a contact, dues or activity"
    return "act in the case before the date"
