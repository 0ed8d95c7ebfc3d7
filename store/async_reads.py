"""Reads that run on the HTTP server's event loop (PostgreSQL only).

A query answered from a request thread costs two hand-offs between threads, and
each waits for the interpreter lock behind the threads deciding commands: under
load, a member's status took 11 ms at the median and 22 ms at the 99th
percentile, almost all of it waiting. The same query awaited on the event loop,
with psycopg's asynchronous connections, answered in a third of that. SQLite has
no asynchronous driver here; its reads stay in request threads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg import AsyncConnection
from psycopg.adapt import Transformer
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import AsyncConnectionPool

from domain.errors import Unavailable
from store.fastpath import AsyncPreparedStatement
from store.held import connection_lost

T = TypeVar("T")

POOL_SIZE = 4  # the loop awaits them one request at a time each; a few suffice


class AsyncReads:
    """A small pool of asynchronous connections to the event store's database."""

    def __init__(self, datastore: PostgresDatastore, events_table: str):
        given = datastore.pool.kwargs
        assert isinstance(given, dict)  # the library passes its connection arguments so
        kwargs = {k: v for k, v in given.items() if k != "row_factory"}
        self._pool: AsyncConnectionPool = AsyncConnectionPool(
            kwargs={**kwargs, "autocommit": True},
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            timeout=datastore.pool.timeout,
        )
        tail = (
            SQL(
                "SELECT array_agg(originator_version ORDER BY originator_version) AS v,"
                " array_agg(topic ORDER BY originator_version) AS t,"
                " array_agg(state ORDER BY originator_version) AS s FROM {}.{}"
                " WHERE originator_id = %s AND originator_version > %s"
            )
            .format(Identifier(datastore.schema or "public"), Identifier(events_table))
            .as_string()
        )
        # The statement's row joined to the tail: one row even when the statement has none.
        self._tail = (
            f"SELECT e.v, e.t, e.s, r.* FROM ({tail}) AS e LEFT JOIN LATERAL ({{}}) AS r ON true"
        )
        self._tails: dict[str, AsyncPreparedStatement] = {}

    async def open(self) -> None:
        """Open the pool (at server start)."""
        await self._pool.open()

    async def close(self) -> None:
        """Close the pool (at server stop)."""
        await self._pool.close()

    async def tail_and_rows(
        self, aggregate_id: UUID, after: int, sql: str, params: Sequence[Any]
    ) -> tuple[list[StoredEvent], list[tuple[Any, ...]]]:
        """An aggregate's events after version ``after`` and the row of one statement.

        One statement, not a pipeline of two: psycopg's asynchronous pipeline cost the
        event loop more CPU than the queries cost the server. ``sql`` must give at most
        one row, whose first column is never null.
        """
        statement = self._tails.get(sql)
        if statement is None:
            name = f"harbor_tail_{len(self._tails)}_{id(self):x}"
            statement = self._tails[sql] = AsyncPreparedStatement(name, self._tail.format(sql))
        texts: list[bytes | None] = [str(aggregate_id).encode(), str(after).encode()]
        texts += [None if p is None else str(p).encode() for p in params]

        async def run(conn: AsyncConnection[Any]) -> tuple[Any, ...] | None:
            result = await statement.run(conn, texts)
            loader = Transformer(conn)
            loader.set_pgresult(result)
            return loader.load_row(0, tuple)

        row = await self._on_a_connection(run)
        assert row is not None  # an aggregate without GROUP BY gives one row
        versions, topics, states, *rest = row
        events = [
            StoredEvent(aggregate_id, v, t, bytes(s))
            for v, t, s in zip(versions or (), topics or (), states or (), strict=True)
        ]
        return events, ([tuple(rest)] if rest[0] is not None else [])

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement (psycopg placeholders), prepared, as tuples."""

        async def run(conn: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            async with conn.cursor(row_factory=tuple_row) as cur:
                await cur.execute(sql, tuple(params), prepare=True)
                return await cur.fetchall()

        return await self._on_a_connection(run)

    async def _on_a_connection(self, work: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """``work`` on a pooled connection; once more on another if that one was lost.

        After a server restart every idle connection in the pool is broken: the pool
        is told to test them (discarding the broken) before the second try. The store
        still out of reach is ``Unavailable`` (503 over HTTP).
        """
        try:
            try:
                async with self._pool.connection() as conn:
                    return await work(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as e:
                if not connection_lost(e):
                    raise
            with suppress(Exception):  # a closed pool: the retry says so
                await self._pool.check()
            async with self._pool.connection() as conn:
                return await work(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            raise Unavailable(
                f"the event store could not be reached ({e.__class__.__name__}); retry"
            ) from e
