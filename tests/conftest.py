"""One suite, two backends: every store-touching test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg
import pytest

from domain.registry import Registry
from store import open_registry

TODAY = date(2026, 11, 26)
PG_ADMIN_URL = os.environ.get(
    "HARBOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _pg_reachable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as e:
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {e}".strip()


_PG_PROBLEM = _pg_reachable()


def require_postgres() -> None:
    """Skip loudly without PostgreSQL; under CI its absence is a failure."""
    if _PG_PROBLEM is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {_PG_PROBLEM}")
    pytest.skip(f"SKIPPED POSTGRES TESTS — {_PG_PROBLEM} (set HARBOR_TEST_POSTGRES_URL)")


def _with_db(url: str, dbname: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{dbname}"))


@contextmanager
def fresh_pg_database(prefix: str = "harbor_test") -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL), dropped afterwards."""
    require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(PG_ADMIN_URL, name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session, dropped at the end."""
    with fresh_pg_database() as url:
        yield url


def reset_postgres(url: str) -> None:
    """Empty every Harbor table so each test starts from an empty log."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename LIKE 'harbor%'"
            )
        ]
        # The library's tracking table keeps a migration marker row it relies on.
        emptied = [t for t in tables if t != "harbor_tracking"]
        if emptied:
            conn.execute(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in emptied) + " RESTART IDENTITY"
            )
        if "harbor_tracking" in tables:
            conn.execute(
                "DELETE FROM harbor_tracking WHERE application_name <> '__migration__'"
            )


def empty_for_a_server(url: str) -> None:
    """``reset_postgres``, and a fresh projection tracking table: for a store a whole app
    (or `harbor serve`) opens, whose tracking recorder would otherwise "migrate" the
    emptied table into a ``bkup1_`` table that may already exist."""
    reset_postgres(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS harbor_tracking, bkup1_harbor_tracking")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'harbor.db'}"
    url: str = request.getfixturevalue("pg_database")
    reset_postgres(url)
    return url


def _opened(url: str) -> Iterator[Registry]:
    app = open_registry(url, clock=lambda: TODAY)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def registry(store_url: str) -> Iterator[Registry]:
    """A Registry on an empty store whose today is fixed at TODAY."""
    yield from _opened(store_url)


@pytest.fixture
def pg_registry(pg_url: str) -> Iterator[Registry]:
    """A Registry on an empty PostgreSQL store only, its today fixed at TODAY."""
    yield from _opened(pg_url)


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """An empty PostgreSQL store only (for tests that are about PostgreSQL itself)."""
    reset_postgres(pg_database)
    return pg_database
