"""The projection runner under stress, on SQLite and PostgreSQL: a real `harbor project`
process killed with SIGKILL and restarted; rebuilds while readers query; read-your-writes
(wait_for) with a follower; a follower racing many writers; a rebuild split between
processes; two runners folding one generation."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from api.demo import load_article_cases, load_units
from domain.registry import Actor, Registry
from projections import runner, schema
from projections.queries import ReadModels
from projections.runner import Projector, live_position, rebuild, wait_for
from store import open_registry
from tests.conftest import TODAY
from tests.projection_support import (
    assert_same_rows,
    db_of,
    generation_rows,
    is_postgres,
    live_generation,
    live_rows,
    member_event_positions,
    rebuilt_rows,
    reset_postgres_store,
    write_corrections,
    write_transfer_cases,
)

ROOT = Path(__file__).resolve().parent.parent
CLERK = Actor("daning-center", "clerk")


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


def enrol(registry: Registry, n: int) -> Any:
    return registry.enrol_member(
        CLERK,
        name=f"党员{n}",
        id_number=str(510101198001010000 + n),
        standing="full",
        household_region="上海·闸北",
        occurred_on=date(2020, 1, 6),
    )


# --- a real `harbor project` process, killed with SIGKILL -----------------------------------------


def _start_projector(store_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HARBOR_DATABASE_URL": store_url}
    env.pop("PGOPTIONS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "project", "--batch", "7", "--poll", "0.05"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _poll_position(
    registry: Registry,
    process: subprocess.Popen[str],
    done: Any,
    *,
    timeout: float = 120.0,
) -> int:
    """Poll the live tracking position until ``done(position)``; fail if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        position = live_position(registry)
        if done(position):
            return position
        if process.poll() is not None:
            raise AssertionError(
                f"harbor project exited with {process.returncode}: {process.communicate()[1]}"
            )
        time.sleep(0.002)
    process.kill()
    raise AssertionError(f"position stuck at {live_position(registry)}")


@pytest.mark.slow
def test_a_projector_process_killed_mid_run_resumes_where_it_stopped_and_ends_equal_to_a_rebuild(
    store_url: str, registry: Registry
) -> None:
    load_article_cases(registry)
    head = write_transfer_cases(registry, 60)
    Projector(registry)  # the schema and tracking table exist before any process races for them
    killed_at: list[int] = []

    for _ in range(2):  # killed twice, each time after some progress and before the end
        process = _start_projector(store_url)
        since = killed_at[-1] if killed_at else 0
        _poll_position(registry, process, lambda p, since=since: since < p < head)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        killed_at.append(live_position(registry))
        assert since < killed_at[-1] < head, "the kill did not land mid-run"

    process = _start_projector(store_url)
    _poll_position(registry, process, lambda p: p >= head)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    resumed = re.search(r"following the log from position (\d+)", stderr)
    assert resumed is not None and int(resumed.group(1)) == killed_at[-1], stderr
    assert f"stopped at position {head}" in stderr
    assert_same_rows(live_rows(registry), rebuilt_rows(registry), "after two kills")


# --- rebuilds while readers read ------------------------------------------------------------------


def test_queries_running_through_rebuilds_never_fail_and_always_get_the_whole_answer(
    request: pytest.FixtureRequest, store_url: str, registry: Registry
) -> None:
    members = load_article_cases(registry)
    write_transfer_cases(registry, 120)
    write_corrections(registry, 3)
    Projector(registry).catch_up()
    case_1 = ReadModels(registry).member_status(members.liu_yang)["open_case_id"]

    def ask(models: ReadModels) -> dict[str, Any]:
        return {
            "liu": models.member_status(members.liu_yang, TODAY),
            "old": models.member_status(members.old_comrade, TODAY),
            "findings": models.findings(on=TODAY),
            "scorecards": models.scorecards(on=TODAY),
            "queue": models.unit_queue("daning-center", TODAY),
            "case": models.case(case_1, TODAY),
        }

    expected = ask(ReadModels(registry))
    stop = threading.Event()
    failures: list[str] = []
    answers = [0]

    def reader() -> None:
        models = ReadModels(registry)
        while not stop.is_set():
            try:
                got = ask(models)
            except Exception as e:  # any failure is the finding
                failures.append(f"{type(e).__name__}: {e}")
                continue
            if got != expected:
                failures.append(
                    "different answer: "
                    + ", ".join(k for k in expected if got.get(k) != expected[k])
                )
            answers[0] += 1

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    generations = []
    try:
        deadline = time.monotonic() + 60
        while answers[0] < 3 and time.monotonic() < deadline:  # the readers are under way
            time.sleep(0.01)
        for _ in range(4):
            generations.append(rebuild(registry, batch_size=200))
        during = answers[0]
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=60)

    assert not failures, failures[:5]
    assert during > 3, "no query ran while rebuilding"
    assert len(set(generations)) == 4 and live_generation(registry) == generations[-1]
    assert ask(ReadModels(registry)) == expected


class _SwapPausingCursor:
    """Pauses a swap right after it dropped its first view, until told to go on."""

    def __init__(self, cur: Any, paused: threading.Event, go_on: threading.Event):
        self._cur, self._paused, self._go_on = cur, paused, go_on

    def execute(self, sql: str, params: Any = ()) -> None:
        self._cur.execute(sql, params)
        if sql.startswith("DROP VIEW") and not self._paused.is_set():
            self._paused.set()
            assert self._go_on.wait(timeout=60)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def test_a_query_that_meets_a_view_swap_gets_its_answer(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_postgres_store(pg_url)
    registry = open_registry(pg_url, clock=lambda: TODAY)
    try:
        members = load_article_cases(registry)
        Projector(registry).catch_up()
        models = ReadModels(registry)
        before = models.member_status(members.old_comrade, TODAY)
        paused, go_on = threading.Event(), threading.Event()
        swap = schema.point_views_at
        monkeypatch.setattr(
            schema,
            "point_views_at",
            lambda db, cur, generation: swap(
                db, _SwapPausingCursor(cur, paused, go_on), generation
            ),
        )
        errors: list[str] = []
        answers: list[Any] = []

        def run(task: Any) -> None:
            try:
                answers.append(task())
            except Exception as e:  # the finding
                errors.append(f"{type(e).__name__}: {e}")

        rebuilding = threading.Thread(target=run, args=(lambda: rebuild(registry),))
        rebuilding.start()
        assert paused.wait(timeout=30)  # the swap holds the first view it dropped
        asking = threading.Thread(
            target=run, args=(lambda: models.member_status(members.old_comrade, TODAY),)
        )
        asking.start()
        _wait_until_a_backend_waits_for_a_lock(pg_url)  # the query waits for that view
        go_on.set()
        rebuilding.join(timeout=60)
        asking.join(timeout=60)

        assert errors == []
        assert before in answers
    finally:
        registry.close()


# --- read-your-writes -----------------------------------------------------------------------------


def test_a_followers_progress_reaches_the_position_a_command_returned(registry: Registry) -> None:
    load_units(registry, "test")
    Projector(registry).catch_up()
    stop = threading.Event()
    follower = threading.Thread(
        target=Projector(registry, batch_size=5).follow, args=(stop,), kwargs={"poll_seconds": 0.05}
    )
    follower.start()
    try:
        enrolled = enrol(registry, 1)
        assert enrolled.position is not None
        assert wait_for(registry, enrolled.position, timeout=20)
        assert ReadModels(registry).member_status(enrolled.member_id)["holder_unit_id"] == (
            "daning-center"
        )

        inquiry = registry.receive_inquiry(
            CLERK,
            enrolled.member_id,
            occurred_on=date(2026, 3, 2),
            channel="walk_in",
            summary="咨询",
        )
        assert inquiry.position is not None and inquiry.position > enrolled.position
        assert wait_for(registry, inquiry.position, timeout=20)
        status = ReadModels(registry).member_status(enrolled.member_id)
    finally:
        stop.set()
        follower.join(timeout=30)

    assert not follower.is_alive()
    assert status["open_case_id"] == str(inquiry.case_id)


def test_wait_for_gives_up_after_its_timeout_when_nothing_follows(registry: Registry) -> None:
    load_units(registry, "test")
    Projector(registry).catch_up()
    enrolled = enrol(registry, 1)
    assert enrolled.position is not None

    started = time.monotonic()
    reached = wait_for(registry, enrolled.position, timeout=0.3)
    waited = time.monotonic() - started

    assert reached is False
    assert 0.3 <= waited < 10
    Projector(registry).catch_up()
    assert wait_for(registry, enrolled.position, timeout=0) is True


# --- the follower and many writers ---------------------------------------------------------------


@pytest.mark.slow
def test_a_follower_misses_no_event_while_several_threads_and_stores_write(
    store_url: str, registry: Registry
) -> None:
    load_units(registry, "test")
    Projector(registry).catch_up()
    grouped = open_registry(store_url, clock=lambda: TODAY, extra_env={"HARBOR_GROUP_COMMIT": "on"})
    plain = open_registry(store_url, clock=lambda: TODAY)
    following = open_registry(store_url, clock=lambda: TODAY)
    stop = threading.Event()
    follower = threading.Thread(
        target=Projector(following, batch_size=4).follow,
        args=(stop,),
        kwargs={"poll_seconds": 0.005},
    )
    errors: list[str] = []

    def write(store: Registry, first: int) -> None:
        try:
            for n in range(first, first + 8):
                member = enrol(store, n).member_id
                store.receive_inquiry(
                    CLERK, member, occurred_on=date(2026, 3, 2), channel="phone", summary="咨询"
                )
                store.receive_dues(
                    CLERK,
                    member,
                    occurred_on=date(2026, 3, 3),
                    months_from="2026-01",
                    months_to="2026-03",
                    amount="3.00",
                )
        except Exception as e:  # any failure is the finding
            errors.append(f"{type(e).__name__}: {e}")

    writers = [
        threading.Thread(target=write, args=(store, 100 * k))
        for k, store in enumerate([grouped, grouped, grouped, plain, plain])
    ]
    follower.start()
    try:
        for t in writers:
            t.start()
        for t in writers:
            t.join(timeout=120)
        assert wait_for(registry, registry.position(), timeout=60)
    finally:
        stop.set()
        follower.join(timeout=30)
        for store in (grouped, plain, following):
            store.close()

    assert not errors, errors
    assert len(live_rows(registry)["trail"]) == 5 * 8 * 3
    assert_same_rows(live_rows(registry), rebuilt_rows(registry), "follower")


# --- a rebuild in parallel processes -------------------------------------------------------------


@pytest.mark.slow
def test_a_rebuild_split_between_processes_gives_the_same_rows(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "WORKER_START_EVENTS", 0)  # a log this short: split evenly
    load_article_cases(registry)
    write_transfer_cases(registry, 40)
    write_corrections(registry, 3)
    one = rebuilt_rows(registry)

    generation = rebuild(registry, workers=2)

    assert live_generation(registry) == generation
    assert_same_rows(generation_rows(registry, generation), one, "two workers")


def _index_names(registry: Registry, generation: int) -> set[str]:
    db = db_of(registry)
    prefix = schema.table(generation, "")
    if db.backend == "postgres":
        found = db.query("SELECT indexname FROM pg_indexes WHERE tablename LIKE ?", (prefix + "%",))
    else:
        found = db.query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE ?",
            (prefix + "%",),
        )
    return {str(name) for (name,) in found if "_i" in str(name)}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rebuild_whose_members_leave_its_cache_writes_the_same_rows_as_a_follower(
    registry: Registry, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "WORKER_START_EVENTS", 0)  # a worker process even so
    load_article_cases(registry)
    write_transfer_cases(registry, 12)
    write_corrections(registry, 3)  # voids re-fold a member from the store mid-rebuild
    Projector(registry, batch_size=13).catch_up()  # incremental, rows after every batch
    followed = live_rows(registry)

    # A cache of two members: most members leave it, and are written, before their end.
    generation = rebuild(registry, batch_size=7, cache_size=2, workers=workers)

    assert live_generation(registry) == generation
    assert_same_rows(followed, generation_rows(registry, generation), "follower")
    expected = {
        f"{schema.table(generation, name)}_i{i}"
        for name, columns in schema.INDEXES.items()
        for i in range(len(columns))
    }
    assert _index_names(registry, generation) == expected  # built after the bulk load


def test_a_deferring_fold_cannot_be_run_batch_by_batch_or_resumed_after_losing_its_rows(
    registry: Registry,
) -> None:
    load_article_cases(registry)
    db = db_of(registry)
    schema.ensure_schema(db)
    generation = schema.start_generation(db, loading=True)
    folding = Projector(registry, generation=generation, batch_size=3, defer=True)

    with pytest.raises(RuntimeError, match="catch_up"):
        folding.run_once()

    original = folding._write_unwritten
    folding._write_unwritten = lambda: None  # type: ignore[method-assign]
    folding.catch_up()
    folding._write_unwritten = original  # type: ignore[method-assign]
    assert folding._unwritten, "the fold owes rows at its end"
    with pytest.raises(RuntimeError, match="start the rebuild again"):
        folding._forget()  # what a race or a new generation would do: the rows are gone


# --- two runners on one generation ----------------------------------------------------------------


def _trail_duplicates(registry: Registry) -> list[tuple[Any, ...]]:
    db = db_of(registry)
    generation = live_generation(registry)
    return db.query(
        f"SELECT member_id, version, COUNT(*) FROM harbor_p{generation}_trail"
        " GROUP BY member_id, version HAVING COUNT(*) > 1"
    )


@pytest.mark.slow
def test_two_projectors_folding_the_same_generation_at_once_end_equal_to_a_rebuild(
    store_url: str, registry: Registry
) -> None:
    load_article_cases(registry)
    write_transfer_cases(registry, 40)
    head = write_corrections(registry, 6)  # voids: rows go back to what they were
    Projector(registry)  # schema first, so the runners do not race to create it
    stores = [open_registry(store_url, clock=lambda: TODAY) for _ in range(2)]
    errors: list[str] = []
    raced = [0]

    def fold(projector: Projector) -> None:
        try:
            deadline = time.monotonic() + 120
            while projector.position() < head and time.monotonic() < deadline:
                raced[0] += projector.run_once().raced
        except Exception as e:  # any failure is the finding
            errors.append(f"{type(e).__name__}: {e}")

    runners = [
        threading.Thread(target=fold, args=(Projector(own, batch_size=size),))
        for own, size in zip(stores, (3, 5), strict=True)
    ]
    try:
        for t in runners:
            t.start()
        for t in runners:
            t.join(timeout=180)
    finally:
        for own in stores:
            own.close()

    assert not errors, errors
    assert live_position(registry) == head
    assert _trail_duplicates(registry) == []
    assert len(live_rows(registry)["trail"]) == len(member_event_positions(registry))
    assert_same_rows(live_rows(registry), rebuilt_rows(registry), "two projectors")
    assert raced[0] > 0, "the two never met: nothing was tested"


def test_a_projector_rewrites_rows_another_projector_changed_in_between(
    registry: Registry,
) -> None:
    load_units(registry, "test")
    member = enrol(registry, 1).member_id
    registry.receive_inquiry(
        CLERK, member, occurred_on=date(2026, 3, 2), channel="walk_in", summary="申请转入"
    )
    follower = Projector(registry)
    follower.catch_up()  # remembers the member with an open case and no referral
    referred = registry.refer_case(
        CLERK,
        member,
        occurred_on=date(2026, 3, 2),
        to_unit_id="hongkou-center",
        handover="warm",
        reason="居住在虹口",
    )
    assert referred.position is not None
    Projector(registry).catch_up()  # another runner (a CLI read) folds the referral
    registry.void_entry(
        CLERK, member, occurred_on=date(2026, 3, 3), position=referred.position, reason="误转"
    )

    follower.catch_up()  # folds the void: the referral is gone again

    assert_same_rows(live_rows(registry), rebuilt_rows(registry), "follower")


class _PausingCursor:
    """Pauses the transaction after its first DELETE, until told to go on."""

    def __init__(self, cur: Any, paused: threading.Event, go_on: threading.Event):
        self._cur, self._paused, self._go_on = cur, paused, go_on

    def execute(self, sql: str, params: Any = ()) -> None:
        self._cur.execute(sql, params)
        if sql.lstrip().upper().startswith("DELETE") and not self._paused.is_set():
            self._paused.set()
            assert self._go_on.wait(timeout=60)

    def executemany(self, sql: str, rows: Any) -> None:
        self._cur.executemany(sql, rows)

    def fetchall(self) -> Any:
        return self._cur.fetchall()

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    @property
    def raw(self) -> Any:
        return self._cur.raw


def test_a_fresh_runner_and_a_following_runner_folding_one_batch_do_not_deadlock(
    pg_url: str,
) -> None:
    reset_postgres_store(pg_url)
    registry = open_registry(pg_url, clock=lambda: TODAY)
    try:
        load_units(registry, "test")
        member = enrol(registry, 1).member_id
        registry.receive_inquiry(
            CLERK, member, occurred_on=date(2026, 3, 2), channel="walk_in", summary="申请转入"
        )
        following = Projector(registry)
        following.catch_up()  # remembers the member's rows: it will diff, not rewrite
        registry.notify_requirements(
            CLERK, member, occurred_on=date(2026, 3, 3), documents=["租赁合同"]
        )
        fresh = Projector(registry)  # remembers nothing: it will rewrite the member
        paused, go_on = threading.Event(), threading.Event()
        flush = fresh.writer.flush
        fresh.writer.flush = lambda cur, generation, changes: flush(  # type: ignore[method-assign]
            _PausingCursor(cur, paused, go_on), generation, changes
        )
        errors: list[str] = []

        def run(projector: Projector) -> None:
            try:
                projector.run_once()
            except Exception as e:  # the finding
                errors.append(f"{type(e).__name__}: {e}")

        first = threading.Thread(target=run, args=(fresh,))
        first.start()
        assert paused.wait(timeout=30)  # the fresh runner holds the child rows it deleted
        second = threading.Thread(target=run, args=(following,))
        second.start()
        _wait_until_a_backend_waits_for_a_lock(pg_url)
        go_on.set()
        first.join(timeout=60)
        second.join(timeout=60)

        assert errors == []
        assert live_position(registry) == registry.position()
        assert_same_rows(live_rows(registry), rebuilt_rows(registry), "after the race")
    finally:
        registry.close()


def _wait_until_a_backend_waits_for_a_lock(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0] > 0:
                return
            time.sleep(0.01)
    raise AssertionError("the following runner never waited for the fresh runner's locks")


class _CommitFailed(Exception):
    pass


def test_a_pipelined_catch_up_failing_mid_way_keeps_what_it_committed_and_resumes(
    registry: Registry,
) -> None:
    """The writer thread's third commit fails: the two batches before it stay, nothing of
    the third (or of the batch folded meanwhile) is visible, and a new run ends equal to
    a rebuild."""
    load_article_cases(registry)
    write_transfer_cases(registry, 12)
    projector = Projector(registry, batch_size=10)
    commits: list[int] = []
    commit = projector._commit

    def failing_commit(changes: Any, last: int | None) -> None:
        if len(commits) == 2:
            raise _CommitFailed("the database went away")
        commit(changes, last)
        assert last is not None
        commits.append(last)

    projector._commit = failing_commit  # type: ignore[method-assign]
    with pytest.raises(_CommitFailed):
        projector.catch_up()

    assert live_position(registry) == commits[-1] == 20
    del projector._commit
    assert projector.catch_up() == registry.position() - 20
    assert_same_rows(live_rows(registry), rebuilt_rows(registry), "after resuming")


def test_a_follower_told_to_stop_stops_between_batches(registry: Registry) -> None:
    load_article_cases(registry)
    write_transfer_cases(registry, 12)
    projector = Projector(registry, batch_size=5)
    stop = threading.Event()
    seen: list[int] = []

    def progress(events: int, position: int) -> None:
        seen.append(position)
        stop.set()  # asked to stop after the first batch committed

    projector.catch_up(progress=progress, until=stop)

    assert seen[0] == 5
    # The batch already being written when it was told is finished; no more are read.
    assert live_position(registry) == seen[-1] <= 10 < registry.position()


# --- how a rebuild splits the log -----------------------------------------------------------------


def test_a_rebuild_gives_this_process_more_than_an_even_share_for_the_workers_start_up() -> None:
    one_million = runner.shares(1_000_000, 2)
    hundred_thousand = runner.shares(100_000, 2)

    assert runner.shares(100_000, 1) == [(0, 256)]
    assert runner.shares(runner.WORKER_START_EVENTS, 2) == [(0, 256)]  # too short to split
    for split in (one_million, hundred_thousand, runner.shares(100_000, 3)):
        assert split[0][0] == 0 and split[-1][1] == 256  # every byte value, once
        assert all(a[1] == b[0] for a, b in itertools.pairwise(split))
    assert 128 < one_million[0][1] < hundred_thousand[0][1]  # the shorter, the bigger
    three = runner.shares(100_000, 3)
    assert three[1][1] - three[1][0] == three[2][1] - three[2][0]  # workers alike


# --- failures are errors, not races ---------------------------------------------------------------


def _projected_with_a_failing_worker(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, Any]:
    """The article's cases projected, and any rebuild worker process unable to open the store;
    returns the live generation and its rows."""
    monkeypatch.setattr(runner, "WORKER_START_EVENTS", 0)  # a worker process even so
    load_article_cases(registry)
    Projector(registry).catch_up()
    # The worker process opens the store from this environment, and cannot.
    broken = {**dict(registry.env), "APPLICATION_RECORDER_TOPIC": "store.recorders:Missing"}
    monkeypatch.setattr(registry, "env", broken)
    return live_generation(registry), live_rows(registry)


@pytest.mark.slow
def test_a_rebuild_whose_worker_fails_raises_and_leaves_the_live_tables_as_they_were(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    live, before = _projected_with_a_failing_worker(registry, monkeypatch)

    with pytest.raises(RuntimeError, match="worker failed"):
        rebuild(registry, workers=2)

    assert live_generation(registry) == live
    assert live_rows(registry) == before


def test_a_key_conflict_no_other_runner_caused_is_raised_not_retried_as_a_race(
    registry: Registry,
) -> None:
    load_article_cases(registry)
    projector = Projector(registry)
    first = next(e for _, e in member_event_positions(registry) if e.originator_version == 1)
    members = schema.table(projector.generation, "members")
    with db_of(registry).transaction() as cur:  # a row the runner does not expect
        cur.execute(
            f"INSERT INTO {members} (member_id, name, standing, household_region, enrolled_on,"
            " holder_unit_id, holder_since, version, holdings, signs)"
            " VALUES (?, 'x', 'full', 'x', '2020-01-01', 'x', '2020-01-01', 1, '[]', '[]')",
            (str(first.originator_id),),
        )

    with pytest.raises(IntegrityError):
        projector.run_once()
    assert projector.position() == 0


def test_every_lookup_a_rebuilds_load_makes_has_an_index_from_the_start() -> None:
    from projections.writer import KEYS, MEMBER_TABLES

    for name in MEMBER_TABLES[1:]:  # a member rewritten whole: DELETE … WHERE member_id
        by_member = KEYS[name][0] == "member_id" and "PRIMARY KEY (member_id" in (
            schema.TABLES[name]
        )
        assert by_member or "member_id" in schema.NEEDED_WHILE_LOADING.get(name, set()), name
    statements = schema.index_statements(7, loading=True)
    assert any("harbor_p7_cases" in s and "(member_id)" in s for s in statements)


@pytest.mark.slow
def test_harbor_rebuild_says_what_failed_and_that_nothing_changed_when_a_worker_fails(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from api.cli_projections import _rebuild

    live, _ = _projected_with_a_failing_worker(registry, monkeypatch)

    status = _rebuild(registry, 100, 2)

    said = capsys.readouterr().err
    assert status == 1
    assert "a rebuild worker failed" in said and "live projections are unchanged" in said
    assert live_generation(registry) == live


def test_a_swap_never_takes_the_live_position_back(registry: Registry) -> None:
    """A follower folds into the live generation while a rebuild's generation catches up:
    the swap folds at least as far, so a reader that waited for a position still sees it."""
    load_article_cases(registry)
    db = db_of(registry)
    schema.ensure_schema(db)
    building = schema.start_generation(db)
    new = Projector(registry, generation=building, batch_size=2)
    new.catch_up()
    for n in range(6):  # written after the new generation caught up ...
        enrol(registry, 900 + n)
    follower = Projector(registry)
    follower.catch_up()  # ... and folded into the live one only
    reached = live_position(registry)
    assert reached == registry.position() and new.position() < reached

    new.run_once(swap=True)  # one page of 2 would leave it behind the live one

    assert schema.live_generation(db) == building
    assert live_position(registry) >= reached
    assert ReadModels(registry).member_status(registry.member_id_for(str(510101198001010000 + 905)))


def test_a_rebuild_overtaken_by_another_swaps_nothing(registry: Registry) -> None:
    load_article_cases(registry)
    db = db_of(registry)
    schema.ensure_schema(db)
    first = Projector(registry, generation=schema.start_generation(db))
    first.catch_up()
    second = schema.start_generation(db)  # another rebuild starts (and drops the first's)

    with pytest.raises(RuntimeError, match="another rebuild started meanwhile"):
        first.run_once(swap=True)

    assert schema.live_generation(db) not in (first.generation, second)


def test_a_second_rebuild_refuses_to_start_while_one_runs(registry: Registry) -> None:
    from store.lease import rebuild_lock

    load_article_cases(registry)
    live = schema.ensure_schema(db_of(registry))
    with rebuild_lock(registry):  # a rebuild running in another process
        with pytest.raises(RuntimeError, match="another harbor rebuild is running"):
            rebuild(registry)
        assert schema.live_generation(db_of(registry)) == live  # nothing dropped or swapped
    assert rebuild(registry) == live + 1  # free again once the first one ended


def test_rebuilds_start_while_commands_and_a_follower_write(registry: Registry) -> None:
    # On SQLite a rebuild used to read the state before writing it, and a commit landing in
    # between failed it at once ("database is locked"); it now takes the lock first.
    load_article_cases(registry)
    stop = threading.Event()
    failures: list[BaseException] = []
    enrolled: list[int] = []

    def write() -> None:
        n = 0
        while not stop.is_set():
            try:
                enrol(registry, 700 + n)
            except BaseException as e:
                failures.append(e)
                return
            n += 1
            enrolled.append(n)

    def follow() -> None:
        try:
            Projector(registry).follow(stop, poll_seconds=0.01, linger_seconds=0.0)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=write), threading.Thread(target=follow)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            rebuild(registry, workers=1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a writer or the follower hung"
    assert failures == []
    assert enrolled, "no command was written while the rebuilds ran"
    # Whatever the rebuilds swapped in and the follower folded, once caught up the live
    # generation holds exactly what a fresh rebuild of the whole log gives.
    Projector(registry).catch_up()
    assert live_position(registry) == registry.position()
    assert_same_rows(live_rows(registry), rebuilt_rows(registry), label="live")
