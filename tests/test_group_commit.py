"""Group commit: concurrent commands share transactions and keep their own outcomes."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import date
from typing import Any
from uuid import UUID

import pytest

from domain.errors import HarborError
from domain.member_events import ContactMade
from domain.registry import Registry
from projections.history import member_events_with_positions
from store import open_registry
from tests.conftest import TODAY
from tests.scenarios import LETTER_NO, issue_letter, open_case
from tests.support import as_unit, event_count, register_article_units

THREADS = 8
PER_THREAD = 40


@pytest.fixture(params=["1", "2"], ids=["one leader", "two leaders"])
def grouped(request: pytest.FixtureRequest, store_url: str) -> Registry:
    app = open_registry(store_url, clock=lambda: TODAY,
                        extra_env={"HARBOR_GROUP_COMMIT": "on",
                                   "HARBOR_GROUP_COMMIT_MAX_WAIT_MS": "2",
                                   "HARBOR_GROUP_COMMIT_LEADERS": request.param})
    yield app  # type: ignore[misc]
    app.close()


def _members(registry: Registry, n: int) -> list[UUID]:
    register_article_units(registry)
    ids = []
    for i in range(n):
        outcome = registry.enrol_member(
            as_unit("daning-center"), name=f"党员{i}", id_number=f"31010919500101{i:04d}",
            standing="full", household_region="上海·虹口", occurred_on=date(2020, 1, 1))
        assert outcome.member_id is not None
        ids.append(outcome.member_id)
    return ids


def test_commands_arriving_while_a_batch_commits_share_the_next_transaction(
    grouped: Registry,
) -> None:
    members = _members(grouped, THREADS)
    committer = grouped.committer
    assert committer is not None
    put = committer._put

    def slow_put(events: list[Any], receipts: list[Any]) -> Any:
        time.sleep(0.05)  # a slow disk: the other commands queue up meanwhile
        return put(events, receipts)

    committer._put = slow_put
    batches, commands = committer.batches, committer.commands
    barrier = threading.Barrier(THREADS)
    positions: list[int | None] = []

    def work(worker: int) -> None:
        barrier.wait()
        outcome = grouped.make_contact(
            as_unit("daning-center"), members[worker], occurred_on=date(2026, 1, 1),
            channel="phone", note=f"slow-{worker}")
        positions.append(outcome.position)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert committer.commands - commands == THREADS
    assert committer.batches - batches < THREADS  # some commands shared a transaction
    assert len(set(positions)) == THREADS and None not in positions


@pytest.mark.slow
def test_threads_on_overlapping_members_each_get_their_own_outcome(grouped: Registry) -> None:
    members = _members(grouped, 5)
    before = event_count(grouped)
    acknowledged: list[tuple[str, UUID, int | None]] = []
    refused: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def work(worker: int) -> None:
        rng = random.Random(worker)
        barrier.wait()
        for i in range(PER_THREAD):
            member = rng.choice(members)
            note = f"w{worker}-{i}"
            pinned = grouped.member(member).version if i % 3 == 0 else None
            try:
                outcome = grouped.make_contact(
                    as_unit("daning-center", f"clerk-{worker}"), member,
                    occurred_on=date(2026, 1, 1), channel="phone", note=note,
                    expected_version=pinned, idempotency_key=note if i % 5 == 0 else None)
            except HarborError as e:
                with lock:
                    refused[e.code] += 1
                continue
            with lock:
                acknowledged.append((note, member, outcome.position))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    stored = [e for m in members for e in grouped.member(m).history
              if isinstance(e, ContactMade)]
    notes = Counter(e.note for e in stored)
    assert set(notes) == {note for note, _, _ in acknowledged}  # acknowledged = stored
    assert all(count == 1 for count in notes.values())  # and stored once
    assert event_count(grouped) == before + len(acknowledged)  # refused stored nothing
    assert len(acknowledged) + sum(refused.values()) == THREADS * PER_THREAD
    assert set(refused) <= {"STALE_VERSION"}
    assert refused["STALE_VERSION"] > 0  # pinned versions still lose races
    for note, member, position in acknowledged:  # each command got its own event's position
        found = [p for p, e in member_events_with_positions(grouped, member)
                 if isinstance(e, ContactMade) and e.note == note]
        assert [position] == found


def test_a_refused_command_in_a_shared_batch_fails_alone(grouped: Registry) -> None:
    (member,) = _members(grouped, 1)
    version = grouped.member(member).version
    results: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def contact(name: str, pinned: int | None) -> None:
        barrier.wait()
        try:
            grouped.make_contact(as_unit("daning-center"), member, occurred_on=date(2026, 1, 1),
                                 channel="phone", note=name, expected_version=pinned)
            results[name] = "ok"
        except HarborError as e:
            results[name] = e.code

    a = threading.Thread(target=contact, args=("a", version))
    b = threading.Thread(target=contact, args=("b", version))
    a.start()
    b.start()
    a.join()
    b.join()

    assert sorted(results.values()) == ["STALE_VERSION", "ok"]
    assert grouped.member(member).version == version + 1


def test_two_leaders_commit_at_once_and_ids_still_commit_in_order(store_url: str) -> None:
    """A reader never sees a position filled in below one it has already seen."""
    registry = open_registry(store_url, clock=lambda: TODAY,
                             extra_env={"HARBOR_GROUP_COMMIT": "on",
                                        "HARBOR_GROUP_COMMIT_LEADERS": "2"})
    try:
        members = _members(registry, THREADS)
        committer = registry.committer
        assert committer is not None and committer.max_leaders == 2
        put, lock = committer._put, threading.Lock()
        under_way, most = [0], [0]

        def slow_put(events: list[Any], receipts: list[Any]) -> Any:
            with lock:
                under_way[0] += 1
                most[0] = max(most[0], under_way[0])
            try:
                time.sleep(0.02)
                return put(events, receipts)
            finally:
                with lock:
                    under_way[0] -= 1

        committer._put = slow_put
        seen: list[tuple[int, list[int]]] = []  # (highest position, every position up to it)
        failures: list[BaseException] = []
        writing = threading.Event()
        before = event_count(registry)

        def sample() -> None:
            try:
                while writing.is_set():
                    ids = [n.id for n in registry.recorder.select_notifications(1, 10_000)]
                    if ids:
                        seen.append((ids[-1], ids))
            except BaseException as e:
                failures.append(e)

        def work(worker: int) -> None:
            try:
                for i in range(5):
                    registry.make_contact(
                        as_unit("daning-center"), members[worker],
                        occurred_on=date(2026, 1, 1), channel="phone", note=f"{worker}-{i}")
            except BaseException as e:
                failures.append(e)

        writing.set()
        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        finally:
            writing.clear()
            sampler.join(timeout=60)

        assert not any(t.is_alive() for t in [*threads, sampler]), "a thread hung"
        assert failures == []
        assert event_count(registry) == before + THREADS * 5  # every command stored its event
        assert most[0] == 2  # two transactions were under way at once
        final = [n.id for n in registry.recorder.select_notifications(1, 10_000)]
        for highest, ids in seen:
            assert [i for i in final if i <= highest] == ids
        assert len(seen) > 5
    finally:
        registry.close()


def test_a_taken_letter_number_in_a_shared_batch_fails_alone(grouped: Registry) -> None:
    """Its append fails the shared transaction; every other command still commits."""
    members = _members(grouped, THREADS)
    for member in members[:2]:
        open_case(grouped, member, by="daning-center")
    issue_letter(grouped, members[0], by="daning-center", to="hongkou-center")
    committer = grouped.committer
    assert committer is not None
    put = committer._put

    def slow_put(events: list[Any], receipts: list[Any]) -> Any:
        time.sleep(0.02)  # let the commands queue up together
        return put(events, receipts)

    committer._put = slow_put
    before = event_count(grouped)
    results: dict[int, str] = {}
    barrier = threading.Barrier(THREADS)

    def work(worker: int) -> None:
        barrier.wait()
        try:
            if worker == 1:  # the number member 0's letter already has
                issue_letter(grouped, members[1], by="daning-center", to="hongkou-center",
                             letter_no=LETTER_NO)
            else:
                grouped.make_contact(as_unit("daning-center"), members[worker],
                                     occurred_on=date(2026, 1, 1), channel="phone",
                                     note=f"n{worker}")
            results[worker] = "ok"
        except HarborError as e:
            results[worker] = e.code

    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert results.pop(1) == "LETTER_NO_TAKEN"
    assert set(results.values()) == {"ok"}
    assert event_count(grouped) == before + THREADS - 1  # the refused letter stored nothing


@pytest.mark.parametrize("leaders", [1, 2, 3])
def test_the_committer_alone_gives_every_job_its_own_recordings_with_bounded_leaders(
    leaders: int,
) -> None:
    """Given many threads submitting at once to a slow store, when they commit, then each
    gets back exactly its own events, never more than ``leaders`` transactions run at
    once, batches are shared, and a failing batch is retried job by job."""
    from eventsourcing.persistence import IntegrityError

    from domain.committer import GroupCommitter

    running, most, batches = 0, 0, []
    lock = threading.Lock()
    rng = random.Random(leaders)

    def put(events: list[Any], receipts: list[Any]) -> list[Any]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            batches.append(len(events))
        try:
            time.sleep(rng.random() / 2000)
            if len(events) > 1 and any(e == "poison" for e in events):
                raise IntegrityError("one of these conflicts")
            if events == ["poison"]:
                raise IntegrityError("this one conflicts")
            return [("stored", e) for e in events]
        finally:
            with lock:
                running -= 1

    committer = GroupCommitter(put, max_batch=4, max_leaders=leaders)
    results: dict[str, Any] = {}

    def submit(name: str) -> None:
        try:
            results[name] = committer.submit([name], [])
        except IntegrityError:
            results[name] = "refused"

    names = [f"t{t}-{i}" for t in range(12) for i in range(30)] + ["poison"] * 1
    threads = [threading.Thread(target=lambda ns=names[t::12]: [submit(n) for n in ns],
                                daemon=True) for t in range(12)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a submitter never returned"
    assert results.pop("poison") == "refused"
    assert results == {n: [("stored", n)] for n in names if n != "poison"}
    assert most <= leaders
    assert max(batches) > 1  # commands waiting behind a commit shared the next one
