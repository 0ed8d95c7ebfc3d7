"""A batch: many members' commands decided in memory and committed in one transaction.

Bulk import uses it. Each command is decided by the same Registry method as
always (the same rules, the same refusals); instead of saving, its events and
receipt are kept here under their member. A member whose command is refused
can be dropped whole (``discard``), so none of its lines is stored, while the
others go in together. If the shared transaction conflicts with something
written meanwhile, each member is committed on its own and the ones that
still conflict are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording

from domain.receipts import CommandReceipt, Outcome, ReceiptAt, StoredReceipt

Append = Callable[[list[Any], list[ReceiptAt]], Sequence[Recording[Any]]]


@dataclass
class _Owned:
    events: list[Any] = field(default_factory=list)
    receipts: list[ReceiptAt] = field(default_factory=list)
    claims: set[UUID] = field(default_factory=set)
    keys: set[tuple[str, str]] = field(default_factory=set)


class Batch:
    """Commands waiting to be committed together, grouped by the member they concern."""

    def __init__(self) -> None:
        self.aggregates: dict[UUID, Aggregate] = {}
        self._owned: dict[UUID, _Owned] = {}
        self._answers: dict[tuple[str, str], tuple[str, Outcome]] = {}
        # What the importer looked up in bulk before deciding: streams known not to
        # exist yet, and receipts known to be stored (or, mapped to None, not to be).
        self.absent: set[UUID] = set()
        self.receipts: dict[tuple[str, str], StoredReceipt | None] = {}
        self._events = 0  # events held, kept as they come (the importer asks every line)

    def learn(
        self,
        absent: set[UUID],
        checked: set[tuple[str, str]],
        stored: dict[tuple[str, str], StoredReceipt],
    ) -> None:
        """Remember bulk lookups, so deciding the next commands needs no reads for them."""
        self.absent |= absent
        for pair in checked:
            self.receipts[pair] = stored.get(pair)

    def __len__(self) -> int:
        return self._events

    def add(
        self,
        owner: UUID,
        aggregates: Sequence[Aggregate],
        receipt: CommandReceipt | None,
        outcome: Outcome,
    ) -> None:
        """Keep a decided command's events (and receipt) under its member."""
        owned = self._owned.setdefault(owner, _Owned())
        for aggregate in aggregates:
            self.aggregates.setdefault(aggregate.id, aggregate)
            if aggregate.id != owner:
                owned.claims.add(aggregate.id)
            collected = aggregate.collect_events()
            owned.events.extend(collected)
            self._events += len(collected)
        if receipt is not None:
            owned.receipts.append(ReceiptAt(receipt, len(owned.events) - 1))
            key = (receipt.unit_id, receipt.key)
            owned.keys.add(key)
            self._answers[key] = (receipt.fingerprint, outcome)

    def answer(self, unit_id: str, key: str) -> tuple[str, Outcome] | None:
        """The (fingerprint, outcome) of a keyed command already in this batch."""
        return self._answers.get((unit_id, key))

    def holds(self, aggregate_id: UUID) -> bool:
        """True when the batch already creates or changes this aggregate."""
        return aggregate_id in self.aggregates

    def discard(self, owner: UUID) -> None:
        """Drop everything a member's commands put in this batch."""
        owned = self._owned.pop(owner, None)
        self.aggregates.pop(owner, None)
        if owned is not None:
            self._events -= len(owned.events)
            for claim in owned.claims:
                self.aggregates.pop(claim, None)
            for key in owned.keys:
                self._answers.pop(key, None)

    def detach(self) -> Batch:
        """Move everything decided so far into a batch of its own, and start this one afresh.

        The importer commits the moved batch on another thread while it decides the
        next commands into this one. Until that commit ends, the streams it creates
        or changes and the receipts it stores are neither known absent nor known
        stored here: deciding a command that ``touches`` them must wait for it.
        """
        moved = Batch()
        moved.aggregates, self.aggregates = self.aggregates, {}
        moved._owned, self._owned = self._owned, {}
        moved._answers, self._answers = self._answers, {}
        moved._events, self._events = self._events, 0
        self.absent -= set(moved.aggregates)
        for key in moved._answers:
            self.receipts.pop(key, None)
        return moved

    def restore(self, moved: Batch) -> None:
        """Take back what ``detach`` moved out and nobody committed, ahead of what this
        batch decided since (the importer sets a batch aside to store a unit alone)."""
        self.aggregates = {**moved.aggregates, **self.aggregates}
        self._owned = {**moved._owned, **self._owned}
        self._answers = {**moved._answers, **self._answers}
        self._events += moved._events

    def forget(self, committed: Batch) -> None:
        """Drop bulk lookups that ``committed`` (a detached batch, now ended) made stale.

        A lookup made while it was in flight may say one of its streams is absent,
        or one of its receipts unstored: ask the store instead from now on.
        """
        self.absent -= set(committed.aggregates)
        for key in committed._answers:
            self.receipts.pop(key, None)

    def touches(self, ids: Iterable[UUID | None], key: tuple[str, str] | None = None) -> bool:
        """True when this batch creates or changes one of ``ids``, or stores ``key``."""
        return any(i in self.aggregates for i in ids if i is not None) or key in self._answers

    def commit(self, append: Append) -> dict[UUID, BaseException]:
        """Append everything in one transaction; returns the members that could not be."""
        owners = list(self._owned)
        failed: dict[UUID, BaseException] = {}
        # Whatever this commit does, these streams and receipts may exist from now on.
        self.absent -= set(self.aggregates)
        for owned in self._owned.values():
            for key in owned.keys:
                self.receipts.pop(key, None)
        try:
            self._append(owners, append)
        except IntegrityError:
            for owner in owners:  # someone wrote meanwhile: let each member stand alone
                try:
                    self._append([owner], append)
                except IntegrityError as error:
                    failed[owner] = error
        self.aggregates.clear()
        self._owned.clear()
        self._answers.clear()
        self._events = 0
        return failed

    def _append(self, owners: list[UUID], append: Append) -> None:
        events: list[Any] = []
        receipts: list[ReceiptAt] = []
        for owner in owners:
            owned = self._owned[owner]
            offset = len(events)
            events.extend(owned.events)
            receipts.extend(ReceiptAt(r.receipt, r.last_event + offset) for r in owned.receipts)
        if events:
            append(events, receipts)
