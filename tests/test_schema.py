"""Several processes opening a Registry on the same empty store at the same moment all succeed.

Creating the schema is the one thing every process does first, so a fresh
deployment that starts several workers at once races on it. PostgreSQL gets a
brand-new empty database made here from the admin URL (and dropped after);
SQLite gets a file that does not exist yet.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from store import open_registry
from tests import racing
from tests.conftest import TODAY, fresh_pg_database
from tests.support import event_count

pytestmark = pytest.mark.slow

PROCESSES = 4


@pytest.fixture
def empty_pg_database() -> Iterator[str]:
    """A PostgreSQL database with nothing in it, created for this test and dropped after."""
    with fresh_pg_database("harbor_schema") as url:
        yield url


def _race_to_open(url: str) -> None:
    results = racing.race(racing.open_and_register, [(url, TODAY)] * PROCESSES)
    assert [r.code for r in results] == [racing.OK] * PROCESSES, [r.detail for r in results]
    assert all(r.outcome is not None and r.outcome.version == 1 for r in results)
    positions = sorted(r.outcome.position or 0 for r in results if r.outcome is not None)
    assert positions == list(range(1, PROCESSES + 1))

    # The store is usable afterwards by yet another process, and holds exactly those writes.
    after = open_registry(url, clock=lambda: TODAY)
    try:
        assert event_count(after) == PROCESSES
        assert sorted(u.code for u in after.units()) == [
            f"schema-unit-{i}" for i in range(PROCESSES)
        ]
    finally:
        after.close()


def test_postgres_schema_is_created_once_by_racing_processes(empty_pg_database: str) -> None:
    with psycopg.connect(empty_pg_database) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,), "the database starts empty"

    _race_to_open(empty_pg_database)

    with psycopg.connect(empty_pg_database) as conn:

        def count(sql: str, *params: str) -> int:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return int(row[0])

        tables = sorted(
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        assert tables == ["harbor_command_receipts", "harbor_events"]
        for relation in (
            "harbor_events",
            "harbor_command_receipts",
            "harbor_events_notification_id_idx",
        ):
            assert count("SELECT count(*) FROM pg_class WHERE relname = %s", relation) == 1
        assert count("SELECT count(*) FROM pg_type WHERE typname = 'stored_event_uuid'") == 1
        assert count("SELECT count(*) FROM pg_proc WHERE proname = 'es_insert_events_uuid'") == 1
        assert count("SELECT count(*) FROM harbor_events") == PROCESSES


def test_sqlite_schema_is_created_once_by_racing_processes(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "harbor.db"
    assert not path.exists()

    _race_to_open(f"sqlite:///{path}")

    with sqlite3.connect(path) as conn:
        tables = sorted(
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
        assert tables == ["harbor_command_receipts", "stored_events"]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM stored_events").fetchone() == (PROCESSES,)
