"""预警: a unit's queue warns of the breaches against it that begin within the next days
unless someone acts, each on the day it would begin.

Scenarios on one member, folded by the projector and read on chosen dates (both
backends): a case nobody acts on (R5 stalled), a warm referral not taken up (R5
dropped), a letter running out unused (R6) and a member going quiet (R7). A warning
is judged on what had happened by the queue's date, so a queue read for a past date
shows what the clerk saw that day.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from domain.errors import InvalidInput
from domain.registry import Registry
from projections.queries import ReadModels
from projections.runner import Projector
from store import open_registry
from tests.conftest import TODAY
from tests.projection_support import fresh_registry_with_article_units
from tests.scenarios import enrol, issue_letter, open_case
from tests.support import as_unit, register_article_units

DANING, HONGKOU, FACTORY = "daning-center", "hongkou-center", "factory-superior"


@pytest.fixture
def registry(store_url: str) -> Iterator[Registry]:
    with fresh_registry_with_article_units(store_url) as app:
        yield app


def _models(registry: Registry) -> ReadModels:
    Projector(registry).catch_up()
    return ReadModels(registry)


def _due(models: ReadModels, unit: str, on: date, within: int = 14) -> list[tuple[Any, ...]]:
    queue = models.unit_queue(unit, on, within=within)
    assert queue["due_within_days"] == within
    return [(w["rule"], w["detail"], w["due_on"], w["days_left"]) for w in queue["due_soon"]]


def test_a_case_nobody_acts_on_warns_its_first_responder_14_days_before_it_stalls(
    registry: Registry,
) -> None:
    member = enrol(registry, on=date(2024, 12, 1))
    open_case(registry, member, on=date(2025, 1, 1))  # stalled from 2025-02-01
    models = _models(registry)

    assert _due(models, DANING, date(2025, 1, 17)) == []
    assert _due(models, DANING, date(2025, 1, 18)) == [("R5", "stalled", "2025-02-01", 14)]
    assert _due(models, DANING, date(2025, 1, 31)) == [("R5", "stalled", "2025-02-01", 1)]
    assert _due(models, DANING, date(2025, 1, 2), within=30) == [
        ("R5", "stalled", "2025-02-01", 30)
    ]
    assert _due(models, DANING, date(2025, 1, 31), within=0) == []
    assert _due(models, HONGKOU, date(2025, 1, 31)) == []  # against the first responder only
    # On its day it is a finding, no longer a warning.
    assert _due(models, DANING, date(2025, 2, 1)) == []
    assert [(f.rule, f.detail, f.since) for f in models.findings(on=date(2025, 2, 1))] == [
        ("R5", "stalled", date(2025, 2, 1))
    ]


def test_a_queue_read_for_a_past_day_warns_as_it_did_that_day_and_acting_ends_it(
    registry: Registry,
) -> None:
    member = enrol(registry, on=date(2024, 12, 1))
    open_case(registry, member, on=date(2025, 1, 1))
    registry.review_archive(
        as_unit(DANING), member, occurred_on=date(2025, 1, 25), finding="档案齐全"
    )
    models = _models(registry)

    # On 18 January nothing had been done yet: the warning stands, although the review of
    # the 25th (recorded since) moved the stall to 25 February.
    assert _due(models, DANING, date(2025, 1, 18)) == [("R5", "stalled", "2025-02-01", 14)]
    assert _due(models, DANING, date(2025, 1, 26)) == []
    assert _due(models, DANING, date(2025, 2, 11)) == [("R5", "stalled", "2025-02-25", 14)]


def test_a_warm_referral_not_taken_up_warns_the_referring_unit_until_it_is_accepted(
    registry: Registry,
) -> None:
    member = enrol(registry, on=date(2024, 12, 1))
    open_case(registry, member, on=date(2025, 6, 1))
    registry.refer_case(
        as_unit(DANING), member, occurred_on=date(2025, 6, 1), to_unit_id=HONGKOU,
        handover="warm", reason="建议去虹口",
    )  # fmt: skip
    models = _models(registry)

    # Not accepted within 14 days, a warm referral counts as cold from the 15th: dropped.
    assert _due(models, DANING, date(2025, 6, 2)) == [("R5", "dropped", "2025-06-16", 14)]
    (warning,) = models.unit_queue(DANING, date(2025, 6, 2))["due_soon"]
    assert warning["case_id"] is not None and "referral" in warning["action"]

    registry.accept_referral(as_unit(HONGKOU), member, occurred_on=date(2025, 6, 5))
    models = _models(registry)

    assert _due(models, DANING, date(2025, 6, 5)) == []
    assert _due(models, DANING, date(2025, 6, 4)) == [("R5", "dropped", "2025-06-16", 12)]


def test_a_letter_running_out_unused_warns_its_issuer(registry: Registry) -> None:
    member = enrol(registry, on=date(2025, 1, 6))
    open_case(registry, member, on=date(2025, 3, 2))
    issue_letter(registry, member, on=date(2025, 3, 10), valid_until=date(2025, 4, 30))
    models = _models(registry)

    expected = [("R6", "letter 2026-001: pocket-member risk", "2025-05-01", 14)]
    assert _due(models, FACTORY, date(2025, 4, 17)) == expected
    assert _due(models, FACTORY, date(2025, 4, 16)) == []
    assert _due(models, DANING, date(2025, 4, 17)) == []  # the addressee is not the issuer


def test_a_member_going_quiet_warns_the_unit_holding_them(registry: Registry) -> None:
    member = enrol(registry, by=HONGKOU, on=date(2025, 1, 10))  # lost contact from 2025-07-11
    models = _models(registry)

    assert _due(models, HONGKOU, date(2025, 6, 26)) == []
    assert _due(models, HONGKOU, date(2025, 6, 27)) == [("R7", "lost contact", "2025-07-11", 14)]
    (warning,) = models.unit_queue(HONGKOU, date(2025, 6, 27), names=True)["due_soon"]
    assert warning["member_id"] == str(member) and warning["member_name"] == "党员1"
    assert "contact" in warning["action"]

    registry.make_contact(
        as_unit(HONGKOU), member, occurred_on=date(2025, 6, 30), channel="phone", note="已联系"
    )
    models = _models(registry)
    assert _due(models, HONGKOU, date(2025, 6, 30)) == []


def test_every_warning_is_a_breach_that_begins_on_its_day_when_nothing_more_is_recorded(
    registry: Registry,
) -> None:
    """Read for today (nothing can be recorded for a later day), each warning is exactly a
    breach the findings have from its day and not the day before, and every breach that
    begins within the window is warned of."""
    walked_in = enrol(registry, by=DANING, on=TODAY - timedelta(days=400), n=1)
    open_case(registry, walked_in, by=DANING, on=TODAY - timedelta(days=21))  # stalls in 10
    for n, unit in ((2, HONGKOU), (3, FACTORY), (4, FACTORY)):  # quiet for almost 6 months
        enrol(registry, by=unit, on=TODAY - timedelta(days=170 + 3 * n), n=n)
    models = _models(registry)
    within = 30
    horizon = TODAY + timedelta(days=within)
    for unit in (DANING, HONGKOU, FACTORY):
        warnings = models.unit_queue(unit, TODAY, within=within)["due_soon"]
        beginning = {
            (f.rule, f.member_id, f.case_id, f.since.isoformat())
            for day in range(1, within + 1)
            for f in models.findings(on=TODAY + timedelta(days=day), unit_id=unit)
            if f.severity == "breach" and f.since == TODAY + timedelta(days=day)
        }
        assert {(w["rule"], w["member_id"], w["case_id"], w["due_on"]) for w in warnings} == (
            beginning
        ), unit
        assert all(TODAY < date.fromisoformat(w["due_on"]) <= horizon for w in warnings)
    rules = {
        w["rule"]
        for unit in (DANING, HONGKOU, FACTORY)
        for w in models.unit_queue(unit, TODAY, within=within)["due_soon"]
    }
    assert rules == {"R5", "R7"}


def test_a_window_out_of_range_is_refused_naming_within(registry: Registry) -> None:
    models = _models(registry)
    # The calendar's last day has nothing after it to warn of: an answer, not a refusal.
    assert models.unit_queue(DANING, date(2999, 12, 31), within=90)["due_soon"] == []
    for bad in (-1, 91):
        with pytest.raises(InvalidInput) as caught:
            models.unit_queue(DANING, TODAY, within=bad)
        assert caught.value.field == "within"


def test_harbor_queue_prints_the_warnings_and_takes_within(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'due.db'}"
    registry = open_registry(url, clock=lambda: TODAY)
    try:
        register_article_units(registry)
        member = enrol(registry, on=date(2024, 12, 1))
        open_case(registry, member, on=TODAY - timedelta(days=20))  # stalls in 11 days
        Projector(registry).catch_up()
    finally:
        registry.close()

    def queue(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", "queue", DANING, "--on", TODAY.isoformat(), *extra],
            env={"HARBOR_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    shown = queue()
    assert "预警 (breaches due within 14 days): 1" in shown
    assert "rule R5" in shown and "detail stalled" in shown and "member_name 党员1" in shown
    assert "预警 (breaches due within 5 days): 0" in queue("--within", "5")
