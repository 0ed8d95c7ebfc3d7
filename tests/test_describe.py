"""Every kind of member event reads as its own line of the trail."""

from __future__ import annotations

from domain.member_events import MemberEvent
from projections.describe import _DESCRIBE


def _leaves(cls: type) -> set[type]:
    below = cls.__subclasses__()
    return {cls} if not below else set().union(*(_leaves(c) for c in below))


def test_every_concrete_member_event_has_its_own_description() -> None:
    leaves = _leaves(MemberEvent)

    assert len(leaves) >= 26
    assert leaves == set(_DESCRIBE), "a member event the trail would only name by its type"
