"""Members folded on the event loop to decide who may read them, kept between requests.

Deciding whether a unit may read a member's status takes the member's stream
(holder, receiving unit, every case's participants). Folding the whole stream
on every status request cost the event loop more than the rest of the request;
here each member is folded once and then advanced by the events stored after
the version it holds. Only the event loop's thread touches this cache, so it
needs no lock; it is bounded, least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from domain.member import MemberRelationship
from domain.registry import Registry

DEFAULT_SIZE = 10_000


class ReadMembers:
    """Member aggregates as the status reads last saw them (event loop only)."""

    def __init__(self, registry: Registry, size: int = DEFAULT_SIZE):
        self.registry = registry
        self.size = size
        self._items: OrderedDict[UUID, MemberRelationship] = OrderedDict()

    def version(self, member_id: UUID) -> int:
        """The stream version held for this member (0 when none)."""
        member = self._items.get(member_id)
        return member.version if member is not None else 0

    def advance(self, member_id: UUID, stored: Sequence[Any]) -> MemberRelationship:
        """The member after ``stored`` (its events after ``version``); raises NotFound."""
        held = self._items.pop(member_id, None)  # a member that fails to fold is not kept
        member = self.registry.member_from_stored(member_id, stored, held)
        self._items[member_id] = member
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return member
