"""JSON transcodings for the value types events carry, so every event round-trips exactly."""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from domain.values import ALL_ENUMS, PriorContact, YearMonth


class DateAsISO(Transcoding):
    type = date
    name = "date"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class YearMonthAsStr(Transcoding):
    type = YearMonth
    name = "ym"

    def encode(self, obj: YearMonth) -> str:
        return str(obj)

    def decode(self, data: str) -> YearMonth:
        return YearMonth.parse(data)


class PriorContactAsDict(Transcoding):
    type = PriorContact
    name = "prior_contact"

    def encode(self, obj: PriorContact) -> dict[str, str]:
        return {"who": obj.who, "answer": obj.answer}

    def decode(self, data: dict[str, str]) -> PriorContact:
        return PriorContact(who=data["who"], answer=data["answer"])


class EnumAsValue(Transcoding):
    """One enum type, stored as its value under a stable name."""

    def __init__(self, enum_type: type[Enum]):
        self.type = enum_type
        self.name = f"enum.{enum_type.__name__}"

    def encode(self, obj: Enum) -> Any:
        return obj.value

    def decode(self, data: Any) -> Enum:
        member: Enum = self.type(data)
        return member


def register_domain_transcodings(transcoder: JSONTranscoder) -> None:
    """Teach ``transcoder`` every value type Harbor's events carry."""
    transcoder.register(DateAsISO())
    transcoder.register(YearMonthAsStr())
    transcoder.register(PriorContactAsDict())
    for enum_type in ALL_ENUMS:
        transcoder.register(EnumAsValue(enum_type))
