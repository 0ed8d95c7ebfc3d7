"""A unit's reads (queue, scorecard, findings) read only what concerns the unit.

A centre's queue used to read every open case in the registry and then one statement
per case it answered first; one unit's findings judged the whole registry. These pin
the fixed number of statements and that reading less changes no answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from domain.registry import Registry
from projections.queries import ReadModels
from projections.runner import Projector
from store.sql import Db
from tests.scenarios import enrol, issue_letter, open_case
from tests.support import as_unit, register_article_units

LATER = date(2030, 1, 1)  # every member long out of contact, every letter long expired


def _cases_at_daning(registry: Registry, members: range) -> None:
    """Members walk in at daning-center; every other one is referred on to hongkou-center."""
    for n in members:
        member = enrol(registry, n=n)
        open_case(registry, member)
        if n % 2:
            registry.refer_case(
                as_unit("daning-center"), member, occurred_on=date(2026, 3, 3),
                to_unit_id="hongkou-center", handover="warm", reason="居住地在虹口",
            )
        else:
            issue_letter(registry, member, letter_no=f"2026-{n:03d}")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement the read models run, as they run it."""
    statements: list[str] = []
    inner = Db.query

    def query(self: Db, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        statements.append(sql)
        return inner(self, sql, params)

    monkeypatch.setattr(Db, "query", query)
    yield statements


def _statements(counted: list[str], read: Any) -> int:
    counted.clear()
    read()
    return len(counted)


def test_a_queue_and_a_scorecard_take_the_same_statements_for_two_cases_or_eight(
    registry: Registry, counted: list[str]
) -> None:
    """Four more open cases answered first add rows to the answer, not statements."""
    register_article_units(registry)
    _cases_at_daning(registry, range(1, 3))
    Projector(registry).catch_up()
    models = ReadModels(registry)
    queue = lambda: models.unit_queue("daning-center")  # noqa: E731
    card = lambda: models.scorecards("daning-center")  # noqa: E731
    few = _statements(counted, queue), _statements(counted, card)
    assert len(models.unit_queue("daning-center")["first_responder_cases"]) == 2

    _cases_at_daning(registry, range(3, 9))
    Projector(registry).catch_up()

    assert len(models.unit_queue("daning-center")["first_responder_cases"]) == 8
    assert (_statements(counted, queue), _statements(counted, card)) == few


def test_one_units_findings_are_the_registrys_findings_that_name_it(registry: Registry) -> None:
    """Read for one unit, findings are exactly those of the whole registry naming it."""
    register_article_units(registry)
    _cases_at_daning(registry, range(1, 7))
    member = enrol(registry, n=7, by="zb-factory")  # held by another unit, lost contact too
    open_case(registry, member, by="hongkou-center")
    Projector(registry).catch_up()
    models = ReadModels(registry)
    everything = models.findings(on=LATER)
    named = {f.unit_id for f in everything}
    assert {"daning-center", "factory-superior", "zb-factory", "hongkou-center"} <= named
    assert {f.rule for f in everything} >= {"R5", "R6", "R7"}

    assert models.findings(on=LATER, unit_id="daning\x00center") == []  # no such code
    for unit in [*sorted(named), "sh-univ"]:
        expected = [f for f in everything if f.unit_id == unit]
        assert models.findings(on=LATER, unit_id=unit) == expected, unit
        one = [f for f in expected if f.member_id == str(member)]
        assert models.findings(on=LATER, unit_id=unit, member_id=str(member)) == one, unit


def test_queue_items_of_the_same_day_come_in_one_order_on_every_backend(
    registry: Registry,
) -> None:
    """A letter and a referral waiting since the same day are listed by member id, not
    letters first (nor in whatever order the store returns rows)."""
    register_article_units(registry)
    first, second = sorted((enrol(registry, n=n) for n in (1, 2)), key=str)
    for member in (first, second):
        open_case(registry, member, by="hongkou-center")
    issue_letter(registry, second, letter_no="2026-001", on=date(2026, 3, 3))  # the later id
    registry.refer_case(
        as_unit("hongkou-center"), first, occurred_on=date(2026, 3, 3),
        to_unit_id="daning-center", handover="warm", reason="居住地在大宁",
    )  # fmt: skip
    Projector(registry).catch_up()

    todo = ReadModels(registry).unit_queue("daning-center")["todo"]

    assert [(i["kind"], i["member_id"]) for i in todo] == [
        ("referral", str(first)), ("letter", str(second))
    ]
