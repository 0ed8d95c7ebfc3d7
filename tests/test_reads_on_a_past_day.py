"""Reads for an earlier day show the rows as they stood then, as the findings and the
case do: a member's status and colour, a unit's queue and its roster (DESIGN.md
"Projections": statuses and colours are judged on the date asked).

The article's second case (cases.md): the old comrade's holder zb-factory was dissolved
in 2004; factory-superior issued letter 2006-001 to daning-center on 2006-06-01 and
daning-center took him in on 2006-06-05. On 2006-06-02 the letter was out.
"""

from __future__ import annotations

from datetime import date

import pytest

from api.demo import DemoMembers, load_article_cases
from domain.registry import Registry
from projections.history import member_history, member_status, roster
from projections.queries import ReadModels
from projections.runner import Projector

LETTER_OUT = date(2006, 6, 2)


@pytest.fixture
def article(registry: Registry) -> tuple[Registry, DemoMembers, ReadModels]:
    members = load_article_cases(registry)
    Projector(registry).catch_up()
    return registry, members, ReadModels(registry)


def test_a_members_status_on_a_past_day_is_as_he_stood_then(
    article: tuple[Registry, DemoMembers, ReadModels],
) -> None:
    registry, members, models = article

    then = member_status(registry, models, members.old_comrade, LETTER_OUT)
    now = member_status(registry, models, members.old_comrade)

    assert (then["holder_unit_id"], then["since"], then["status"], then["in_transit_to"]) == (
        "zb-factory", "1990-06-01", "orphaned", "daning-center"
    )
    assert (now["holder_unit_id"], now["since"], now["status"]) == (
        "daning-center", "2006-06-05", "attached"
    )
    assert then["version"] == now["version"]  # the stream's, for If-Match


@pytest.mark.parametrize(
    ("who", "day"),
    [
        ("old_comrade", date(2005, 1, 1)),
        ("old_comrade", LETTER_OUT),
        ("old_comrade", date(2006, 6, 10)),
        ("liu_yang", date(2011, 7, 25)),
        ("liu_yang", date(2011, 9, 1)),
    ],
)
def test_a_past_status_agrees_with_the_history_as_of_the_same_day(
    article: tuple[Registry, DemoMembers, ReadModels], who: str, day: date
) -> None:
    registry, members, models = article
    member = getattr(members, who)

    status = member_status(registry, models, member, day)
    history = member_history(registry, member, as_of=day)

    assert (status["holder_unit_id"], status["since"], status["in_transit_to"]) == (
        history["holder_unit_id"], history["since"], history["in_transit_to"]
    )


def test_a_units_queue_on_a_past_day_holds_what_was_waiting_then(
    article: tuple[Registry, DemoMembers, ReadModels],
) -> None:
    _, members, models = article
    old_comrade = str(members.old_comrade)

    receiving = models.unit_queue("daning-center", LETTER_OUT)
    issuing = models.unit_queue("factory-superior", LETTER_OUT)
    before = models.unit_queue("daning-center", date(2006, 5, 1))

    assert [(i["kind"], i["letter_no"]) for i in receiving["todo"]] == [("letter", "2006-001")]
    assert [(i["kind"], i["letter_no"]) for i in issuing["waiting_on_others"]] == [
        ("letter", "2006-001")
    ]
    assert [c["member_id"] for c in receiving["first_responder_cases"]] == [old_comrade]
    assert before["first_responder_cases"] == [] and before["todo"] == []


def test_a_roster_on_a_past_day_lists_whom_the_unit_held_or_awaited_then(
    article: tuple[Registry, DemoMembers, ReadModels],
) -> None:
    registry, members, models = article

    def listed(on: date | None) -> list[tuple[str, str]]:
        page = roster(registry, models, "daning-center", on)
        return [(m["member_id"], m["relation"]) for m in page["members"]]

    assert listed(date(2005, 1, 1)) == []
    assert listed(LETTER_OUT) == [(str(members.old_comrade), "arriving")]
    assert (str(members.old_comrade), "held") in listed(None)
