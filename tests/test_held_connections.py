"""Connections kept out of the pool between statements (store/held.py).

The stack must reuse the connection used last, give up a broken one, give back
what it holds when the registry closes, and never keep a connection another
caller is waiting for. The event loop's reads (store/async_reads.py) keep their
own small pool: more of them at once than it holds must wait, not fail.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import psycopg
from eventsourcing.persistence import StoredEvent

from domain.registry import Registry
from store import open_registry
from store.async_reads import POOL_SIZE, AsyncReads
from tests.conftest import TODAY


def _events(stream: uuid.UUID, *states: bytes) -> list[StoredEvent]:
    return [
        StoredEvent(stream, version, "tests:党员.事件", state)
        for version, state in enumerate(states, start=1)
    ]


def test_one_thread_appends_on_the_session_it_used_last(pg_registry: Registry) -> None:
    recorder = pg_registry.recorder
    backends = set()
    for _ in range(6):
        recorder.insert_events(_events(uuid.uuid4(), b"x"))
        (held,) = recorder.held._idle  # type: ignore[attr-defined]
        backends.add(held.info.backend_pid)

    assert len(backends) == 1


def test_a_broken_held_session_is_given_up_and_the_append_retried(pg_url: str) -> None:
    registry = open_registry(pg_url, clock=lambda: TODAY)
    recorder = registry.recorder
    try:
        recorder.insert_events(_events(uuid.uuid4(), b"a"))
        (held,) = recorder.held._idle  # type: ignore[attr-defined]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (held.info.backend_pid,))
        stream = uuid.uuid4()

        recorder.insert_events(_events(stream, b"b"))  # fails once, then on a new session

        assert [e.state for e in recorder.select_events(stream)] == [b"b"]
        assert held.closed and held not in recorder.held._idle  # type: ignore[attr-defined]
    finally:
        registry.close()


def test_closing_the_registry_gives_the_held_sessions_back(pg_url: str) -> None:
    registry = open_registry(pg_url, clock=lambda: TODAY)
    recorder = registry.recorder
    recorder.insert_events(_events(uuid.uuid4(), b"a"))
    (held,) = recorder.held._idle  # type: ignore[attr-defined]

    registry.close()

    assert recorder.held._idle == []  # type: ignore[attr-defined]
    assert held.closed


def test_a_held_session_goes_back_to_the_pool_when_someone_waits_for_one(pg_url: str) -> None:
    three = {"POSTGRES_POOL_SIZE": "3", "POSTGRES_MAX_OVERFLOW": "0"}
    registry = open_registry(pg_url, clock=lambda: TODAY, extra_env=three)
    recorder = registry.recorder
    pool = recorder.datastore.pool  # type: ignore[attr-defined]
    assert recorder.held.keep == 1  # type: ignore[attr-defined]
    kept = [pool.getconn(), pool.getconn()]
    got: list[bool] = []
    failures: list[BaseException] = []
    try:
        recorder.insert_events(_events(uuid.uuid4(), b"a"))  # the third session is parked
        assert len(recorder.held._idle) == 1  # type: ignore[attr-defined]

        def wait_for_one() -> None:
            try:
                # Times out (PoolTimeout) unless the parked session is given back.
                pool.putconn(pool.getconn(timeout=4))
                got.append(True)
            except BaseException as e:
                failures.append(e)

        waiter = threading.Thread(target=wait_for_one)
        waiter.start()
        while not pool.get_stats().get("requests_waiting"):
            assert waiter.is_alive(), failures  # it must be waiting, not gone
            time.sleep(0.01)
        recorder.insert_events(_events(uuid.uuid4(), b"b"))  # ends by giving it back
        waiter.join(timeout=10)

        assert not waiter.is_alive()
        assert failures == []
        assert got == [True]
        assert recorder.held._idle == []  # type: ignore[attr-defined]
    finally:
        for conn in kept:
            pool.putconn(conn)
        registry.close()


def test_a_small_pool_keeps_a_small_stack(pg_url: str) -> None:
    sizes = {("2", "0"): 0, ("3", "3"): 2, ("5", "10"): 4}
    for (size, overflow), keep in sizes.items():
        env = {"POSTGRES_POOL_SIZE": size, "POSTGRES_MAX_OVERFLOW": overflow}
        registry = open_registry(pg_url, clock=lambda: TODAY, extra_env=env)
        try:
            recorder = registry.recorder
            recorder.insert_events(_events(uuid.uuid4(), b"a"))

            assert recorder.held.keep == keep  # type: ignore[attr-defined]
            assert len(recorder.held._idle) == min(keep, 1)  # type: ignore[attr-defined]
        finally:
            registry.close()


def test_the_loops_reads_run_more_at_once_than_the_pool_holds(pg_registry: Registry) -> None:
    recorder = pg_registry.recorder
    reads = AsyncReads(recorder.datastore, recorder.events_table_name)  # type: ignore[attr-defined]

    async def many() -> list[list[tuple[object, ...]]]:
        await reads.open()
        try:
            return await asyncio.wait_for(
                asyncio.gather(
                    *(reads.rows("SELECT %s::int, pg_sleep(0.05)", (n,)) for n in range(12))
                ),
                timeout=4,
            )
        finally:
            await reads.close()

    answers = asyncio.run(many())

    assert [rows[0][0] for rows in answers] == list(range(12))
    assert POOL_SIZE < 12
