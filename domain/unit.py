"""The Unit aggregate: a party organisation or work department in the registry."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from eventsourcing.domain import Aggregate

from domain.errors import RuleRefused
from domain.values import UnitKind

UNIT_NAMESPACE = uuid.UUID("5b0d2a52-4a34-4d8e-9f0a-8d3f2b6c1a10")


def unit_id_for(code: str) -> uuid.UUID:
    """The stream id of the unit with this stable code."""
    return uuid.uuid5(UNIT_NAMESPACE, code)


class Unit(Aggregate):
    """One unit: its code, name, kind, place in the hierarchy and whether it still exists."""

    class Event(Aggregate.Event):
        unit_id: str
        occurred_on: date
        recorded_by: str

    class UnitRegistered(Aggregate.Created, Event):
        class_version = 1
        code: str
        name: str
        kind: UnitKind
        parent_unit_id: str | None
        region: str

        def apply(self, aggregate: Any) -> None:
            unit: Unit = aggregate
            unit.code = self.code
            unit.name = self.name
            unit.kind = self.kind
            unit.parent_unit_id = self.parent_unit_id
            unit.region = self.region
            unit.registered_on = self.occurred_on

    class UnitRenamed(Event):
        class_version = 1
        name: str

        def apply(self, aggregate: Any) -> None:
            aggregate.name = self.name

    class UnitDissolved(Event):
        class_version = 1
        successor_unit_id: str | None

        def apply(self, aggregate: Any) -> None:
            aggregate.dissolved_on = self.occurred_on
            aggregate.successor_unit_id = self.successor_unit_id

    def __init__(self) -> None:
        self.code = ""
        self.name = ""
        self.kind = UnitKind.WORKPLACE
        self.parent_unit_id: str | None = None
        self.region = ""
        self.registered_on: date | None = None
        self.dissolved_on: date | None = None
        self.successor_unit_id: str | None = None

    @property
    def dissolved(self) -> bool:
        """True once the unit was dissolved."""
        return self.dissolved_on is not None

    @classmethod
    def register(
        cls,
        *,
        code: str,
        name: str,
        kind: UnitKind,
        parent_unit_id: str | None,
        region: str,
        unit_id: str,
        occurred_on: date,
        recorded_by: str,
    ) -> Unit:
        """A new unit (the registering unit may be the new unit itself)."""
        return cls._create(
            cls.UnitRegistered,
            id=unit_id_for(code),
            code=code,
            name=name,
            kind=kind,
            parent_unit_id=parent_unit_id,
            region=region,
            unit_id=unit_id,
            occurred_on=occurred_on,
            recorded_by=recorded_by,
        )

    def rename(self, *, name: str, unit_id: str, occurred_on: date, recorded_by: str) -> None:
        """Record a new name."""
        self._must_exist()
        self.trigger_event(
            self.UnitRenamed,
            name=name,
            unit_id=unit_id,
            occurred_on=occurred_on,
            recorded_by=recorded_by,
        )

    def dissolve(
        self,
        *,
        successor_unit_id: str | None,
        unit_id: str,
        occurred_on: date,
        recorded_by: str,
    ) -> None:
        """Record that the unit no longer exists (its members become orphaned, R8)."""
        self._must_exist()
        self.trigger_event(
            self.UnitDissolved,
            successor_unit_id=successor_unit_id,
            unit_id=unit_id,
            occurred_on=occurred_on,
            recorded_by=recorded_by,
        )

    def _must_exist(self) -> None:
        if self.dissolved:
            raise RuleRefused(
                f"unit {self.code} was dissolved on {self.dissolved_on}",
                code="UNIT_DISSOLVED",
                field="unit_id",
            )
