"""Letter numbers: unique per issuing unit and year (LETTER_NO_TAKEN).

Each number used is claimed by a tiny aggregate whose id is derived from
(issuer, year, number). It is saved in the same transaction as the
LetterIssued event, so two members can never get the same number, even from
two processes at once: the second insert collides on the stream's first
version and the whole transaction is refused.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate

LETTER_NAMESPACE = uuid.UUID("0f6c3f1e-9a53-4c3b-8e5c-2a7d4b9e1c22")


def letter_number_id(issuer_unit_id: str, year: int, letter_no: str) -> uuid.UUID:
    """The id of the claim on ``letter_no`` of ``issuer_unit_id`` in ``year``."""
    return uuid.uuid5(LETTER_NAMESPACE, f"{issuer_unit_id}\x1f{year}\x1f{letter_no}")


class LetterNumber(Aggregate):
    """A letter number that has been used."""

    class LetterNumberTaken(Aggregate.Created):
        class_version = 1
        issuer_unit_id: str
        year: int
        letter_no: str
        member_id: uuid.UUID

        def apply(self, aggregate: Any) -> None:
            aggregate.member_id = self.member_id

    def __init__(self) -> None:
        self.member_id: uuid.UUID | None = None

    @classmethod
    def take(
        cls, issuer_unit_id: str, year: int, letter_no: str, member_id: uuid.UUID
    ) -> LetterNumber:
        """Claim the number for ``member_id``."""
        return cls._create(
            cls.LetterNumberTaken,
            id=letter_number_id(issuer_unit_id, year, letter_no),
            issuer_unit_id=issuer_unit_id,
            year=year,
            letter_no=letter_no,
            member_id=member_id,
        )
