"""Members as this process last saved (or loaded) them, lent to one command at a time.

A command decided on a cached member needs no read from the store: the
append proves the member was current, because its events take the next
stream versions and a stream that moved on meanwhile (another process, or
another thread here) refuses them as a duplicate version. Whoever takes a
member from the cache owns it — nothing else can see the half-applied
changes of a command that is then refused — and only a member whose events
were committed is put back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from uuid import UUID

from domain.member import MemberRelationship

DEFAULT_SIZE = 10_000


class MemberCache:
    """A bounded, least-recently-used store of saved member aggregates."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = max(0, size)
        self._items: OrderedDict[UUID, MemberRelationship] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def take(self, member_id: UUID) -> MemberRelationship | None:
        """Remove and return the cached member (None if it is not here)."""
        with self._lock:
            member = self._items.pop(member_id, None)
            if member is None:
                self.misses += 1
            else:
                self.hits += 1
            return member

    def offer(self, member: MemberRelationship) -> bool:
        """Keep a member read from the store only if there is room and no copy is here.

        It goes in as the least recently used, so warming the cache never evicts what
        commands put meanwhile. Offer the most recent first; returns whether it was kept.
        """
        if member.pending_events:
            return False
        with self._lock:
            if len(self._items) >= self.size or member.id in self._items:
                return False
            self._items[member.id] = member
            self._items.move_to_end(member.id, last=False)
            return True

    def put(self, member: MemberRelationship) -> None:
        """Keep a member whose events are all committed (unless a newer one is kept)."""
        if self.size == 0 or member.pending_events:
            return
        with self._lock:
            kept = self._items.get(member.id)
            if kept is not None and kept.version >= member.version:
                return
            self._items[member.id] = member
            self._items.move_to_end(member.id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
