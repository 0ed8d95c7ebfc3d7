"""JSON transcodings for the value types events carry, so every event round-trips exactly."""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Any
from uuid import UUID, SafeUUID

from eventsourcing.persistence import JSONTranscoder, Transcoding

from domain.values import ALL_ENUMS, PriorContact, YearMonth

_new, _set, _UNKNOWN = object.__new__, object.__setattr__, SafeUUID.unknown


class UUIDAsHex(Transcoding):
    """The library's ``uuid_hex`` transcoding, decoded without ``UUID.__init__``.

    ``UUID(hex)`` parses its argument in Python (about 0.6 µs); every event carries
    one or two ids, and a follower decodes tens of thousands a second.
    """

    type = UUID
    name = "uuid_hex"

    def encode(self, obj: UUID) -> str:
        return obj.hex

    def decode(self, data: str) -> UUID:
        if len(data) != 32:
            return UUID(data)  # whatever else UUID accepts, or its own error
        uuid = _new(UUID)
        _set(uuid, "int", int(data, 16))
        _set(uuid, "is_safe", _UNKNOWN)
        return uuid


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
        self._members: dict[Any, Enum] = dict(enum_type._value2member_map_)

    def encode(self, obj: Enum) -> Any:
        return obj.value

    def decode(self, data: Any) -> Enum:
        # The value → member map first: calling the enum class goes through EnumMeta.
        member: Enum | None = self._members.get(data)
        return member if member is not None else self.type(data)


def register_domain_transcodings(transcoder: JSONTranscoder) -> None:
    """Teach ``transcoder`` every value type Harbor's events carry."""
    transcoder.register(UUIDAsHex())  # the library's name and format, decoded faster
    transcoder.register(DateAsISO())
    transcoder.register(YearMonthAsStr())
    transcoder.register(PriorContactAsDict())
    for enum_type in ALL_ENUMS:
        transcoder.register(EnumAsValue(enum_type))
