"""Helpers for the projection tests: read generation tables, rebuild, write many events fast.

Rows are read straight from a generation's physical tables (not the views), so
an incrementally built generation can be compared row for row with a fresh
rebuild of the same log.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg

from domain.letter_number import LetterNumber
from domain.member import Act, MemberRelationship
from domain.member_events import MemberEvent
from domain.registry import Actor, Registry
from domain.unit import Unit
from domain.values import (
    Basis,
    Channel,
    DeclineReason,
    EvidenceKind,
    Handover,
    Standing,
    YearMonth,
)
from projections import schema
from projections.runner import rebuild
from store import open_registry
from store.sql import Db
from tests.conftest import TODAY, reset_postgres
from tests.support import register_article_units

Rows = dict[str, list[tuple[Any, ...]]]


# --- stores ---------------------------------------------------------------------------------------


def is_postgres(url: str) -> bool:
    """True for a PostgreSQL store URL."""
    return url.startswith("postgres")


@contextmanager
def empty_registry(store_url: str) -> Iterator[Registry]:
    """A Registry (today fixed at TODAY) on an empty store of ``store_url``'s backend.

    PostgreSQL: the same test database, emptied. SQLite: a fresh file, removed after.
    """
    if is_postgres(store_url):
        empty_postgres_quickly(store_url)
        with _relaxed_commits():
            registry = open_registry(store_url, clock=lambda: TODAY)
            try:
                yield registry
            finally:
                registry.close()
        return
    folder = tempfile.mkdtemp(prefix="harbor-prop-")
    registry = open_registry(f"sqlite:///{folder}/harbor.db", clock=lambda: TODAY)
    try:
        yield registry
    finally:
        registry.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _relaxed_commits() -> Iterator[None]:
    """Connections opened meanwhile do not wait for the WAL flush at commit.

    ``synchronous_commit = off`` changes durability after a server crash only, not
    what any transaction sees, so it leaves the properties under test intact and
    makes the many tiny examples several times faster on a small machine.
    """
    before = os.environ.get("PGOPTIONS")
    os.environ["PGOPTIONS"] = f"{before or ''} -c synchronous_commit=off".strip()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PGOPTIONS", None)
        else:
            os.environ["PGOPTIONS"] = before


def reset_postgres_store(url: str) -> None:
    """Empty the PostgreSQL store (conftest.reset_postgres) and drop the tracking table.

    The library's single-row tracking table holds a ``__migration__`` marker; a reset
    that truncates it makes the next tracking recorder "migrate" the table by renaming
    it to ``bkup1_harbor_tracking``, which fails once that backup exists. Dropping both
    lets the recorder create the table afresh, whichever way reset_postgres empties it.
    """
    reset_postgres(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS harbor_tracking, bkup1_harbor_tracking")


@contextmanager
def fresh_registry_with_article_units(url: str) -> Iterator[Registry]:
    """A registry on an emptied store with the article's units, today pinned to TODAY."""
    if is_postgres(url):
        reset_postgres_store(url)
    app = open_registry(url, clock=lambda: TODAY)
    register_article_units(app)
    try:
        yield app
    finally:
        app.close()


def empty_postgres_quickly(url: str) -> None:
    """The same as ``reset_postgres_store``, by DELETE rather than TRUNCATE.

    TRUNCATE costs tens of milliseconds per table set however few rows there are;
    the property examples hold a few dozen rows, and run hundreds of times.
    """
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename LIKE 'harbor%'"
            )
        ]
        for name in tables:
            if name != "harbor_tracking":
                conn.execute(f'DELETE FROM "{name}"')  # type: ignore[arg-type]
        conn.execute("DROP TABLE IF EXISTS harbor_tracking, bkup1_harbor_tracking")
        sequences = conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            " AND sequencename LIKE 'harbor%'"
        ).fetchall()
        for (name,) in sequences:
            conn.execute(f'ALTER SEQUENCE "{name}" RESTART')  # type: ignore[arg-type]


def db_of(registry: Registry) -> Db:
    """The projection SQL surface on the registry's own datastore."""
    return Db(registry.recorder.datastore)  # type: ignore[attr-defined]


# --- reading tables -------------------------------------------------------------------------------


def generation_rows(registry: Registry, generation: int) -> Rows:
    """Every row of every table of ``generation``, each table sorted."""
    db = db_of(registry)
    found: Rows = {}
    for name in schema.TABLES:
        columns = ", ".join(schema.COLUMNS[name])
        rows = db.query(f"SELECT {columns} FROM {schema.table(generation, name)}")
        found[name] = sorted(rows, key=repr)
    return found


def live_generation(registry: Registry) -> int:
    """The generation the views show now (once any Projector or ReadModels made the schema)."""
    return schema.live_generation(db_of(registry))


def live_rows(registry: Registry) -> Rows:
    """The rows of the live generation."""
    return generation_rows(registry, live_generation(registry))


def rebuilt_rows(registry: Registry, **sizes: int) -> Rows:
    """Rebuild from position zero (a new generation, swapped in) and return its rows.

    ``sizes``: ``batch_size`` and ``cache_size`` for the rebuild (its defaults otherwise).
    """
    generation = rebuild(registry, **sizes)
    assert live_generation(registry) == generation
    return generation_rows(registry, generation)


def assert_same_rows(actual: Rows, expected: Rows, label: str = "incremental") -> None:
    """Table by table, row for row; the message names the first differing rows."""
    assert actual.keys() == expected.keys()
    for name in expected:
        got, want = actual[name], expected[name]
        if got != want:
            missing = [r for r in want if r not in got][:3]
            extra = [r for r in got if r not in want][:3]
            raise AssertionError(
                f"table {name}: {label} has {len(got)} rows, rebuild {len(want)};"
                f"\n  only in rebuild: {missing}\n  only in {label}: {extra}"
            )


def member_event_positions(registry: Registry) -> list[tuple[int, MemberEvent]]:
    """Every member event of the log with its position, in log order."""
    found: list[tuple[int, MemberEvent]] = []
    start = 1
    while True:
        page = registry.recorder.select_notifications(start, 1000)
        for note in page:
            event = registry.mapper.to_domain_event(note)
            if isinstance(event, MemberEvent):
                found.append((note.id, event))
        if len(page) < 1000:
            return found
        start = page[-1].id + 1


# --- writing many events fast ---------------------------------------------------------------------


def write_transfer_cases(registry: Registry, members: int, *, seed: int = 7) -> int:
    """Write ``members`` members, each with a transfer case of about ten events.

    The aggregates' own command methods decide every event (so every rule holds),
    and many members are saved per call to ``Registry.save`` — far faster than one
    command at a time. Returns the log head afterwards. Needs the article's units.
    """
    rng = random.Random(seed)
    units = {code: registry.unit(code) for code in _LIVE_UNITS}
    batch: list[Any] = []
    for n in range(members):
        batch += _one_transfer(registry, units, rng, n)
        if len(batch) >= 100:
            registry.save(*batch)
            batch = []
    if batch:
        registry.save(*batch)
    return registry.position()


_LIVE_UNITS = [
    "sh-org-dept",
    "sh-univ",
    "sh-residence-center",
    "home-county",
    "factory-superior",
    "daning-center",
    "hongkou-center",
]


def _one_transfer(
    registry: Registry, units: dict[str, Unit], rng: random.Random, n: int
) -> list[Any]:
    codes = list(units)
    holder = units[rng.choice(codes)]
    receiver = units[rng.choice([c for c in codes if c != holder.code])]
    first = units[rng.choice(codes)]
    enrolled = TODAY - timedelta(days=rng.randint(500, 4000))

    def act(unit: Unit, day: date) -> Act:
        return Act(unit, "bulk", day, TODAY, holder)

    member = MemberRelationship.enrol(
        act(holder, enrolled),
        member_id=registry.member_id_for(str(220101197001010000 + n)),
        name=f"党员{n}",
        id_digest=f"bulk-{n}",
        standing=Standing.FULL,
        probation_started_on=None,
        developing_unit=None,
        household_region=rng.choice(["上海", "上海·闸北", "外省某县"]),
        holder=holder,
    )
    extra: list[Any] = []
    day = TODAY - timedelta(days=rng.randint(120, 400))
    member.receive_dues(
        act(holder, enrolled),
        months_from=YearMonth(enrolled.year, 1),
        months_to=YearMonth(enrolled.year, 12),
        amount=Decimal("12.00"),
    )
    member.receive_inquiry(act(first, day), channel=Channel.WALK_IN, summary="申请转入")
    if first.code != receiver.code and rng.random() < 0.5:
        member.refer(
            act(first, day),
            case_id=None,
            to_unit=receiver,
            handover=rng.choice([Handover.WARM, Handover.COLD]),
            reason="转往接收单位",
        )
        day += timedelta(days=rng.randint(0, 20))
        if rng.random() < 0.3:
            member.decline_referral(
                act(receiver, day),
                case_id=None,
                reason_code=DeclineReason.NOT_OUR_AREA,
                note=None,
            )
            return [member]
        member.accept_referral(act(receiver, day), case_id=None)
    day += timedelta(days=rng.randint(0, 10))
    member.record_evidence(
        act(receiver, day),
        case_id=None,
        kind=EvidenceKind.LEASE,
        reference=f"lease-{n}",
        valid_until=None,
    )
    if holder.code != receiver.code:
        letter_no = f"B-{n}"
        member.issue_letter(
            act(holder, day),
            case_id=None,
            letter_no=letter_no,
            to_unit=receiver,
            valid_until=None,
            dues_paid_through=YearMonth(enrolled.year, 12),
            special_circumstances=None,
        )
        extra.append(LetterNumber.take(holder.code, day.year, letter_no, member.id))
        if rng.random() < 0.2:
            return [member, *extra]  # the letter stays out
        day += timedelta(days=rng.randint(0, 30))
        member.attach(
            act(receiver, day),
            case_id=None,
            basis=Basis.RESIDENCE,
            letter_no=letter_no,
            override_reason=None,
        )
        day += timedelta(days=rng.randint(0, 40))
        member.return_receipt(act(holder, day), case_id=None, letter_no=letter_no)
    if rng.random() < 0.7:
        attended = min(day + timedelta(days=3), TODAY)
        member.attend_activity(act(receiver, attended), kind="组织生活会")
    if rng.random() < 0.5:
        member.make_contact(act(receiver, TODAY), channel=Channel.PHONE, note="电话联系")
    return [member, *extra]


def member_ids(registry: Registry) -> list[UUID]:
    """Every member in the log, in enrolment order."""
    seen: dict[UUID, None] = {}
    for _, event in member_event_positions(registry):
        seen.setdefault(event.originator_id, None)
    return list(seen)


def write_corrections(registry: Registry, members: int) -> int:
    """Members whose stories revert: a referral voided, an attachment voided and redone.

    Voids make rows go back to what they were before (the referral row disappears,
    the letter is outstanding again), which is what a writer that diffs against
    rows it remembers can get wrong. Returns the log head. Needs the article's units.
    """
    for n in range(members):
        by = {code: Actor(code, "corrections") for code in _LIVE_UNITS}
        member = registry.enrol_member(
            by["factory-superior"],
            name=f"更正{n}",
            id_number=str(440101198001010000 + n),
            standing="full",
            household_region="外省某县",
            occurred_on=date(2020, 1, 6),
        ).member_id
        assert member is not None
        on = date(2026, 3, 2)
        registry.receive_inquiry(
            by["daning-center"], member, occurred_on=on, channel="walk_in", summary="申请转入"
        )
        referred = registry.refer_case(
            by["daning-center"],
            member,
            occurred_on=on,
            to_unit_id="hongkou-center",
            handover="warm",
            reason="居住在虹口",
        )
        assert referred.position is not None
        registry.void_entry(
            by["daning-center"], member, occurred_on=on, position=referred.position, reason="误转"
        )
        registry.record_evidence(
            by["daning-center"], member, occurred_on=on, kind="lease", reference=f"租赁-{n}"
        )
        registry.issue_letter(
            by["factory-superior"],
            member,
            occurred_on=date(2026, 3, 10),
            letter_no=f"C-{n}",
            to_unit_id="daning-center",
            dues_paid_through="2026-02",
        )
        attached = registry.attach_member(
            by["daning-center"],
            member,
            occurred_on=date(2026, 3, 12),
            basis="residence",
            letter_no=f"C-{n}",
        )
        assert attached.position is not None
        registry.void_entry(
            by["daning-center"],
            member,
            occurred_on=date(2026, 3, 12),
            position=attached.position,
            reason="日期录错",
        )
        registry.attach_member(
            by["daning-center"],
            member,
            occurred_on=date(2026, 3, 13),
            basis="residence",
            letter_no=f"C-{n}",
        )
        registry.attend_activity(
            by["daning-center"], member, occurred_on=date(2026, 3, 20), kind="组织生活会"
        )
    return registry.position()
