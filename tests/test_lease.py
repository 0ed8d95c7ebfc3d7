"""One follower among several server processes: the projection lease (PostgreSQL).

`harbor serve --workers N` runs N followers over one database; the lease lets one
of them fold and the others stand by, and hands over when the holder goes away.
"""

from __future__ import annotations

import threading
import time

import pytest

from api.demo import load_article_cases
from domain.registry import Registry
from projections import runner
from projections.runner import Projector, live_position, wait_for
from store.lease import Lease


def _lease(registry: Registry, key: int = 4242) -> Lease:
    return Lease(registry.recorder.datastore, key)  # type: ignore[attr-defined]


def test_only_one_process_holds_the_lease_until_it_lets_go(pg_registry: Registry) -> None:
    first, second = _lease(pg_registry), _lease(pg_registry)
    try:
        assert first.hold()
        assert not second.hold()
        assert first.hold()  # still held, and checked again
        first.release()
        assert second.hold()
        assert not first.hold()
    finally:
        first.release()
        second.release()


def test_a_lease_whose_session_ends_is_free_for_another(pg_registry: Registry) -> None:
    first, second = _lease(pg_registry), _lease(pg_registry)
    try:
        assert first.hold()
        with pg_registry.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND objid = 4242 AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        assert second.hold()
        # The old holder finds its session gone when it next checks, and stands by.
        first._checked = 0.0
        assert not first.hold()
    finally:
        first.release()
        second.release()


def test_a_follower_without_the_lease_stands_by_and_takes_over_when_it_is_free(
    pg_registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "STANDBY_SECONDS", 0.05)
    load_article_cases(pg_registry)
    holder = _lease(pg_registry, runner_key := 777)
    assert holder.hold()
    stop = threading.Event()
    follower = threading.Thread(
        target=Projector(pg_registry).follow,
        args=(stop,),
        kwargs={"poll_seconds": 0.02, "lease": _lease(pg_registry, runner_key)},
        daemon=True,
    )
    follower.start()
    try:
        time.sleep(0.5)
        assert live_position(pg_registry) == 0  # standing by: nothing folded
        holder.release()
        assert wait_for(pg_registry, pg_registry.position(), timeout=10)
    finally:
        stop.set()
        follower.join(timeout=10)
        holder.release()
    assert not follower.is_alive()
