"""Property: projections built in random batches, through crashes, equal a fresh rebuild,
and both agree with a plain reference fold written here (not with projections/ code).

Each example starts from an empty store, registers the article's units, then makes
5–20 random commands over 1–3 members — valid and invalid, every event type, random
acting units and dates; refusals are skipped. Two in three commands "move the story on"
(the next sensible command, by a sensible unit, on a sensible date), so deep histories —
letters, attachments, receipts, voids — are common. Between commands and afterwards the
projections are advanced in random batch sizes; now and then the runner is thrown away
(a crash between batches), made to fail inside a batch (nothing of it may show, the next
run repeats it), or a rebuild swaps in a new generation under it. Then:

(a) every table of the live generation equals, row for row, a fresh rebuild;
(b) member status, cases, trail and scorecard counts read through ReadModels equal a
    reference fold written plainly here from the events' fields (not projections/ code);
    so does a member's history as the registry knew it at a random log position, or as
    of a random day (the same fold stopped early, two ways).

200 examples on SQLite, 70 on PostgreSQL (PROPERTY_EXAMPLES). Run with
``--hypothesis-show-statistics`` to see which commands were accepted or refused.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from api.demo import ARTICLE_UNITS, load_units
from domain.errors import HarborError
from domain.member_events import (
    MEMBER_EVENTS,
    ActivityAttended,
    Attached,
    CaseEvent,
    CaseWithdrawn,
    EntryVoided,
    InquiryReceived,
    LetterDeclined,
    LetterExpired,
    LetterIssued,
    LetterVoided,
    MemberEnrolled,
    MemberEvent,
    MembershipConfirmed,
    ReceiptReturned,
    TransferHeld,
)
from domain.registry import Actor, Registry
from domain.unit import Unit
from projections.history import member_history
from projections.queries import ReadModels
from projections.runner import Projector, rebuild
from projections.schema import view
from tests.conftest import TODAY
from tests.projection_support import (
    assert_same_rows,
    db_of,
    empty_registry,
    is_postgres,
    live_generation,
    live_rows,
    member_event_positions,
    rebuilt_rows,
)

UNITS = [code for code, *_ in ARTICLE_UNITS]
REGIONS = sorted({region for *_, region in ARTICLE_UNITS})
DAY = timedelta(days=1)
NO_SUCH_CASE = uuid.UUID(int=7)

PROPERTY_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Examples per backend: SQLite, the embedded default, takes the most; PostgreSQL runs the
# same property again for parity, at a third of them (an example costs it three times as
# much, and the suite stays well under its 15 minutes).
PROPERTY_EXAMPLES = {"sqlite": 200, "postgres": 70}


# --- the reference fold: plain, from the events' own fields ---------------------------------------


@dataclass
class RefCase:
    """A case as the reference sees it."""

    inquiries: list[tuple[date, int, str]] = field(default_factory=list)  # (on, position, unit)
    attached: tuple[str, date] | None = None
    activities: list[tuple[str, date]] = field(default_factory=list)
    closed: tuple[str, date] | None = None  # ("activity" | "withdrawn", on)
    holds: list[tuple[int, date | None]] = field(default_factory=list)  # (position, until)
    latest_letter: int | None = None  # position of the case's latest letter
    last_entry: date | None = None  # the latest of its own entries (not dues, contacts…)

    @property
    def first_responder(self) -> str:
        return min(self.inquiries)[2]

    @property
    def opened_on(self) -> date:
        return min(self.inquiries)[0]

    def close_if_attended(self) -> None:
        if self.closed is not None or self.attached is None:
            return
        unit, attached_on = self.attached
        # An activity dated before one of the case's own entries did not end it.
        since = max(attached_on, self.last_entry or attached_on)
        days = [on for who, on in self.activities if who == unit and on >= since]
        if days:
            self.closed = ("activity", min(days))


@dataclass
class RefMember:
    """A member as the reference sees it."""

    holder: str = ""
    since: date | None = None
    standing: str = ""
    outstanding: tuple[str, str] | None = None  # (letter_no, addressee)
    cases: dict[UUID, RefCase] = field(default_factory=dict)
    trail: list[tuple[int, str, int, str | None]] = field(default_factory=list)
    # Activities met while no case was open: one dated on or after a (back-dated)
    # attachment met later closes that case.
    loose_activities: list[tuple[str, date]] = field(default_factory=list)

    def open_case(self) -> UUID | None:
        still_open = [cid for cid, c in self.cases.items() if c.closed is None]
        assert len(still_open) <= 1, f"reference: more than one open case {still_open}"
        return still_open[0] if still_open else None

    def status(self, dissolved: dict[str, date], on: date) -> str:
        if self.holder in dissolved and dissolved[self.holder] <= on:
            return "orphaned"
        if self.outstanding is not None:
            return "in_transit"
        cid = self.open_case()
        if cid is not None and self.cases[cid].holds:
            case = self.cases[cid]
            position, until = max(case.holds, key=lambda h: h[0])
            letter_after = case.latest_letter is not None and case.latest_letter > position
            if not letter_after and (until is None or until >= on):
                return "held"
        return "attached"


def reference_fold(
    registry: Registry, up_to: int | None = None, as_of: date | None = None
) -> tuple[dict[UUID, RefMember], dict[str, date]]:
    """Members and dissolved units, folded plainly from the log; voided entries skipped.

    ``up_to``: only what was recorded up to that position. ``as_of``: only member events
    that happened by that day — and a case entry met (in log order) before an inquiry
    of that day opened its case stays in the trail but changes nothing.
    """
    events: list[tuple[int, Any]] = []
    start = 1
    while True:
        page = registry.recorder.select_notifications(start, 500, stop=up_to)
        events += [(n.id, registry.mapper.to_domain_event(n)) for n in page]
        if len(page) < 500:
            break
        start = page[-1].id + 1
    # Every void recorded (up to ``up_to``) applies, whatever its own date: "as of" is what
    # had happened by then as the registry knows it now (DESIGN.md).
    voided = {(e.originator_id, e.voided_version) for _, e in events if isinstance(e, EntryVoided)}
    if as_of is not None:
        events = [
            (p, e) for p, e in events if not isinstance(e, MemberEvent) or e.occurred_on <= as_of
        ]
    unit_codes: dict[UUID, str] = {}
    dissolved: dict[str, date] = {}
    members: dict[UUID, RefMember] = {}
    for position, e in events:
        if isinstance(e, Unit.UnitRegistered):
            unit_codes[e.originator_id] = e.code
        elif isinstance(e, Unit.UnitDissolved):
            dissolved[unit_codes[e.originator_id]] = e.occurred_on
        elif isinstance(e, MemberEvent):
            m = members.setdefault(e.originator_id, RefMember())
            is_voided = (e.originator_id, e.originator_version) in voided
            m.trail.append(
                (position, type(e).__name__, int(is_voided), str(e.case_id) if e.case_id else None)
            )
            # Left out until an inquiry met earlier in the log opened its case: a back-dated
            # entry can come first when the inquiry that opened the case is after the day.
            before_its_case = isinstance(e, CaseEvent) and e.case_id not in m.cases
            if before_its_case:
                event("history as of a day: a case entry dated before its case opened")
            if not is_voided and not isinstance(e, EntryVoided) and not before_its_case:
                _apply(m, position, e)
    return members, dissolved


def _apply(m: RefMember, position: int, e: MemberEvent) -> None:
    case = m.cases.get(e.case_id) if e.case_id is not None else None
    own_entry = isinstance(e, InquiryReceived) or (
        isinstance(e, CaseEvent) and not isinstance(e, ReceiptReturned | LetterExpired)
    )
    if own_entry and e.case_id is not None:
        entered = m.cases.setdefault(e.case_id, RefCase())
        entered.last_entry = max(entered.last_entry or e.occurred_on, e.occurred_on)
    if isinstance(e, MemberEnrolled):
        m.holder, m.since, m.standing = e.holder_unit_id, e.occurred_on, e.standing.value
    elif isinstance(e, MembershipConfirmed):
        m.standing = "full"
    elif isinstance(e, InquiryReceived):
        assert e.case_id is not None
        case = m.cases.setdefault(e.case_id, RefCase())
        case.inquiries.append((e.occurred_on, position, e.unit_id))
    elif isinstance(e, LetterIssued):
        m.outstanding = (e.letter_no, e.to_unit_id)
        assert case is not None
        case.latest_letter = position
    elif isinstance(e, LetterDeclined | LetterVoided | LetterExpired):
        if m.outstanding is not None and m.outstanding[0] == e.letter_no:
            m.outstanding = None
    elif isinstance(e, Attached):
        m.holder, m.since, m.outstanding = e.unit_id, e.occurred_on, None
        assert case is not None
        case.attached = (e.unit_id, e.occurred_on)
        case.activities += [
            (who, on) for who, on in m.loose_activities if who == e.unit_id and on >= e.occurred_on
        ]
    elif isinstance(e, TransferHeld):
        assert case is not None
        case.holds.append((position, e.until))
    elif isinstance(e, CaseWithdrawn):
        assert case is not None
        case.closed = ("withdrawn", e.occurred_on)
    elif isinstance(e, ActivityAttended) and case is not None:
        case.activities.append((e.unit_id, e.occurred_on))
    elif isinstance(e, ActivityAttended):
        m.loose_activities.append((e.unit_id, e.occurred_on))
    if case is not None:
        case.close_if_attended()


def iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def assert_read_models_match_reference(registry: Registry, on: date = TODAY) -> None:
    """Status, cases, trail and answered-first counts through the read side = reference."""
    members, dissolved = reference_fold(registry)
    models = ReadModels(registry)
    db = db_of(registry)
    trail = db.query(
        f"SELECT position, member_id, event_type, voided, case_id FROM {view('trail')}"
        " ORDER BY position"
    )
    expected_trail = [
        (pos, str(mid), kind, voided, case_id)
        for mid, m in members.items()
        for pos, kind, voided, case_id in m.trail
    ]
    assert trail == sorted(expected_trail)
    first_counts: Counter[str] = Counter()
    for mid, m in members.items():
        status = models.member_status(mid, on)
        open_case = m.open_case()
        assert (
            status["holder_unit_id"],
            status["since"],
            status["standing"],
            status["in_transit_to"],
            status["open_case_id"],
            status["status"],
        ) == (
            m.holder,
            iso(m.since),
            m.standing,
            m.outstanding[1] if m.outstanding else None,
            str(open_case) if open_case else None,
            m.status(dissolved, on),
        ), f"member {mid}"
        stored = db.query(f"SELECT case_id FROM {view('cases')} WHERE member_id = ?", (str(mid),))
        assert sorted(r[0] for r in stored) == sorted(str(c) for c in m.cases)
        for cid, c in m.cases.items():
            got = models.case(cid, on)
            assert (
                got["first_responder"],
                got["opened_on"],
                got["closed_by"],
                got["closed_on"],
                got["attached_unit_id"],
                got["attached_on"],
            ) == (
                c.first_responder,
                iso(c.opened_on),
                c.closed[0] if c.closed else None,
                iso(c.closed[1]) if c.closed else None,
                c.attached[0] if c.attached else None,
                iso(c.attached[1]) if c.attached else None,
            ), f"case {cid}"
            assert [t["position"] for t in got["trail"]] == [
                pos for pos, _, _, case_id in m.trail if case_id == str(cid)
            ]
            first_counts[c.first_responder] += 1
    for card in models.scorecards(on=on):
        assert card.answered_first == first_counts[card.unit_id], card
        assert card.answered_first == (
            card.seen_through + card.dropped + card.withdrawn + card.open
        ), card


def assert_history_matches_reference(
    registry: Registry, *, position: int | None = None, as_of: date | None = None
) -> None:
    """member_history(position=N) — what the registry knew at N — and member_history(as_of=D)
    — what had happened by D — are the reference fold of that part of the log."""
    members, _ = reference_fold(registry, up_to=position, as_of=as_of)
    for mid in reference_fold(registry)[0]:
        history = member_history(registry, mid, position=position, as_of=as_of)
        if mid not in members:
            assert not history["known"]
            continue
        m = members[mid]
        assert (history["holder_unit_id"], history["since"], history["in_transit_to"]) == (
            m.holder,
            iso(m.since),
            m.outstanding[1] if m.outstanding else None,
        ), f"member {mid} at position {position} / as of {as_of}"
        assert [(t["position"], t["voided"]) for t in history["trail"]] == [
            (pos, voided) for pos, _, voided, _ in m.trail
        ]
        assert [
            (c["case_id"], c["first_responder"], c["closed_by"], c["attached_unit_id"])
            for c in history["cases"]
        ] == [
            (
                str(cid),
                c.first_responder,
                c.closed[0] if c.closed else None,
                c.attached[0] if c.attached else None,
            )
            for cid, c in m.cases.items()
        ]


# --- random commands ------------------------------------------------------------------------------


def id_number(i: int) -> str:
    return str(330101199001010000 + i)


@dataclass
class World:
    """One example: the registry, hypothesis' draws, what happened so far."""

    registry: Registry
    draw: Callable[[st.SearchStrategy[Any]], Any]
    members: int
    enrolled: dict[int, date] = field(default_factory=dict)
    last: date = TODAY
    projector: Projector | None = None
    current: int = 0  # the member most commands are about, so stories get told to the end
    states: dict[int, Any] = field(default_factory=dict)
    happy: bool = False  # a command that moves the story on: sensible units, dates and case

    def member_id(self, i: int) -> UUID:
        return self.registry.member_id_for(id_number(i))

    def state(self, i: int) -> Any:
        """The member's folded state now (read once per command)."""
        if i not in self.enrolled:
            return None
        if i not in self.states:
            self.states[i] = self.registry.member(self.member_id(i)).state
        return self.states[i]

    def unit(self, *sensible: str | None) -> str:
        """Mostly a unit that makes sense for the command, sometimes any unit."""
        choices = [u for u in sensible if u]
        if choices and (self.happy or self.draw(st.integers(0, 4)) < 4):
            return str(self.draw(st.sampled_from(choices)))
        return str(self.draw(st.sampled_from(UNITS)))

    def day(self, i: int) -> date:
        """A business date from the member's enrolment to TODAY; now and then an invalid one."""
        start = self.enrolled.get(i, TODAY - timedelta(days=400))
        how = 2 if self.happy else self.draw(st.integers(0, 39))
        if how == 0:
            return TODAY + DAY  # in the future
        if how == 1:
            return start - DAY  # before enrolment
        if how < 28:
            on = min(max(self.last, start) + timedelta(days=self.draw(st.integers(0, 20))), TODAY)
        elif how < 34:  # a back-dated paper record
            on = max(self.last - timedelta(days=self.draw(st.integers(1, 30))), start)
        else:
            on = start + timedelta(days=self.draw(st.integers(0, max((TODAY - start).days, 0))))
        self.last = on
        return on

    def case_id(self, state: Any) -> UUID | None:
        """Usually the open case (None); sometimes a named case, or one that does not exist."""
        how = 19 if self.happy else self.draw(st.integers(0, 19))
        if how == 0:
            return NO_SUCH_CASE
        if how < 4 and state is not None and state.cases:
            return UUID(str(self.draw(st.sampled_from(sorted(str(c) for c in state.cases)))))
        return None

    def text(self) -> str:
        return str(self.draw(st.sampled_from(["说明", "情况记录", " "])))


def _participants(state: Any) -> list[str]:
    case = state.open_case if state is not None else None
    return list(case.participants) if case is not None else []


def _holder(state: Any) -> str | None:
    return state.holder_unit_id if state is not None else None


def _letter(state: Any) -> Any:
    if state is None or not state.letters:
        return None
    return state.outstanding_letter or state.letters[-1]


def _letter_no(w: World, state: Any) -> str:
    letter = _letter(state)
    if letter is not None and w.draw(st.integers(0, 4)) > 0:
        return str(letter.letter_no)
    return str(w.draw(st.sampled_from(["L1", "L2", "L3"])))


def _pending_referral_to(state: Any) -> str | None:
    case = state.open_case if state is not None else None
    if case is None:
        return None
    pending = [r.to_unit_id for r in case.referrals if r.answer is None]
    return pending[-1] if pending else None


def _member_positions(w: World, i: int) -> list[tuple[int, str]]:
    mid = w.member_id(i)
    found = []
    for n in w.registry.recorder.select_notifications(1, 10_000):
        if n.originator_id == mid:
            event = w.registry.mapper.to_domain_event(n)
            found.append((n.id, event.unit_id))
    return found


def cmd_enrol(w: World, i: int) -> None:
    probationary = w.draw(st.integers(0, 2)) == 0
    on = TODAY - timedelta(days=w.draw(st.integers(0, 900)))
    if w.draw(st.integers(0, 19)) == 0:
        on = TODAY + DAY
    started = on - timedelta(days=w.draw(st.integers(0, 330)))
    outcome = w.registry.enrol_member(
        Actor(w.unit(), "prop"),
        name=f"党员{i}",
        id_number=id_number(i),
        standing="probationary" if probationary else "full",
        household_region=w.draw(st.sampled_from(REGIONS)),
        occurred_on=on,
        probation_started_on=started if probationary or w.draw(st.integers(0, 9)) == 0 else None,
        developing_unit_id=w.draw(st.one_of(st.none(), st.sampled_from(UNITS))),
        holder_unit_id=w.draw(st.one_of(st.none(), st.sampled_from(UNITS))),
    )
    assert outcome.member_id == w.member_id(i)
    w.enrolled[i] = on
    w.last = on


def cmd_inquiry(w: World, i: int) -> None:
    w.registry.receive_inquiry(
        Actor(w.unit(*_participants(w.state(i))), "prop"),
        w.member_id(i),
        occurred_on=w.day(i),
        channel=w.draw(st.sampled_from(["walk_in", "phone", "letter", "online"])),
        summary="申请转入组织关系",
        prior_contacts=w.draw(st.sampled_from([[], [{"who": "单位负责人", "answer": "找街道"}]])),
    )


def _case_command(name: str) -> Callable[[World, int], None]:
    def run(w: World, i: int) -> None:
        state = w.state(i)
        actor = Actor(w.unit(*_participants(state)), "prop")
        on = w.day(i)
        other = w.unit(*_participants(state), _holder(state))
        common: dict[str, Any] = dict(occurred_on=on, case_id=w.case_id(state))
        r, mid = w.registry, w.member_id(i)
        if name == "requirements":
            r.notify_requirements(actor, mid, documents=["租赁合同", "身份证"], **common)
        elif name == "evidence":
            r.record_evidence(
                actor,
                mid,
                kind=w.draw(
                    st.sampled_from(
                        [
                            "labour_contract",
                            "employment_proof",
                            "lease",
                            "property_certificate",
                            "household_registration",
                        ]
                    )
                ),
                reference="证明-1",
                valid_until=w.draw(
                    st.one_of(st.none(), st.integers(-1, 200).map(lambda k: on + timedelta(k)))
                ),
                **common,
            )
        elif name == "archive":
            r.review_archive(actor, mid, finding="档案齐全", **common)
        elif name == "origin":
            named = w.draw(st.booleans())
            r.contact_origin(
                actor,
                mid,
                outcome=w.draw(
                    st.sampled_from(["reached", "unreachable", "found_superior", "no_record"])
                ),
                contacted_unit_id=None if named else other,
                contacted_name="原单位" if named else None,
                **common,
            )
        elif name == "consult":
            r.consult_unit(actor, mid, consulted_unit_id=other, note="通报情况", **common)
        elif name == "introduction":
            named = w.draw(st.booleans())
            r.issue_introduction(
                actor,
                mid,
                purpose="查阅档案",
                to_unit_id=None if named else other,
                to_name="档案馆" if named else None,
                **common,
            )
        elif name == "hold":
            r.hold_transfer(
                actor,
                mid,
                rule="R3",
                note="等待转正",
                until=w.draw(
                    st.one_of(st.none(), st.integers(-1, 120).map(lambda k: on + timedelta(k)))
                ),
                **common,
            )
        elif name == "report":
            r.send_performance_report(
                Actor(w.unit(_holder(state), state.developing_unit_id if state else None), "prop"),
                mid,
                to_unit_id=w.unit(*(u for u in _participants(state) if u != _holder(state))),
                covering_from=on - timedelta(days=w.draw(st.integers(0, 200))),
                covering_to=on + timedelta(days=w.draw(st.integers(-5, 1))),
                **common,
            )
        elif name == "referral":
            r.refer_case(
                actor,
                mid,
                to_unit_id=other,
                handover=w.draw(st.sampled_from(["warm", "cold"])),
                reason="转往居住地",
                **common,
            )
        elif name == "withdraw":
            r.withdraw_case(actor, mid, reason=w.text(), **common)
        else:  # pragma: no cover - a typo in KINDS
            raise AssertionError(name)

    return run


def cmd_letter(w: World, i: int) -> None:
    state = w.state(i)
    on = w.day(i)
    w.registry.issue_letter(
        Actor(w.unit(_holder(state)), "prop"),
        w.member_id(i),
        occurred_on=on,
        letter_no=w.draw(st.sampled_from(["L1", "L2", "L3"])),
        to_unit_id=w.unit(*(u for u in _participants(state) if u != _holder(state))),
        dues_paid_through=f"{on.year:04d}-{on.month:02d}",
        valid_until=w.draw(
            st.one_of(st.none(), st.integers(-1, 30).map(lambda k: on + timedelta(k)))
        ),
        special_circumstances=w.draw(st.sampled_from([None, None, "本人工作调动"])),
        case_id=w.case_id(state),
    )


def _letter_command(name: str) -> Callable[[World, int], None]:
    def run(w: World, i: int) -> None:
        state = w.state(i)
        letter = _letter(state)
        issuer = letter.issuer_unit_id if letter is not None else None
        addressee = letter.to_unit_id if letter is not None else None
        r, mid = w.registry, w.member_id(i)
        on = w.day(i)
        if name == "expire" and w.happy and letter is not None:
            on = min(letter.valid_until + timedelta(days=w.draw(st.integers(1, 10))), TODAY)
        common: dict[str, Any] = dict(
            occurred_on=on, letter_no=_letter_no(w, state), case_id=w.case_id(state)
        )
        if name == "decline":
            r.decline_letter(
                Actor(w.unit(addressee), "prop"),
                mid,
                reason_code=w.draw(
                    st.sampled_from(["not_our_area", "no_residence_evidence", "other"])
                ),
                note=w.draw(st.sampled_from([None, "无居住证明"])),
                **common,
            )
        elif name == "void":
            r.void_letter(Actor(w.unit(issuer), "prop"), mid, reason="重新开具", **common)
        elif name == "expire":
            r.expire_letter(Actor(w.unit(issuer), "prop"), mid, **common)
        elif name == "receipt":
            r.return_receipt(Actor(w.unit(issuer), "prop"), mid, **common)
        else:  # pragma: no cover
            raise AssertionError(name)

    return run


def _answer_referral(accept: bool) -> Callable[[World, int], None]:
    def run(w: World, i: int) -> None:
        state = w.state(i)
        actor = Actor(w.unit(_pending_referral_to(state)), "prop")
        common: dict[str, Any] = dict(occurred_on=w.day(i), case_id=w.case_id(state))
        if accept:
            w.registry.accept_referral(actor, w.member_id(i), **common)
        else:
            w.registry.decline_referral(
                actor,
                w.member_id(i),
                reason_code=w.draw(st.sampled_from(["not_our_area", "member_unreachable"])),
                note=None,
                **common,
            )

    return run


BASIS_OF = {
    "labour_contract": "workplace",
    "employment_proof": "workplace",
    "lease": "residence",
    "property_certificate": "residence",
    "household_registration": "household",
}


def cmd_attach(w: World, i: int) -> None:
    state = w.state(i)
    letter = state.outstanding_letter if state is not None else None
    case = state.open_case if state is not None else None
    evidenced = [BASIS_OF[e.kind.value] for e in case.evidence] if case is not None else []
    if w.draw(st.integers(0, 3)) > 0:
        basis = w.draw(st.sampled_from(evidenced or ["other"]))
    else:
        basis = w.draw(st.sampled_from(["workplace", "residence", "household", "other"]))
    unit = w.unit(letter.to_unit_id if letter else _holder(state), *_participants(state))
    w.registry.attach_member(
        Actor(unit, "prop"),
        w.member_id(i),
        occurred_on=w.day(i),
        basis=basis,
        letter_no=w.draw(st.sampled_from([letter.letter_no if letter else None, None, "L9"])),
        override_reason=w.draw(st.sampled_from(["本人要求", None])),
        case_id=w.case_id(state),
    )


def _attached_unit(state: Any) -> str | None:
    case = state.open_case if state is not None else None
    return case.attached_unit_id if case is not None else None


def cmd_activity(w: World, i: int) -> None:
    state = w.state(i)
    w.registry.attend_activity(
        Actor(w.unit(_attached_unit(state), _holder(state)), "prop"),
        w.member_id(i),
        occurred_on=w.day(i),
        kind="组织生活会",
    )


def cmd_dues(w: World, i: int) -> None:
    state = w.state(i)
    on = w.day(i)
    months = w.draw(st.integers(-1, 11))
    start = (on.year, on.month)
    end_index = on.year * 12 + on.month - 1 + months
    w.registry.receive_dues(
        Actor(w.unit(_holder(state)), "prop"),
        w.member_id(i),
        occurred_on=on,
        months_from=f"{start[0]:04d}-{start[1]:02d}",
        months_to=f"{end_index // 12:04d}-{end_index % 12 + 1:02d}",
        amount=w.draw(st.sampled_from(["0.60", "24.00", "-1"])),
    )


def cmd_contact(w: World, i: int) -> None:
    state = w.state(i)
    w.registry.make_contact(
        Actor(w.unit(_holder(state)), "prop"),
        w.member_id(i),
        occurred_on=w.day(i),
        channel=w.draw(st.sampled_from(["phone", "walk_in"])),
        note="电话联系",
    )


def cmd_confirm(w: World, i: int) -> None:
    state = w.state(i)
    w.registry.confirm_membership(
        Actor(w.unit(_holder(state)), "prop"), w.member_id(i), occurred_on=w.day(i)
    )


def cmd_extend(w: World, i: int) -> None:
    state = w.state(i)
    w.registry.extend_probation(
        Actor(w.unit(_holder(state)), "prop"),
        w.member_id(i),
        occurred_on=w.day(i),
        months=w.draw(st.integers(0, 13)),
    )


def cmd_void_entry(w: World, i: int) -> None:
    """Void one of the member's entries: in a story, one of the latest three (a correction
    that makes rows go back to what they were), else any entry or a position of nobody's."""
    entries = _member_positions(w, i) if i in w.enrolled else []
    if entries and w.happy:
        position, unit = w.draw(st.sampled_from(entries[-3:]))
    elif entries and w.draw(st.integers(0, 5)) > 0:
        position, unit = w.draw(st.sampled_from(entries))
    else:
        position, unit = w.draw(st.integers(0, 200)), w.unit()
    w.registry.void_entry(
        Actor(w.unit(unit), "prop"),
        w.member_id(i),
        occurred_on=w.day(i),
        position=position,
        reason="录入错误",
    )


def cmd_unit(w: World, i: int) -> None:
    """Rename or dissolve a unit (rare: dissolving one changes what everyone may do)."""
    code = w.draw(st.sampled_from(UNITS))
    actor = Actor(w.unit("sh-org-dept"), "prop")
    on = w.day(i)
    if w.draw(st.booleans()):
        w.registry.rename_unit(actor, code, name=f"{code} (新)", occurred_on=on)
    else:
        w.registry.dissolve_unit(
            actor,
            code,
            occurred_on=on,
            successor_unit_id=w.draw(st.one_of(st.none(), st.sampled_from(UNITS))),
        )


COMMANDS: dict[str, Callable[[World, int], None]] = {
    "enrol": cmd_enrol,
    "inquiry": cmd_inquiry,
    **{
        name: _case_command(name)
        for name in (
            "requirements",
            "evidence",
            "archive",
            "origin",
            "consult",
            "introduction",
            "hold",
            "report",
            "referral",
            "withdraw",
        )
    },
    "letter": cmd_letter,
    **{f"letter_{name}": _letter_command(name) for name in ("decline", "void", "expire")},
    "receipt": _letter_command("receipt"),
    "referral_accept": _answer_referral(accept=True),
    "referral_decline": _answer_referral(accept=False),
    "attach": cmd_attach,
    "dues": cmd_dues,
    "activity": cmd_activity,
    "contact": cmd_contact,
    "confirm": cmd_confirm,
    "extend": cmd_extend,
    "void_entry": cmd_void_entry,
    "unit": cmd_unit,
}

# The event each command records when it is accepted: together, every member event.
EVENT_OF = {
    "enrol": "MemberEnrolled",
    "inquiry": "InquiryReceived",
    "requirements": "RequirementsNotified",
    "evidence": "EvidenceRecorded",
    "archive": "ArchiveReviewed",
    "origin": "OriginContacted",
    "consult": "UnitConsulted",
    "introduction": "IntroductionIssued",
    "hold": "TransferHeld",
    "report": "PerformanceReportSent",
    "referral": "Referred",
    "withdraw": "CaseWithdrawn",
    "letter": "LetterIssued",
    "letter_decline": "LetterDeclined",
    "letter_void": "LetterVoided",
    "letter_expire": "LetterExpired",
    "receipt": "ReceiptReturned",
    "referral_accept": "ReferralAccepted",
    "referral_decline": "ReferralDeclined",
    "attach": "Attached",
    "dues": "DuesReceived",
    "activity": "ActivityAttended",
    "contact": "ContactMade",
    "confirm": "MembershipConfirmed",
    "extend": "ProbationExtended",
    "void_entry": "EntryVoided",
}


def suggested(state: Any) -> list[str]:
    """Commands that move the member's story on, so deep histories are common."""
    if state is None:
        return ["enrol"]
    case = state.open_case
    if case is None:
        latest = state.letters[-1] if state.letters else None
        if latest is not None and latest.status == "attached" and not latest.receipt_returned_on:
            return ["receipt"]
        return ["inquiry", "dues", "contact", "receipt", "void_entry"]
    if state.outstanding_letter is not None:
        if not case.evidence:
            return ["evidence", "attach"]
        return ["attach", "attach", "letter_decline", "letter_void", "letter_expire"]
    if case.attached_unit_id is not None:
        return ["activity", "receipt", "receipt", "void_entry"]
    pending = [r for r in case.referrals if r.answer is None]
    if pending:
        return ["referral_accept", "referral_decline", "evidence", "void_entry"]
    if state.standing.value == "probationary" and not case.reports:
        return ["report", "letter", "hold", "confirm", "extend"]
    return ["letter", "letter", "attach", "evidence", "referral", "withdraw", "hold"]


def run_command(w: World) -> None:
    if w.draw(st.integers(0, 3)) == 0:
        w.current = w.draw(st.integers(0, w.members - 1))
    i = w.current
    state = w.state(i)
    w.happy = w.draw(st.integers(0, 2)) > 0
    if w.happy:
        kind = w.draw(st.sampled_from(suggested(state)))
    else:
        kind = w.draw(st.sampled_from(sorted(COMMANDS)))
    try:
        COMMANDS[kind](w, i)
    except HarborError as e:
        w.states.clear()
        event(f"refused {kind}: {e.code}")
    else:
        w.states.clear()
        event(f"accepted {kind}")


# --- projecting, with crashes ---------------------------------------------------------------------


class InjectedCrash(Exception):
    """Raised inside a batch's transaction to simulate the process dying there."""


class _CrashingCursor:
    """A projection cursor that raises after ``after`` statements (once)."""

    def __init__(self, cur: Any, after: int):
        self._cur, self._left = cur, after

    def _count(self) -> None:
        self._left -= 1
        if self._left <= 0:
            raise InjectedCrash("crash in the middle of the batch's writes")

    def execute(self, sql: str, params: Any = ()) -> None:
        self._cur.execute(sql, params)
        self._count()

    def executemany(self, sql: str, rows: Any) -> None:
        self._cur.executemany(sql, rows)
        self._count()

    def fetchall(self) -> Any:
        return self._cur.fetchall()

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    @property
    def raw(self) -> Any:
        return self._cur.raw


def crash_inside_a_batch(w: World, projector: Projector) -> None:
    """Make the next batch fail after writing some rows (or after its tracking record):
    nothing of it may be visible, and the next run must fold exactly that batch again."""
    if projector.generation != live_generation(w.registry):
        projector.run_once()  # it notices the rebuilt generation and moves to it
    start = projector.position()
    notes = w.registry.recorder.select_notifications(start + 1, projector.batch_size)
    if not notes:
        return
    before = live_rows(w.registry)
    where = w.draw(st.sampled_from(["rows", "tracking"]))
    if where == "rows":
        after = w.draw(st.integers(1, 6))
        original = projector.writer.flush

        def flush(cur: Any, generation: int, changes: Any) -> None:
            original(_CrashingCursor(cur, after), generation, changes)
            raise InjectedCrash("crash after the batch's rows, before its tracking record")

        projector.writer.flush = flush  # type: ignore[method-assign]
    else:
        insert = projector.tracking._insert_tracking

        def track(cur: Any, tracking: Any) -> None:
            insert(cur, tracking)
            raise InjectedCrash("crash after the tracking record, before the commit")

        projector.tracking._insert_tracking = track
    try:
        try:
            projector.run_once()
        except InjectedCrash:
            pass
        else:
            raise AssertionError("the injected crash did not happen")
    finally:
        projector.writer.__dict__.pop("flush", None)
        projector.tracking.__dict__.pop("_insert_tracking", None)
    assert projector.position() == start, "a failed batch moved the tracking position"
    assert_same_rows(live_rows(w.registry), before, "after a failed batch")
    again = projector.run_once()
    assert (again.events, again.position) == (len(notes), notes[-1].id), "batch not repeated"


def projection_step(w: World) -> None:
    """One batch in a random size; or a restart, a crash inside a batch, a rebuild."""
    how = w.draw(st.integers(0, 19))
    if w.projector is None or how == 0:
        event("projection: a new runner (restart)")
        w.projector = Projector(w.registry, batch_size=w.draw(st.integers(1, 12)))
    if how in (1, 2):
        event("projection: a crash inside a batch")
        crash_inside_a_batch(w, w.projector)
        return
    if how == 3:
        event("projection: a rebuild under the runner")
        rebuild(w.registry)  # the running projector must notice the new live generation
        return
    w.projector.batch_size = w.draw(st.integers(1, 12))
    if how in (4, 5):
        event("projection: a pipelined catch-up")
        w.projector.catch_up()  # reads ahead and commits on another thread
        return
    w.projector.run_once()


def catch_up(w: World) -> None:
    head = w.registry.position()
    for _ in range(10_000):
        if w.projector is not None and w.projector.position() >= head:
            return
        projection_step(w)
    raise AssertionError("projections never caught up")


# --- the properties -------------------------------------------------------------------------------


def test_the_commands_cover_every_member_event() -> None:
    assert set(EVENT_OF) == set(COMMANDS) - {"unit"}
    assert set(EVENT_OF.values()) == {cls.__name__ for cls in MEMBER_EVENTS}


def test_incremental_projections_equal_a_rebuild_and_the_reference_fold(store_url: str) -> None:
    backend = "postgres" if is_postgres(store_url) else "sqlite"

    @settings(PROPERTY_SETTINGS, max_examples=PROPERTY_EXAMPLES[backend])
    @given(data=st.data())
    def holds(data: st.DataObject) -> None:
        the_projections_equal_a_rebuild_and_the_reference_fold(store_url, data)

    holds()


def the_projections_equal_a_rebuild_and_the_reference_fold(
    store_url: str, data: st.DataObject
) -> None:
    """One example: random commands, projected in random steps, then (a) and (b)."""
    with empty_registry(store_url) as registry:
        load_units(registry, "prop")
        w = World(registry, data.draw, members=data.draw(st.integers(1, 3), label="members"))
        for i in range(w.members):
            with contextlib.suppress(HarborError):
                cmd_enrol(w, i)
        for _ in range(data.draw(st.integers(5, 20), label="commands")):
            run_command(w)
            if data.draw(st.integers(0, 3)) == 0:
                projection_step(w)
        catch_up(w)

        assert_read_models_match_reference(registry)  # (b), on the incremental tables
        if data.draw(st.booleans(), label="history as recorded (or as of a day)"):
            at = data.draw(st.integers(0, registry.position()), label="position")
            assert_history_matches_reference(registry, position=at)
        else:
            happened = [e for _, e in member_event_positions(registry)]
            days = sorted({e.occurred_on for e in happened}) or [TODAY]
            eves = sorted({e.occurred_on - DAY for e in happened if isinstance(e, InquiryReceived)})
            on_eve = bool(eves) and data.draw(st.booleans(), label="the eve of an inquiry")
            day = data.draw(st.sampled_from(eves if on_eve else days), label="as of")
            assert_history_matches_reference(registry, as_of=day)
        incremental = live_rows(registry)
        # Small folds: members leave the rebuild's cache, so their rows are written early.
        rebuilt = rebuilt_rows(
            registry,
            batch_size=data.draw(st.integers(1, 12), label="rebuild batch"),
            cache_size=data.draw(st.integers(1, 3), label="rebuild cache"),
        )

        assert_same_rows(incremental, rebuilt)  # (a), and so (b) holds for the rebuild too
