"""Connections the hot statements keep between calls instead of returning them to the pool.

psycopg's pool hands its idle connections out in turn (first in, first out), so a
thread's consecutive commands ran on a different server backend each time. Run on
the connection it used last, one thread's command took a quarter less time and
cost this process a third less CPU (bench/README.md, "Write path"): the backend,
its caches and the scheduler's placement of it are still warm. The append and the
read of whole streams (``store/fastpath.py``) and the read models' single-statement
queries (``store/sql.Db.query``) therefore take a connection from a short
last-in-first-out stack kept per datastore, and fall back to the pool when it is
empty. Transactions (projection batches, tracking records) still use the pool.

Only single statements on these autocommit connections use the stack: each is its
own transaction, so a connection goes back on the stack as it came, idle. One that
is not (broken by a server restart, or left in a transaction) goes back to the
pool, which discards or resets it; so does any connection while another caller
waits for the pool, which cannot see the connections parked here.

A server restart (or ``pg_terminate_backend``) breaks every connection at once, and
a broken connection is only found out by using it: each one parked here or idle
in the pool would fail one statement in turn. A reader that lost its connection
(``connection_lost``) therefore calls ``recover``, which hands the parked ones back
and has the pool test its idle ones, discarding the broken, before it retries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from eventsourcing import persistence
from eventsourcing.postgres import PostgresDatastore
from psycopg import Connection, pq
from psycopg_pool import (
    AsyncConnectionPool,
    ConnectionPool,
    PoolClosed,
    PoolTimeout,
    TooManyRequests,
)

from store.fastpath import PreparedStatement

KEEP = 4  # group commit has two committing threads; reads of cold streams the rest

# The library's datastore turns psycopg's errors into its own (retries and the group
# committer catch those); the same translation, most specific first.
_TRANSLATED: tuple[tuple[type[psycopg.Error], type[persistence.PersistenceError]], ...] = (
    (psycopg.InterfaceError, persistence.InterfaceError),
    (psycopg.OperationalError, persistence.OperationalError),
    (psycopg.DataError, persistence.DataError),
    (psycopg.IntegrityError, persistence.IntegrityError),
    (psycopg.InternalError, persistence.InternalError),
    (psycopg.ProgrammingError, persistence.ProgrammingError),
    (psycopg.NotSupportedError, persistence.NotSupportedError),
    (psycopg.DatabaseError, persistence.DatabaseError),
    (psycopg.Error, persistence.PersistenceError),
)


def translated(error: psycopg.Error) -> persistence.PersistenceError:
    """The library's exception for a psycopg error, as its datastore raises it."""
    for theirs, ours in _TRANSLATED:
        if isinstance(error, theirs):
            return ours(str(error))
    return persistence.PersistenceError(str(error))  # pragma: no cover - psycopg.Error above


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` (psycopg's, or the library's translation of it) means the
    connection a statement ran on broke: the server went away, restarted or ended the
    session. A statement that merely failed, or a pool that had no connection to give
    in time (retrying would only wait as long again), is not."""
    cause = error if isinstance(error, psycopg.Error) else error.__cause__
    if not isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    if isinstance(cause, PoolTimeout | PoolClosed | TooManyRequests):
        return False
    state = cause.sqlstate  # None: the connection itself failed, not a statement
    # 08: connection exception; 57P: the server shutting down or ending the session.
    return state is None or state.startswith(("08", "57P"))


def wanted(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> bool:
    """Whether a caller is waiting for one of the pool's connections (give it back, then)."""
    return bool(pool.get_stats().get("requests_waiting"))


_HELD: WeakKeyDictionary[PostgresDatastore, HeldConnections] = WeakKeyDictionary()
_HELD_LOCK = threading.Lock()


def held_for(datastore: PostgresDatastore) -> HeldConnections:
    """The stack of connections kept for this datastore (one, shared by all its users)."""
    with _HELD_LOCK:
        held = _HELD.get(datastore)
        if held is None:
            held = _HELD[datastore] = HeldConnections(datastore)
        return held


class HeldConnections:
    """A last-in-first-out stack of idle connections taken from the datastore's pool."""

    def __init__(self, datastore: PostgresDatastore, keep: int = KEEP):
        """Keep at most ``keep`` idle connections out of the pool, and a third of it at most.

        The pool cannot see the stack, so the stack never takes so much of a small pool
        that the pool's other users (transactions) would have to wait for it.
        """
        self.datastore = datastore
        self.keep = min(keep, datastore.pool.max_size // 3)
        self._idle: list[Connection[Any]] = []  # append and pop are atomic: no lock needed
        self._closed = False
        self._closing = threading.Lock()

    def run(self, statement: PreparedStatement, params: Sequence[bytes | None]) -> pq.abc.PGresult:
        """Run ``statement`` on the connection used last (or one from the pool)."""
        with self.connection() as conn:
            return statement.run(conn, params)

    @contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """The connection used last, for single statements (it is in autocommit mode)."""
        conn = self._take()
        try:
            yield conn
        except psycopg.Error as e:
            self._give_back(conn)
            raise translated(e) from e
        except BaseException:
            self._give_back(conn)
            raise
        self._give_back(conn)

    def recover(self) -> None:
        """After a lost connection: give the parked connections back to the pool and have
        it test its idle ones, so the next connection taken is one that works."""
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                break
            self._return(conn)
        with suppress(Exception):  # a closed pool: the retry says so
            self.pool.check()

    def close(self) -> None:
        """Return every idle connection to the pool (before the pool itself closes)."""
        with self._closing:
            self._closed = True
            while self._idle:
                self._return(self._idle.pop())

    def _take(self) -> Connection[Any]:
        try:
            return self._idle.pop()
        except IndexError:
            return self._checkout()

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The datastore's pool."""
        return self.datastore.pool

    def _checkout(self) -> Connection[Any]:
        pool = self.pool
        try:
            # The datastore opens its pool on first use; this may be the first.
            timeout = self.datastore.pool_open_timeout
            pool.open(timeout is not None, timeout or 30.0)
            conn: Connection[Any] = pool.getconn()
            return conn
        except psycopg.Error as e:  # PoolTimeout is an OperationalError: retried
            raise translated(e) from e

    def _give_back(self, conn: Connection[Any]) -> None:
        pgconn = conn.pgconn
        healthy = (
            pgconn.status == pq.ConnStatus.OK
            and pgconn.transaction_status == pq.TransactionStatus.IDLE
        )
        if healthy and not self._closed and len(self._idle) < self.keep and not wanted(self.pool):
            self._idle.append(conn)
            if not self._closed:
                return
            # Closed meanwhile: make sure close() did not miss it.
            with self._closing:
                if conn in self._idle:
                    self._idle.remove(conn)
                else:
                    return
        self._return(conn)

    def _return(self, conn: Connection[Any]) -> None:
        try:
            self.pool.putconn(conn)
        except Exception:  # a closed pool refuses it: close it ourselves
            conn.close()
