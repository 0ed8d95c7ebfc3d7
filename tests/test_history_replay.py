"""Replaying a member's history: the two kinds of "as of" (DESIGN.md) for unit facts and voids.

``as_of=DATE`` is what had *happened* by DATE, as the registry knows it now: every void
recorded so far marks the entries it voids, and every dissolution known now counts from
its date. ``as_recorded=DATE`` and ``position=N`` are what the registry *knew* then: only
the voids and dissolutions recorded by then count, and a ``position`` history is judged
on the day its log position was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

import eventsourcing.domain
import pytest

from domain.member_events import ContactMade
from domain.registry import SHANGHAI, Registry
from projections.history import member_history
from tests.conftest import TODAY
from tests.scenarios import enrol, open_case
from tests.support import ADMIN, as_unit, register_article_units

DISSOLVED_ON = date(2021, 1, 1)  # zb-factory's dissolution, back-dated to this day


def findings(registry: Registry, member: UUID, rule: str, **when: Any) -> list[tuple[str, str]]:
    """(unit, since) of the member's ``rule`` findings in the history asked for."""
    history = member_history(registry, member, **when)
    return [(f["unit_id"], f["since"]) for f in history["findings"] if f["rule"] == rule]


@dataclass
class Calendar:
    """The registry's today, which is also the day its events are recorded on (at noon)."""

    day: date


@pytest.fixture
def calendar(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Calendar:
    """Let days pass: the registry's clock and the events' recorded times follow ``day``."""
    cal = Calendar(date(2020, 1, 6))
    registry.clock = lambda: cal.day
    monkeypatch.setattr(
        eventsourcing.domain,
        "datetime_now_with_tzinfo",
        lambda: datetime.combine(cal.day, time(12), SHANGHAI).astimezone(UTC),
    )
    return cal


# --- Bug 1: unit dissolutions recorded later -------------------------------------------------


def test_at_a_position_a_dissolution_recorded_later_is_not_known(registry: Registry) -> None:
    register_article_units(registry)
    member = enrol(registry, by="zb-factory")  # held by zb-factory since 2020-01-06
    enrolled_at = registry.position()
    dissolved = registry.dissolve_unit(ADMIN, "zb-factory", occurred_on=DISSOLVED_ON)
    assert dissolved.position == enrolled_at + 1

    assert findings(registry, member, "R8", position=enrolled_at) == []
    r8 = [("zb-factory", DISSOLVED_ON.isoformat())]
    assert findings(registry, member, "R8", position=dissolved.position) == r8
    assert findings(registry, member, "R8") == r8
    # as_of: what had happened by then, as the registry knows it now.
    assert findings(registry, member, "R8", as_of=date(2020, 12, 31)) == []
    assert findings(registry, member, "R8", as_of=DISSOLVED_ON) == r8


def test_as_recorded_a_back_dated_dissolution_counts_only_once_recorded(
    registry: Registry, calendar: Calendar
) -> None:
    register_article_units(registry)
    member = enrol(registry, by="zb-factory", on=calendar.day)
    calendar.day = date(2021, 3, 1)
    registry.dissolve_unit(ADMIN, "zb-factory", occurred_on=DISSOLVED_ON)
    calendar.day = TODAY

    r8 = [("zb-factory", DISSOLVED_ON.isoformat())]
    assert findings(registry, member, "R8", as_recorded=date(2021, 2, 28)) == []
    assert findings(registry, member, "R8", as_recorded=date(2021, 3, 1)) == r8
    assert findings(registry, member, "R8", as_of=date(2021, 2, 28)) == r8


def test_at_a_position_findings_are_judged_on_the_day_it_was_recorded(
    registry: Registry, calendar: Calendar
) -> None:
    register_article_units(registry)
    member = enrol(registry, on=calendar.day)  # a sign of life on 2020-01-06, none after
    enrolled_at = registry.position()
    calendar.day = date(2021, 3, 1)
    # Another stream's event: by this position the registry had lived to 2021-03-01.
    renamed = registry.rename_unit(
        ADMIN, "hongkou-center", name="虹口区党员服务中心", occurred_on=calendar.day
    )
    assert renamed.position == enrolled_at + 1
    calendar.day = TODAY

    then = member_history(registry, member, position=enrolled_at)
    assert then["on"] == "2020-01-06"
    assert [f for f in then["findings"] if f["rule"] == "R7"] == []

    later = member_history(registry, member, position=renamed.position)
    assert later["on"] == "2021-03-01"
    assert findings(registry, member, "R7", position=renamed.position) == [
        ("factory-superior", "2020-07-07")
    ]

    assert member_history(registry, member)["on"] == TODAY.isoformat()
    assert member_history(registry, member, as_recorded=date(2020, 6, 1))["on"] == "2020-06-01"


# --- Bug 2: voids recorded after the date asked for ------------------------------------------


def attached_then_voided(registry: Registry) -> tuple[UUID, int, int]:
    """A letter to daning-center, used there on 2025-06-04; that attachment voided on
    2025-12-01. Returns (member, position of Attached, position of EntryVoided)."""
    register_article_units(registry)
    member = enrol(registry, household_region="上海·闸北")  # held by factory-superior
    open_case(registry, member, on=date(2025, 5, 20))
    registry.issue_letter(
        as_unit("factory-superior"),
        member,
        occurred_on=date(2025, 5, 26),
        letter_no="2025-001",
        to_unit_id="daning-center",
        dues_paid_through="2025-04",
    )
    attached = registry.attach_member(
        as_unit("daning-center"), member, occurred_on=date(2025, 6, 4), basis="household"
    )
    assert attached.position is not None
    voided = registry.void_entry(
        as_unit("daning-center"),
        member,
        occurred_on=date(2025, 12, 1),
        position=attached.position,
        reason="误录",
    )
    assert voided.position is not None
    return member, attached.position, voided.position


def test_as_of_a_date_before_a_void_the_voided_entry_is_marked_and_does_not_count(
    registry: Registry,
) -> None:
    member, attached, voided = attached_then_voided(registry)

    history = member_history(registry, member, as_of=date(2025, 7, 1))

    assert history["holder_unit_id"] == "factory-superior"
    assert history["in_transit_to"] == "daning-center"  # the letter is outstanding again
    [line] = [t for t in history["trail"] if t["position"] == attached]
    assert (line["event_type"], line["voided"], line["void_reason"]) == ("Attached", 1, "误录")
    # The void had not happened yet: it is no line of its own.
    assert voided not in [t["position"] for t in history["trail"]]
    assert "EntryVoided" not in [t["event_type"] for t in history["trail"]]
    [case] = history["cases"]
    assert case["attached_unit_id"] is None

    # As of the day of the void it shows as a line of its own.
    history = member_history(registry, member, as_of=date(2025, 12, 1))
    by_position = {t["position"]: t for t in history["trail"]}
    assert by_position[voided]["event_type"] == "EntryVoided"
    assert (by_position[attached]["voided"], by_position[attached]["void_reason"]) == (1, "误录")


def test_as_of_now_equals_the_history_now_for_a_voided_entry(registry: Registry) -> None:
    member, _, _ = attached_then_voided(registry)

    now = member_history(registry, member)
    as_of = member_history(registry, member, as_of=date(2025, 7, 1))

    keep = ("holder_unit_id", "since", "in_transit_to")
    assert {k: as_of[k] for k in keep} == {k: now[k] for k in keep}
    assert [(t["position"], t["voided"]) for t in as_of["trail"]] == [
        (t["position"], t["voided"]) for t in now["trail"] if t["occurred_on"] <= "2025-07-01"
    ]


def test_as_recorded_only_the_voids_recorded_by_then_count_as_of_all_of_them(
    registry: Registry, calendar: Calendar
) -> None:
    member, attached, voided = _recorded_on_their_days(registry, calendar)

    for when in ({"position": voided - 1}, {"as_recorded": date(2025, 11, 30)}):
        history = member_history(registry, member, **when)
        assert history["holder_unit_id"] == "daning-center", when
        [line] = [t for t in history["trail"] if t["position"] == attached]
        assert (line["voided"], line["void_reason"]) == (0, None), when
    for when in ({"position": voided}, {"as_recorded": date(2025, 12, 1)}):
        history = member_history(registry, member, **when)
        assert history["holder_unit_id"] == "factory-superior", when
        [line] = [t for t in history["trail"] if t["position"] == attached]
        assert (line["voided"], line["void_reason"]) == (1, "误录"), when
    # as_of: the registry now knows the attachment was void, whatever the day asked about.
    assert member_history(registry, member, as_of=date(2025, 7, 1))["holder_unit_id"] == (
        "factory-superior"
    )


def _recorded_on_their_days(registry: Registry, calendar: Calendar) -> tuple[UUID, int, int]:
    """attached_then_voided, each entry recorded on its business day."""
    calendar.day = date(2025, 5, 20)
    register_article_units(registry)
    member = enrol(registry, household_region="上海·闸北")
    open_case(registry, member, on=date(2025, 5, 20))
    calendar.day = date(2025, 5, 26)
    registry.issue_letter(
        as_unit("factory-superior"),
        member,
        occurred_on=calendar.day,
        letter_no="2025-001",
        to_unit_id="daning-center",
        dues_paid_through="2025-04",
    )
    calendar.day = date(2025, 6, 4)
    attached = registry.attach_member(
        as_unit("daning-center"), member, occurred_on=calendar.day, basis="household"
    )
    assert attached.position is not None
    calendar.day = date(2025, 12, 1)
    voided = registry.void_entry(
        as_unit("daning-center"),
        member,
        occurred_on=calendar.day,
        position=attached.position,
        reason="误录",
    )
    assert voided.position is not None
    calendar.day = TODAY
    return member, attached.position, voided.position


def test_a_history_read_while_the_member_is_written_never_fails(registry: Registry) -> None:
    import threading

    from domain.registry import Actor

    register_article_units(registry)
    member = registry.enrol_member(
        Actor("daning-center", "王"), name="甲", id_number="310109198001010037",
        standing="full", household_region="上海", occurred_on=date(2020, 1, 1),
    ).member_id  # fmt: skip
    assert member is not None
    done, stop = threading.Event(), threading.Event()
    failures: list[BaseException] = []
    written: list[int] = []

    def write() -> None:
        try:
            for n in range(150):
                if stop.is_set():
                    break
                registry.make_contact(Actor("daning-center", "王"), member,
                                      occurred_on=date(2020, 2, 1), channel="phone",
                                      note=f"第{n}次")
                written.append(n)
        except BaseException as e:
            failures.append(e)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    try:
        while not done.is_set():
            history = member_history(registry, member)  # raised KeyError on a race before
            assert history["trail"][0]["position"] >= 1
            reads += 1
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not writer.is_alive(), "the writer hung"
    assert failures == []
    assert len(written) == 150
    notes = [e.note for e in registry.member(member).history if isinstance(e, ContactMade)]
    assert notes == [f"第{n}次" for n in range(150)]  # every write was stored, in order
    assert reads > 0
