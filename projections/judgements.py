"""Judgements made when read, against a date: R5–R8, statuses and ledger colours.

Nothing here is stored, so the tables stay a deterministic fold of the log.
Every function takes plain rows (dicts keyed by column, as the read-model
tables hold them) and the date to judge on.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from domain.values import add_months

Rec = dict[str, Any]

WARM_ACCEPT_DAYS = 14
DECLINED_LEFT_DAYS = 14
STALLED_DAYS = 30
RECEIPT_DUE_DAYS = 30
LOST_CONTACT_MONTHS = 6


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


# --- R5 first-inquiry responsibility ------------------------------------------


def _actions(case: Rec) -> list[tuple[str, date, int]]:
    return [(u, date.fromisoformat(on), v) for u, on, v in json.loads(case["actions"])]


def referral_state(referral: Rec, case: Rec, on: date) -> tuple[str, date | None]:
    """What a referral amounts to on ``on``, and since when.

    One of ``accepted``, ``pending`` (warm, within its 14 days), ``cold``
    (cold, or warm and not accepted within 14 days), ``declined`` (the first
    responder acted again within 14 days) and ``declined_and_left``.
    """
    referred_on = d(referral["referred_on"])
    assert referred_on is not None
    actions = _actions(case)
    if referral["answer"] == "declined":
        answered_on = d(referral["answered_on"])
        assert answered_on is not None
        deadline = answered_on + timedelta(days=DECLINED_LEFT_DAYS)
        again = [
            day
            for unit, day, version in actions
            if unit == case["first_responder"] and version > referral["answered_version"]
        ]
        if (again and min(again) <= deadline) or (not again and on <= deadline):
            return "declined", answered_on
        return "declined_and_left", deadline
    accepted = [
        day
        for unit, day, version in actions
        if unit == referral["to_unit_id"] and version > referral["version"]
    ]
    accepted_on = min(accepted) if accepted else None
    if referral["handover"] == "cold":
        return "cold", referred_on
    deadline = referred_on + timedelta(days=WARM_ACCEPT_DAYS)
    if accepted_on is not None and accepted_on <= deadline:
        return "accepted", accepted_on
    if accepted_on is None and on <= deadline:
        return "pending", referred_on
    return "cold", deadline


def case_outcome(case: Rec, referrals: list[Rec], on: date) -> tuple[str, date | None]:
    """The first responder's outcome on ``on``: seen_through, dropped, withdrawn or open."""
    for referral in referrals:
        if referral["from_unit_id"] != case["first_responder"]:
            continue
        state, since = referral_state(referral, case, on)
        if state in ("cold", "declined_and_left"):
            return "dropped", since
    if case["closed_by"] == "withdrawn":
        return "withdrawn", d(case["closed_on"])
    if case["closed_by"] == "activity":
        return "seen_through", d(case["closed_on"])
    return "open", None


def stalled_since(case: Rec, on: date) -> date | None:
    """R5: an open case nobody acted on for 30 days is stalled (since that day)."""
    if case["closed_on"] is not None:
        return None
    last = d(case["last_action_on"])
    assert last is not None
    since = last + timedelta(days=STALLED_DAYS)
    return since if on > since else None


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


def r5_findings(cases: list[Rec], referrals: dict[str, list[Rec]], on: date) -> list[Finding]:
    """R5: dropped cases and stalled cases, against the first responder."""
    found: list[Finding] = []
    for case in cases:
        if d(case["opened_on"]) > on:  # type: ignore[operator]
            continue
        outcome, since = case_outcome(case, referrals.get(case["case_id"], []), on)
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


def r6_findings(letters: list[Rec], on: date) -> list[Finding]:
    """R6: letters past valid-until with no attachment; receipts not back in 30 days."""
    found: list[Finding] = []
    for letter in letters:
        valid_until = date.fromisoformat(letter["valid_until"])
        settled = d(letter["settled_on"])
        unused = settled is None or settled > valid_until
        if on > valid_until and unused and letter["status"] != "declined":
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


def lost_contact(signs: list[date], on: date) -> tuple[date, date | None] | None:
    """R7: the latest stretch of more than six months without word of the member, by ``on``.

    Returns (since, resolved) — resolved is None while it lasts — or None.
    """
    known = sorted(s for s in signs if s <= on)
    if not known:
        return None
    latest: tuple[date, date | None] | None = None
    for earlier, later in itertools.pairwise(known):
        since = add_months(earlier, LOST_CONTACT_MONTHS) + timedelta(days=1)
        if later >= since:
            latest = (since, later)
    since = add_months(known[-1], LOST_CONTACT_MONTHS) + timedelta(days=1)
    if on >= since:
        latest = (since, None)
    return latest


def r7_finding(member: Rec, on: date) -> Finding | None:
    """R7 for one member, against its holder."""
    signs = [date.fromisoformat(s) for s in json.loads(member["signs"])]
    episode = lost_contact(signs, on)
    if episode is None:
        return None
    holder = holder_on(member, episode[0]) or member["holder_unit_id"]
    return Finding(
        "R7", "breach", member["member_id"], None, holder, episode[0], episode[1], "lost contact"
    )


def holdings(member: Rec) -> list[tuple[str, date, date | None]]:
    """The member's holders: (unit, from, until) — until None for the present one."""
    periods = [(u, date.fromisoformat(s)) for u, s in json.loads(member["holdings"])]
    return [
        (unit, since, periods[i + 1][1] if i + 1 < len(periods) else None)
        for i, (unit, since) in enumerate(periods)
    ]


def holder_on(member: Rec, day: date) -> str | None:
    """Who held the member on ``day``."""
    held = [
        unit
        for unit, since, until in holdings(member)
        if since <= day and (until is None or day < until)
    ]
    return held[-1] if held else None


def r8_findings(member: Rec, dissolved: dict[str, date], on: date) -> list[Finding]:
    """R8: held by a dissolved unit, from its dissolution until someone took the member in."""
    found: list[Finding] = []
    for unit, since, until in holdings(member):
        gone = dissolved.get(unit)
        if gone is None or gone > on or (until is not None and gone >= until):
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
