"""A lease only one process holds at a time: a PostgreSQL session advisory lock.

Several projection followers can run on one database: ``harbor serve``'s follower
process, a second server's, a ``harbor project``, or one thread per worker under
``harbor serve --workers N --follower thread``. They would not corrupt the
projections (a follower that loses a race to commit a batch rolls it back), but
each would fold every event, and the losers' work is thrown away. With the lease,
one follower folds and the others stand by; if it stops, or loses its connection,
the lock is released by the server and a standby takes over.

Only followers (``Projector.follow``) take it. SQLite has none (``lease_for``
returns None): there every follower running on the file folds. The command
line's catch-ups before a read, ``harbor demo`` and ``harbor rebuild`` fold without
it on either backend.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore

from domain.errors import Unavailable

log = logging.getLogger(__name__)

PROJECTIONS_LEASE = 0x4861_7262_6F72_0001  # "Harbor", 1: the projection follower
REBUILD_LEASE = 0x4861_7262_6F72_0002  # "Harbor", 2: a rebuild of the read models
CHECK_SECONDS = 1.0  # how often a held lease checks that its connection still stands


class Lease:
    """A session advisory lock held on a connection of its own."""

    def __init__(self, datastore: PostgresDatastore, key: int = PROJECTIONS_LEASE):
        given = datastore.pool.kwargs
        assert isinstance(given, dict)
        self._kwargs: dict[str, Any] = {k: v for k, v in given.items() if k != "row_factory"}
        self._key = key - 2**64 if key >= 2**63 else key  # a signed bigint
        self._conn: psycopg.Connection[Any] | None = None
        self._checked = 0.0

    def hold(self) -> bool:
        """True while this process holds the lease (taking it if it is free)."""
        try:
            if self._conn is not None:
                if time.monotonic() - self._checked >= CHECK_SECONDS:
                    self._conn.execute("SELECT 1")
                    self._checked = time.monotonic()
                return True
            conn = psycopg.connect(**self._kwargs, autocommit=True)
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            if row is not None and row[0]:
                self._conn, self._checked = conn, time.monotonic()
                log.info("holding lease %x", self._key % 2**64)
                return True
            conn.close()
            return False
        except psycopg.Error:
            self.release()  # the server went away: the lock went with the session
            return False

    def release(self) -> None:
        """Give the lease up at once (then close its session)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _unlock_and_close(conn, self._key)


def lease_for(registry: Any) -> Lease | None:
    """The projection lease on a registry's PostgreSQL store (None on SQLite: no lease)."""
    datastore = getattr(registry.recorder, "datastore", None)
    return Lease(datastore) if isinstance(datastore, PostgresDatastore) else None


@contextlib.contextmanager
def rebuild_lock(registry: Any) -> Iterator[None]:
    """Held while a rebuild runs, so that a second one refuses to start instead of
    dropping the first one's half-built generation (PostgreSQL: an advisory lock;
    SQLite: a lock on a file beside the database)."""
    datastore = getattr(registry.recorder, "datastore", None)
    busy = RuntimeError(
        "another harbor rebuild is running on this database; wait for it to finish"
    )
    if isinstance(datastore, PostgresDatastore):
        lease = Lease(datastore, REBUILD_LEASE)
        # Not lease.hold(): a server that cannot be reached must say so, not read as busy.
        try:
            conn = psycopg.connect(**lease._kwargs, autocommit=True)
        except psycopg.Error as e:
            raise Unavailable(f"the database could not be reached to start a rebuild: {e}") from e
        locked = False
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lease._key,)).fetchone()
            locked = row is not None and bool(row[0])
            if not locked:
                raise busy
            yield
        finally:
            if locked:
                _unlock_and_close(conn, lease._key)
            else:
                conn.close()
        return
    pool = getattr(datastore, "pool", None)
    name = str(getattr(pool, "db_name", "") or "")
    if not name or getattr(pool, "is_sqlite_memory_mode", False):
        yield  # one process: nothing else can rebuild it
        return
    with open(f"{name}.rebuild-lock", "a+") as held:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        yield  # closing the file releases the lock, also when the process dies


def _unlock_and_close(conn: psycopg.Connection[Any], key: int) -> None:
    """Release the advisory lock ``key`` before closing its session.

    Closing alone releases it only once the server has noticed the session end, which
    can come after this process asks for the lock again: a second rebuild started right
    after the first then read as "another rebuild is running" (seen under CI's load).
    """
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    with contextlib.suppress(psycopg.Error):
        conn.close()
