"""The rules of DESIGN.md, each one named as what must hold.

Every function here is pure: it looks at folded state and the facts of the
command (with the business date passed in), and either returns quietly,
returns the names of rules that were overridden on the record, or raises a
refusal carrying the rule's code.
"""

from __future__ import annotations

from datetime import date

from domain.errors import InvalidInput, NotFound, RuleRefused
from domain.member_state import Case, Letter, MemberState
from domain.unit import Unit
from domain.values import FIRST_YEAR, LAST_YEAR, Basis, EvidenceKind, Standing, add_months

EVIDENCE_FOR_BASIS: dict[Basis, frozenset[EvidenceKind]] = {
    Basis.WORKPLACE: frozenset({EvidenceKind.LABOUR_CONTRACT, EvidenceKind.EMPLOYMENT_PROOF}),
    Basis.RESIDENCE: frozenset({EvidenceKind.LEASE, EvidenceKind.PROPERTY_CERTIFICATE}),
    Basis.HOUSEHOLD: frozenset({EvidenceKind.HOUSEHOLD_REGISTRATION}),
    Basis.OTHER: frozenset(),
}


# --- general ---------------------------------------------------------------


def date_in_calendar(on: date | None, field: str) -> None:
    """Every date lies in the registry's calendar (1900 to 2999)."""
    if on is not None and not FIRST_YEAR <= on.year <= LAST_YEAR:
        raise InvalidInput(
            f"{field} {on} lies outside {FIRST_YEAR}–{LAST_YEAR}", code="INVALID_DATE", field=field
        )


def date_is_not_in_future(on: date, today: date, field: str = "occurred_on") -> None:
    """Business dates may lie in the past (paper records), never in the future."""
    date_in_calendar(on, field)
    if on > today:
        raise InvalidInput(
            f"{field} {on} is in the future (today is {today})", code="INVALID_DATE", field=field
        )


def date_is_not_before_enrolment(state: MemberState, on: date) -> None:
    """Nothing happens to a member before the registry's first record of them."""
    if state.enrolled_on is not None and on < state.enrolled_on:
        raise InvalidInput(
            f"occurred_on {on} is before the member's enrolment on {state.enrolled_on}",
            code="INVALID_DATE",
            field="occurred_on",
        )


def unit_can_act(unit: Unit, on: date, field: str = "unit_id") -> None:
    """A dissolved unit cannot act (or receive members) on or after its dissolution."""
    if unit.dissolved_on is not None and on >= unit.dissolved_on:
        raise RuleRefused(
            f"unit {unit.code} was dissolved on {unit.dissolved_on}"
            + (f"; its successor is {unit.successor_unit_id}" if unit.successor_unit_id else ""),
            code="UNIT_DISSOLVED",
            field=field,
        )


def unit_is_holder(state: MemberState, unit: Unit, action: str) -> None:
    """Some acts belong to the holding unit alone (confirmation, probation)."""
    if unit.code != state.holder_unit_id:
        raise RuleRefused(
            f"only the holding unit {state.holder_unit_id} may {action}; {unit.code} does not hold"
            " this member",
            code="NOT_HOLDER",
        )


def member_is_probationary(state: MemberState) -> None:
    """Confirmation and probation extensions need a probationary member."""
    if state.standing is not Standing.PROBATIONARY:
        raise RuleRefused("the member is already a full member", code="NOT_PROBATIONARY")


# --- R9 cases ----------------------------------------------------------------


def case_accepts_actions(state: MemberState, case_id: object, *, after_close: bool) -> Case:
    """R9: case actions need an open case; a closed one only takes receipts, expiries, voids."""
    if case_id is None:
        case = state.open_case
        if case is None:
            raise RuleRefused(
                "the member has no open case; record an inquiry first, it opens one",
                code="R9_NO_OPEN_CASE",
                field="case_id",
            )
        return case
    found: Case | None = state.cases.get(case_id)  # type: ignore[call-overload]
    if found is None:
        raise NotFound(f"this member has no case {case_id}", code="UNKNOWN_CASE", field="case_id")
    if not found.is_open and not after_close:
        raise RuleRefused(
            f"case {found.number} closed on {found.closed_on} ({found.closed_by}); only receipts,"
            " letter expiries and voids are accepted now — record a new inquiry to open a case",
            code="R9_CASE_CLOSED",
            field="case_id",
        )
    return found


# --- R1 attachment basis ----------------------------------------------------


def _basis_is_evidenced(
    case: Case, basis: Basis, on: date, unit_region: str, household_region: str
) -> bool:
    kinds = EVIDENCE_FOR_BASIS[basis]
    if any(e.kind in kinds and e.valid_on(on) for e in case.evidence):
        return True
    return basis is Basis.HOUSEHOLD and bool(unit_region) and unit_region == household_region


def attachment_has_basis(
    case: Case,
    basis: Basis,
    on: date,
    *,
    unit_region: str,
    household_region: str,
    override_reason: str | None,
) -> bool:
    """R1: a named basis needs valid evidence, and the highest evidenced basis wins.

    The only overrides are DESIGN.md's two: basis ``other``, and a lower basis
    while a higher one is evidenced. Returns True when ``override_reason``
    carried one of them (an R1 override, on the record); raises otherwise.
    """
    if basis is not Basis.OTHER and not _basis_is_evidenced(
        case, basis, on, unit_region, household_region
    ):
        wanted = ", ".join(sorted(k.value for k in EVIDENCE_FOR_BASIS[basis]))
        extra = (
            " or the unit's region equal to the household region"
            if basis is Basis.HOUSEHOLD
            else ""
        )
        raise RuleRefused(
            f"basis {basis.value} needs valid evidence in the case ({wanted}{extra}) on {on};"
            " record it first, or attach on basis other with override_reason",
            code="R1_BASIS_WITHOUT_EVIDENCE",
            field="basis",
        )
    higher = [
        b
        for b in Basis
        if b.rank < basis.rank
        and b is not Basis.OTHER
        and _basis_is_evidenced(case, b, on, unit_region, household_region)
    ]
    if basis is Basis.OTHER or higher:
        if override_reason:
            return True
        if basis is Basis.OTHER:
            raise RuleRefused(
                "basis other is an exception: give override_reason saying why",
                code="R1_BASIS_WITHOUT_EVIDENCE",
                field="override_reason",
            )
        raise RuleRefused(
            f"valid evidence for the higher basis {higher[0].value} exists; attach on that"
            f" basis or give override_reason for choosing {basis.value}",
            code="R1_LOWER_BASIS_WITHOUT_REASON",
            field="override_reason",
        )
    return False


# --- R2 no limbo -----------------------------------------------------------


def no_letter_outstanding(state: MemberState, on: date) -> None:
    """R2: one letter out at a time — now, and on the day a letter is dated."""
    letter = state.outstanding_letter
    if letter is not None:
        raise RuleRefused(
            f"letter {letter.letter_no} from {letter.issuer_unit_id} to {letter.to_unit_id} is"
            " still outstanding; void it (e.g. reason re-issued) or record it expired first",
            code="R2_LETTER_OUTSTANDING",
        )
    for earlier in state.letters:
        if earlier.issued_on > on:
            # Back-dated before a letter already issued, it would have been out beside it:
            # it is not settled yet, so it was still out on that letter's day.
            free = max(letter.settled_on or letter.issued_on for letter in state.letters)
            raise RuleRefused(
                f"letter {earlier.letter_no} to {earlier.to_unit_id} is dated {earlier.issued_on},"
                f" after {on}: a letter dated {on} would have been out beside it; date the new"
                f" letter on or after {free}, when the last letter was settled",
                code="R2_LETTER_OUTSTANDING",
                field="occurred_on",
            )
        if earlier.issued_on <= on and earlier.settled_on is not None and on < earlier.settled_on:
            raise RuleRefused(
                f"on {on} letter {earlier.letter_no} to {earlier.to_unit_id} was still out (until"
                f" {earlier.settled_on}); date the new letter on or after {earlier.settled_on}",
                code="R2_LETTER_OUTSTANDING",
                field="occurred_on",
            )


def dated_in_its_case(state: MemberState, case: Case, on: date) -> None:
    """R9 in business dates: a case's entries fall on or after the day the case before it
    closed, so that no day has two open cases. (An entry may come before the case's first
    inquiry: papers brought before the member formally asked.)"""
    before = next((c for c in state.cases.values() if c.number == case.number - 1), None)
    if before is not None and before.closed_on is not None and on < before.closed_on:
        raise RuleRefused(
            f"on {on} case {before.number} was still open (it closed on {before.closed_on}):"
            f" an entry of case {case.number} cannot be dated then — date it on or after"
            f" {before.closed_on}",
            code="R9_CASE_CLOSED",
            field="occurred_on",
        )


def new_case_after_the_last(state: MemberState, on: date) -> None:
    """R9: a new case opens on or after the day the last one closed (one open at a time)."""
    last = state.latest_case()
    if last is not None and last.closed_on is not None and on < last.closed_on:
        raise RuleRefused(
            f"on {on} case {last.number} was still open (it closed on {last.closed_on}) and is"
            " closed now; an inquiry dated then cannot open a new case — date it on or after"
            f" {last.closed_on}",
            code="R9_CASE_CLOSED",
            field="occurred_on",
        )


def issuer_holds_member(state: MemberState, issuer: Unit, holder: Unit | None, on: date) -> None:
    """R2: only the holder issues, or the parent or successor of a dissolved holder."""
    if issuer.code == state.holder_unit_id:
        since = state.holdings[-1].since if state.holdings else None
        if since is not None and on < since:
            raise RuleRefused(
                f"{issuer.code} holds this member since {since}; a letter it issues cannot be"
                f" dated before that (on {on} another unit held them)",
                code="R2_NOT_HOLDER",
                field="occurred_on",
            )
        return
    holder_gone = (
        holder is not None and holder.dissolved_on is not None and holder.dissolved_on <= on
    )
    if (
        holder_gone
        and holder is not None
        and issuer.code in (holder.parent_unit_id, holder.successor_unit_id)
    ):
        return
    raise RuleRefused(
        f"{issuer.code} does not hold this member ({state.holder_unit_id} does); only the holder,"
        " or the parent or successor of a dissolved holder, may issue a letter",
        code="R2_NOT_HOLDER",
    )


def letter_addressed_to(state: MemberState, unit_code: str, letter_no: str | None) -> Letter | None:
    """R2: the outstanding letter addressed to ``unit_code`` (matching ``letter_no`` if given)."""
    letter = state.outstanding_letter
    if letter is None or letter.to_unit_id != unit_code:
        return None
    if letter_no is not None and letter.letter_no != letter_no:
        return None
    return letter


def attachment_is_addressed(
    state: MemberState, unit_code: str, letter_no: str | None, override_reason: str | None
) -> tuple[Letter | None, bool]:
    """R2: attaching needs the outstanding letter addressed here, or a reason.

    The holder may attach the member to itself while no letter is out (the
    member stays where it is). Returns the letter used and whether R2 was
    overridden.
    """
    if unit_code == state.holder_unit_id and state.outstanding_letter is None:
        return None, False
    letter = letter_addressed_to(state, unit_code, letter_no)
    if letter is not None:
        return letter, False
    if override_reason:
        return None, True
    named = f"letter {letter_no}" if letter_no else "any outstanding letter"
    raise RuleRefused(
        f"{named} is not addressed to {unit_code}; attach on a letter, or give override_reason"
        " (e.g. the letter was lost)",
        code="R2_NOT_ADDRESSED",
        field="letter_no",
    )


# --- R3 / R4 probationary members --------------------------------------------


def probation_end(state: MemberState, on: date | None = None) -> date | None:
    """Twelve months after probation started, plus any extensions (those made by ``on``)."""
    if state.probation_started_on is None:
        return None
    if on is None:
        return add_months(state.probation_started_on, 12 + state.probation_extension_months)
    months = sum(extra for day, extra in state.extensions if day <= on)
    return add_months(state.probation_started_on, 12 + months)


def probationary_on(state: MemberState, on: date) -> bool:
    """Whether the member was on probation on ``on``: a confirmation counts from its day,
    so a letter back-dated to before it is judged as the probationer's it was."""
    if state.probation_started_on is None:
        return False
    if state.standing is Standing.PROBATIONARY:
        return True
    return state.confirmed_on is not None and on < state.confirmed_on


def probation_allows_transfer(
    state: MemberState, on: date, special_circumstances: str | None
) -> bool:
    """R3: no letter 1–3 months before confirmation, barring special circumstances.

    Returns True when the letter stands only by ``special_circumstances``.
    """
    end = probation_end(state, on)
    if not probationary_on(state, on) or end is None:
        return False
    if add_months(end, -3) <= on <= add_months(end, -1):
        if special_circumstances:
            return True
        raise RuleRefused(
            f"probation ends {end}: no transfer between {add_months(end, -3)} and"
            f" {add_months(end, -1)}; record a TransferHeld until confirmation, or give"
            " special_circumstances",
            code="R3_NEAR_CONFIRMATION",
            field="occurred_on",
        )
    return False


def performance_report_sent(
    state: MemberState, case: Case, to_unit_id: str, on: date, issuer: str
) -> None:
    """R4: past six months of probation, the addressee must have the performance report."""
    start = state.probation_started_on
    if not probationary_on(state, on) or start is None:
        return
    if on <= add_months(start, 6):
        return
    # The issuer is the holder or, once the holder is dissolved, its parent or successor
    # (R2): standing in for the holder, it may send the report too, or none could.
    senders = {state.developing_unit_id, state.holder_unit_id, issuer}
    # "First": a report dated after the letter (recorded since, back-dating the letter)
    # had not reached the addressee when the letter went.
    if any(
        r.to_unit_id == to_unit_id and r.from_unit_id in senders and r.sent_on <= on
        for r in case.reports
    ):
        return
    raise RuleRefused(
        f"the member is more than six months into probation (since {start}); the developing"
        f" unit, the holder or the issuing unit must send the performance report to"
        f" {to_unit_id} on or before the letter's date first",
        code="R4_REPORT_MISSING",
        field="to_unit_id",
    )
