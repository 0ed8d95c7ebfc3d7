"""seed/cases.md's "Expected" lines, read through the projections on the dates the file gives,
and the two kinds of "as of" on the old comrade's history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from api.demo import DemoMembers, load_article_cases
from domain.member_events import ContactMade
from domain.registry import SHANGHAI, Actor, Registry
from projections.history import member_history
from projections.queries import ReadModels
from projections.runner import Projector, rebuild
from projections.schema import view
from store import open_registry
from tests.conftest import TODAY
from tests.projection_support import db_of, is_postgres, reset_postgres_store

CASE_1_ON = date(2011, 9, 19)  # the article's date
CASE_2_ON = date(2006, 6, 20)  # the case closed that day


@pytest.fixture
def registry(store_url: str) -> Iterator[Registry]:
    """A Registry (today = TODAY) on an empty store (see reset_postgres_store)."""
    if is_postgres(store_url):
        reset_postgres_store(store_url)
    app = open_registry(store_url, clock=lambda: TODAY)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(params=["followed", "rebuilt"])
def article(request: pytest.FixtureRequest, registry: Registry) -> DemoMembers:
    """Both cases loaded, then projected in small batches or by a rebuild."""
    members = load_article_cases(registry)
    if request.param == "followed":
        Projector(registry, batch_size=3).catch_up()
    else:
        rebuild(registry)
    return members


def cases_of(registry: Registry, member_id: Any) -> list[dict[str, Any]]:
    rows = db_of(registry).query(
        f"SELECT case_id, closed_on FROM {view('cases')} WHERE member_id = ?", (str(member_id),)
    )
    return [{"case_id": r[0], "closed_on": r[1]} for r in rows]


def finding_set(found: list[Any]) -> set[tuple[Any, ...]]:
    return {(f.rule, f.severity, f.unit_id, f.since, f.resolved, f.case_id) for f in found}


def card(models: ReadModels, unit: str, on: date) -> tuple[Any, ...]:
    (c,) = models.scorecards(unit, on=on)
    return (c.answered_first, c.seen_through, c.dropped)


# --- case 1: 刘洋, answered first and dropped (as of 2011-09-19) ------------------------


def test_liu_yang_is_held_by_his_university_and_attached_with_one_open_case(
    registry: Registry, article: DemoMembers
) -> None:
    status = ReadModels(registry).member_status(article.liu_yang, CASE_1_ON)

    assert status["holder_unit_id"] == "sh-univ"
    assert status["status"] == "attached"
    assert status["in_transit_to"] is None  # no letter was ever issued: no limbo
    (case,) = cases_of(registry, article.liu_yang)
    assert case["closed_on"] is None
    assert status["open_case_id"] == case["case_id"]


def test_liu_yangs_case_was_answered_first_by_the_residence_centre_and_dropped(
    registry: Registry, article: DemoMembers
) -> None:
    models = ReadModels(registry)
    case_id = models.member_status(article.liu_yang, CASE_1_ON)["open_case_id"]

    case = models.case(case_id, CASE_1_ON)

    assert case["first_responder"] == "sh-residence-center"
    assert case["outcome"] == "dropped"
    assert case["path"] == ["sh-residence-center", "home-county"]
    assert [(r["from"], r["to"], r["handover"], r["state"]) for r in case["referrals"]] == [
        ("sh-residence-center", "home-county", "cold", "cold")
    ]
    assert case["closed_on"] is None


def test_liu_yangs_only_finding_is_the_residence_centres_r5_breach(
    registry: Registry, article: DemoMembers
) -> None:
    models = ReadModels(registry)
    case_id = models.member_status(article.liu_yang, CASE_1_ON)["open_case_id"]

    found = models.findings(on=CASE_1_ON, member_id=str(article.liu_yang))

    assert finding_set(found) == {
        ("R5", "breach", "sh-residence-center", date(2011, 7, 20), None, case_id)
    }
    assert [f.detail for f in found] == ["dropped"]


def test_scorecards_on_the_articles_date(registry: Registry, article: DemoMembers) -> None:
    models = ReadModels(registry)

    assert card(models, "sh-residence-center", CASE_1_ON) == (1, 0, 1)
    assert card(models, "sh-org-dept", CASE_1_ON) == (0, 0, 0)


# --- case 2: the old comrade, answered first and seen through (as of 2006-06-20) ------------------


def test_the_old_comrade_is_held_by_daning_since_the_attachment_and_his_case_closed(
    registry: Registry, article: DemoMembers
) -> None:
    models = ReadModels(registry)

    status = models.member_status(article.old_comrade, CASE_2_ON)

    assert status["holder_unit_id"] == "daning-center"
    assert status["since"] == "2006-06-05"
    assert status["status"] == "attached"
    assert status["open_case_id"] is None
    (case,) = cases_of(registry, article.old_comrade)
    assert case["closed_on"] == "2006-06-20"


def test_the_old_comrades_case_was_seen_through_by_daning_in_28_days(
    registry: Registry, article: DemoMembers
) -> None:
    models = ReadModels(registry)
    (row,) = cases_of(registry, article.old_comrade)

    case = models.case(row["case_id"], CASE_2_ON)

    assert case["first_responder"] == "daning-center"
    assert case["outcome"] == "seen_through"
    assert (case["closed_on"], case["closed_by"]) == ("2006-06-20", "activity")
    assert (case["opened_on"], case["attached_on"]) == ("2006-05-08", "2006-06-05")
    (scorecard,) = models.scorecards("daning-center", on=CASE_2_ON)
    assert scorecard.median_days_to_attachment == 28
    assert (scorecard.answered_first, scorecard.seen_through, scorecard.dropped) == (1, 1, 0)


def test_the_letter_came_from_the_parent_of_the_dissolved_holder(
    registry: Registry, article: DemoMembers
) -> None:
    models = ReadModels(registry)
    (row,) = cases_of(registry, article.old_comrade)

    trail = models.case(row["case_id"], CASE_2_ON)["trail"]

    letters = [t for t in trail if t["event_type"] == "LetterIssued"]
    assert [(t["unit_id"], t["occurred_on"]) for t in letters] == [
        ("factory-superior", "2006-06-01")
    ]
    assert not models.findings(on=CASE_2_ON, rule="R2")  # R2 allows it: no override


def test_the_old_comrades_findings_are_the_override_the_orphaning_and_the_lost_contact(
    registry: Registry, article: DemoMembers
) -> None:
    models = ReadModels(registry)
    (row,) = cases_of(registry, article.old_comrade)

    found = models.findings(on=CASE_2_ON, member_id=str(article.old_comrade))

    assert finding_set(found) == {
        ("R1", "override", "daning-center", date(2006, 6, 5), None, row["case_id"]),
        ("R8", "breach", "zb-factory", date(2004, 3, 31), date(2006, 6, 5), None),
        ("R7", "breach", "zb-factory", date(2004, 10, 1), date(2006, 5, 8), None),
    }


# --- the two kinds of "as of" ---------------------------------------------------------------------


def test_as_of_a_date_before_the_letter_he_was_still_held_by_the_dissolved_factory(
    registry: Registry, article: DemoMembers
) -> None:
    history = member_history(registry, article.old_comrade, as_of=date(2006, 5, 30))

    assert history["holder_unit_id"] == "zb-factory"
    assert history["in_transit_to"] is None
    [case] = history["cases"]
    assert case["closed_on"] is None and case["first_responder"] == "daning-center"
    assert max(t["occurred_on"] for t in history["trail"]) == "2006-05-20"


def test_a_back_dated_entry_shows_as_of_its_date_but_not_as_recorded_before_it(
    registry: Registry, article: DemoMembers
) -> None:
    head_before = registry.position()
    contact = registry.make_contact(
        Actor("daning-center", "clerk"),
        article.old_comrade,
        occurred_on=date(2006, 5, 25),
        channel="phone",
        note="补录：电话联系本人",
    )
    assert contact.position is not None
    recorded = registry.member(article.old_comrade).history[-1]
    assert isinstance(recorded, ContactMade) and recorded.case_id is None  # the case is closed
    recorded_on = _shanghai_day(recorded.timestamp)

    def contacts(**when: Any) -> list[tuple[int, str, Any]]:
        history = member_history(registry, article.old_comrade, **when)
        return [
            (t["position"], t["occurred_on"], t["case_id"])
            for t in history["trail"]
            if t["event_type"] == "ContactMade"
        ]

    assert contacts(as_of=date(2006, 5, 30)) == [(contact.position, "2006-05-25", None)]
    assert contacts(as_of=date(2006, 5, 24)) == []
    assert contacts(position=head_before) == []
    assert contacts(position=contact.position) == [(contact.position, "2006-05-25", None)]
    assert contacts(as_recorded=recorded_on - timedelta(days=1)) == []
    assert contacts(as_recorded=recorded_on) == [(contact.position, "2006-05-25", None)]


def _shanghai_day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def test_as_of_a_date_between_a_back_dated_case_entry_and_the_inquiry_that_opened_the_case(
    registry: Registry, article: DemoMembers
) -> None:
    registry.record_evidence(
        Actor("sh-residence-center", "clerk"),
        article.liu_yang,
        occurred_on=date(2011, 7, 10),  # ten days before his walk-in opened the case
        kind="lease",
        reference="租赁合同（补录）",
    )

    history = member_history(registry, article.liu_yang, as_of=date(2011, 7, 15))

    assert history["holder_unit_id"] == "sh-univ"
    assert [t["event_type"] for t in history["trail"]] == ["MemberEnrolled", "EvidenceRecorded"]
