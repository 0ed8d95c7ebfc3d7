"""A member's case trail as clerks and auditors read it: date, unit, action."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from uuid import UUID

from domain.member import MemberRelationship
from projections.describe import describe


@dataclass(frozen=True)
class TrailRow:
    """One line of the trail."""

    version: int
    occurred_on: date
    unit_id: str
    recorded_by: str
    case_id: UUID | None
    action: str
    voided: bool


def trail(member: MemberRelationship) -> list[TrailRow]:
    """Every event of the member's stream, in order, voided ones marked."""
    return [
        TrailRow(
            version=e.originator_version,
            occurred_on=e.occurred_on,
            unit_id=e.unit_id,
            recorded_by=e.recorded_by,
            case_id=e.case_id,
            action=describe(e),
            voided=e.originator_version in member.state.voided,
        )
        for e in member.history
    ]


def render_trail(member: MemberRelationship, unit_name: Callable[[str], str]) -> str:
    """The trail as text: a header per case naming the first responder, then its rows."""
    state = member.state
    lines = [
        f"{state.name}  member {member.id}",
        f"  holder: {unit_name(state.holder_unit_id)} ({state.holder_unit_id}) since"
        f" {state.holder_since}"
        + (f", in transit to {state.in_transit_to}" if state.in_transit_to else ""),
    ]
    current: UUID | None = None
    for row in trail(member):
        if row.case_id is not None and row.case_id != current:
            current = row.case_id
            case = state.cases.get(row.case_id)
            if case is not None:
                status = "open" if case.is_open else f"closed {case.closed_on} ({case.closed_by})"
                lines.append(
                    f"  case {case.number} ({status}) — answered first by"
                    f" {unit_name(case.first_responder)} ({case.first_responder})"
                )
        mark = " [voided]" if row.voided else ""
        indent = "    " if row.case_id is not None else "  "
        lines.append(f"{indent}{row.occurred_on}  {unit_name(row.unit_id)}  {row.action}{mark}")
    return "\n".join(lines)
