"""Scenario helpers for the rule tests: state is built by replaying commands, never rows.

The units are the article's (tests/support.py): ``factory-superior`` (workplace,
上海) is the parent of ``zb-factory``; ``daning-center`` (上海·闸北) and
``hongkou-center`` (上海·虹口) are service centres; ``sh-univ`` is a school.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar
from uuid import UUID

import pytest

from domain.errors import CODES, HarborError
from domain.member_events import MemberEvent
from domain.registry import Registry
from tests.support import as_unit, event_count, register_article_units

E = TypeVar("E", bound=MemberEvent)

ENROLLED_ON = date(2020, 1, 6)
INQUIRY_ON = date(2026, 3, 2)
LETTER_ON = date(2026, 3, 10)
LETTER_NO = "2026-001"


def refused(registry: Registry, code: str, fn: Callable[[], Any]) -> HarborError:
    """Call ``fn``, expect a refusal with ``code``, and check that nothing was stored."""
    assert code in CODES, f"{code} is not a documented refusal code"
    before = event_count(registry)

    with pytest.raises(HarborError) as caught:
        fn()

    assert caught.value.code == code, f"expected {code}, got {caught.value}"
    assert event_count(registry) == before, "a refused command stored events"
    return caught.value


def id_number(n: int) -> str:
    """A well-formed resident ID number, distinct for each ``n``."""
    return str(110101198001010000 + n)


def enrol(
    registry: Registry,
    *,
    by: str = "factory-superior",
    on: date = ENROLLED_ON,
    n: int = 1,
    standing: str = "full",
    household_region: str = "外省某县",
    **fields: Any,
) -> UUID:
    """Enrol member number ``n`` (full, held by the acting unit unless told otherwise)."""
    outcome = registry.enrol_member(
        as_unit(by), name=f"党员{n}", id_number=id_number(n), standing=standing,
        household_region=household_region, occurred_on=on, **fields,
    )
    assert outcome.member_id is not None
    return outcome.member_id


def open_case(
    registry: Registry, member: UUID, *, by: str = "daning-center", on: date = INQUIRY_ON
) -> UUID:
    """The member walks in at ``by``: an inquiry that opens (or joins) the case."""
    outcome = registry.receive_inquiry(
        as_unit(by), member, occurred_on=on, channel="walk_in", summary="申请转入组织关系"
    )
    assert outcome.case_id is not None
    return outcome.case_id


def issue_letter(
    registry: Registry,
    member: UUID,
    *,
    by: str = "factory-superior",
    to: str = "daning-center",
    on: date = LETTER_ON,
    letter_no: str = LETTER_NO,
    **fields: Any,
) -> None:
    """``by`` issues transfer letter ``letter_no`` to ``to``."""
    registry.issue_letter(
        as_unit(by), member, occurred_on=on, letter_no=letter_no, to_unit_id=to,
        dues_paid_through="2026-02", **fields,
    )


def record_evidence(
    registry: Registry,
    member: UUID,
    kind: str,
    *,
    by: str = "daning-center",
    on: date = INQUIRY_ON,
    valid_until: date | None = None,
) -> int:
    """``by`` records a document; returns its log position (for voiding it)."""
    outcome = registry.record_evidence(
        as_unit(by), member, occurred_on=on, kind=kind, reference=f"{kind}-001",
        valid_until=valid_until,
    )
    assert outcome.position is not None
    return outcome.position


def member_with_letter_out(registry: Registry, *, household_region: str = "外省某县") -> UUID:
    """A full member held by factory-superior, with a case open at daning-center and
    letter 2026-001 from factory-superior to daning-center outstanding."""
    register_article_units(registry)
    member = enrol(registry, household_region=household_region)
    open_case(registry, member)
    issue_letter(registry, member)
    return member


def last_event(registry: Registry, member: UUID, event_type: type[E]) -> E:
    """The member's latest event, checked to be of ``event_type``."""
    event = registry.member(member).history[-1]
    assert isinstance(event, event_type), f"latest event is {type(event).__name__}"
    return event


def letter_status(registry: Registry, member: UUID, letter_no: str = LETTER_NO) -> str:
    """Where the letter stands: outstanding, attached, declined, voided, expired, superseded."""
    letter = registry.member(member).state.find_letter(letter_no)
    assert letter is not None, f"no letter {letter_no}"
    return letter.status


def position_of(registry: Registry, member: UUID, event_type: type[MemberEvent]) -> int:
    """The log position of the member's latest event of ``event_type``."""
    topic = f"{event_type.__module__}:{event_type.__qualname__}"
    positions = [
        n.id
        for n in registry.recorder.select_notifications(1, 10_000, topics=[topic])
        if n.originator_id == member
    ]
    assert positions, f"the member has no {event_type.__name__}"
    return positions[-1]
