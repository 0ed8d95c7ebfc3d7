"""Durable idempotency: what a command returned, kept under the caller's key.

A receipt is written by the store in the same transaction as the command's
events, so a command either left both or neither. Running a command again
with the same key (after a timeout, a crash, from another process) returns
the first outcome and stores nothing; the same key with a different command
is refused. Refusals leave no receipt, so a refused command may succeed
later when the facts have changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable
from uuid import UUID


@dataclass(frozen=True)
class Outcome:
    """What a successful command returns."""

    member_id: UUID | None = None
    case_id: UUID | None = None
    version: int | None = None
    position: int | None = None
    first_responder: str | None = None
    unit_id: str | None = None
    replayed: bool = False

    def to_json(self) -> str:
        """Serialise (without the position, which the store adds)."""
        data: dict[str, Any] = {
            "case_id": None if self.case_id is None else str(self.case_id),
            "first_responder": self.first_responder,
            "member_id": None if self.member_id is None else str(self.member_id),
            "unit_id": self.unit_id,
            "version": self.version,
        }
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str, position: int | None) -> Outcome:
        """The outcome a receipt kept, marked as a replay."""
        data = json.loads(text)
        for name in ("member_id", "case_id"):
            if data.get(name) is not None:
                data[name] = UUID(data[name])
        return replace(cls(**data), position=position, replayed=True)


@dataclass(frozen=True)
class CommandReceipt:
    """A receipt to store with a command's events."""

    unit_id: str
    key: str
    fingerprint: str
    outcome_json: str


@dataclass(frozen=True)
class ReceiptAt:
    """A receipt to store, and which of the stored events is its command's last (its position)."""

    receipt: CommandReceipt
    last_event: int  # index into the events inserted in the same transaction


@dataclass(frozen=True)
class StoredReceipt:
    """A receipt as the store kept it (with the log position of the command's last event)."""

    fingerprint: str
    outcome_json: str
    position: int | None


@runtime_checkable
class ReceiptStore(Protocol):
    """A recorder that keeps receipts with events (``insert_events(..., receipts=[...])``)."""

    def find_receipt(self, unit_id: str, key: str) -> StoredReceipt | None:
        """The receipt kept under (unit, key), if any."""

    def find_receipts(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredReceipt]:
        """The receipts kept under any of these (unit, key) pairs, in one query."""

    def existing(self, ids: Iterable[UUID]) -> set[UUID]:
        """Which of these aggregate ids have a stream in the store, in one query."""
