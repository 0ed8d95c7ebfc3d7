"""One small SQL surface over the event store's own connections, for both backends.

Projection SQL is written once with ``?`` placeholders and portable syntax
(``INSERT … ON CONFLICT``, text dates, JSON as text); on PostgreSQL the
placeholders become ``%s``. Transactions run on the event store's own
datastore, so projection rows and the library's tracking record commit
together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Protocol

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg.rows import tuple_row

from store.held import connection_lost, held_for


class Cursor(Protocol):
    """What projection code needs of a cursor."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def fetchall(self) -> list[tuple[Any, ...]]: ...
    def fetchone(self) -> tuple[Any, ...] | None: ...

    @property
    def raw(self) -> Any: ...


class _SQLiteCursor:
    def __init__(self, raw: Any):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.raw.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.raw.executemany(sql, [tuple(r) for r in rows])

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.raw.fetchall()]

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self.raw.fetchone()
        return tuple(row) if row is not None else None


class _PostgresCursor:
    def __init__(self, raw: Any):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.raw.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.raw.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in self.raw.fetchall()]

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self.raw.fetchone()
        if row is None:
            return None
        return tuple(row.values()) if isinstance(row, dict) else tuple(row)


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


class Db:
    """Transactions on the event store's datastore, with a portable cursor."""

    def __init__(self, datastore: SQLiteDatastore | PostgresDatastore):
        self.datastore = datastore
        self.backend = "postgres" if isinstance(datastore, PostgresDatastore) else "sqlite"
        # Single statements run on the connection used last (store/held.py).
        self._held = held_for(datastore) if isinstance(datastore, PostgresDatastore) else None

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[Cursor]:
        """A transaction (rolled back on error, or always when ``commit`` is False)."""
        with self.datastore.transaction(commit=commit) as raw:
            yield _PostgresCursor(raw) if self.backend == "postgres" else _SQLiteCursor(raw)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement.

        Retried if the server broke a deadlock with it, and once (on a connection that
        works) if the connection it ran on was lost: after a server restart every
        connection held or pooled is broken, and each would otherwise fail a read.
        """
        deadlocks = 0
        reconnected = False
        while True:
            try:
                if isinstance(self.datastore, PostgresDatastore):
                    return self._pg_query(sql, params)
                with self.transaction(commit=False) as cur:
                    cur.execute(sql, params)
                    return cur.fetchall()
            except (OperationalError, InterfaceError) as e:
                if self._held is not None and not reconnected and connection_lost(e):
                    reconnected = True
                    self._held.recover()
                    continue
                # A rebuild swapping the views can deadlock with a reader joining them;
                # the server aborts one side, and a read is always safe to repeat.
                if not isinstance(e, OperationalError) or "deadlock" not in str(e):
                    raise
                deadlocks += 1
                if deadlocks == 3:
                    raise

    def _pg_query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        # One statement on an autocommit connection is its own snapshot: one round trip
        # instead of BEGIN, the query and ROLLBACK; prepared, as reads repeat.
        assert self._held is not None
        with self._held.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(_pg_sql(sql), tuple(params), prepare=True)
            return cur.fetchall()

    def placeholders(self, n: int) -> str:
        """``?, ?, …`` for an IN list of ``n`` values."""
        return ", ".join("?" * n)
