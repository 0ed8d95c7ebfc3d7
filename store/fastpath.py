"""Prepared statements run through libpq directly, with parameters and rows in binary.

The append and the read of one member's stream run for nearly every command. Through
a psycopg cursor each spends about a hundred microseconds of client CPU on work these
two statements do not need: finding a dumper for every array element, composing and
looking up the prepared statement, building dict rows. Here the parameters are packed
with ``struct`` into PostgreSQL's binary formats and the rows read straight from the
result. The connection still comes from the library's datastore, and errors are raised
as the same psycopg exceptions a cursor raises, so the datastore translates them as
usual and a broken connection is discarded by the pool as usual.

A session can lose its prepared statements behind this module's back: psycopg sends
DEALLOCATE ALL after a rolled-back transaction (or a DROP) on a connection where it
prepared statements of its own, and a pooler may DISCARD ALL. The next run then fails
once with "prepared statement does not exist", prepares again and runs; ``reprepared``
counts how often. Text parameters are sent as UTF-8: a session whose client encoding
is not UTF-8 is switched to it (psycopg follows the session's encoding, so its own
statements on that connection are unaffected).
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections.abc import Sequence
from typing import Any
from uuid import UUID
from weakref import WeakKeyDictionary

from psycopg import AsyncConnection, Connection, errors, pq
from psycopg.generators import execute

UUID_OID = 2950
INT8_OID = 20
TEXT_OID = 25
BYTEA_OID = 17
UUID_ARRAY_OID = 2951
INT8_ARRAY_OID = 1016
TEXT_ARRAY_OID = 1009
BYTEA_ARRAY_OID = 1001

# dimensions, has-nulls flag, element type, then the one dimension: length, lower bound
_ARRAY_HEAD = struct.Struct("!iiiii")
_INT8 = struct.Struct("!q")
_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)


def array(element_oid: int, items: Sequence[bytes]) -> bytes:
    """A one-dimensional array without nulls, in PostgreSQL's binary format."""
    parts = [_ARRAY_HEAD.pack(1, 0, element_oid, len(items), 1)]
    for item in items:
        parts.append(len(item).to_bytes(4, "big"))
        parts.append(item)
    return b"".join(parts)


def uuid_bytes(value: UUID | str) -> bytes:
    """A UUID's 16 bytes (the library may hand over a UUID or its text)."""
    return value.bytes if isinstance(value, UUID) else UUID(str(value)).bytes


def int8(value: int) -> bytes:
    """A bigint in binary."""
    return _INT8.pack(value)


def read_int8(value: bytes | None) -> int:
    """A bigint column of a binary row."""
    assert value is not None
    return int.from_bytes(value, "big", signed=True)


class PreparedStatement:
    """One statement, prepared once on each connection that runs it."""

    def __init__(self, name: str, sql: str, param_types: Sequence[int]):
        self.name = name.encode()
        self.sql = sql.encode()
        self.param_types = list(param_types)
        self._formats = [pq.Format.BINARY] * len(self.param_types)
        self._prepared_on: WeakKeyDictionary[Connection[Any], bool] = WeakKeyDictionary()
        self._lock = threading.Lock()
        self.reprepared = 0

    def run(self, conn: Connection[Any], params: Sequence[bytes | None]) -> pq.abc.PGresult:
        """Execute on ``conn`` (held by the caller alone); the result, rows in binary."""
        try:
            return self._run(conn, params)
        except errors.InvalidSqlStatementName:
            # The session lost its prepared statements (DISCARD ALL): prepare again.
            with self._lock:
                self._prepared_on.pop(conn, None)
                self.reprepared += 1
            return self._run(conn, params)

    def _run(self, conn: Connection[Any], params: Sequence[bytes | None]) -> pq.abc.PGresult:
        with self._lock:
            prepared = conn in self._prepared_on
        if not prepared:
            self._prepare(conn)
        pgconn = conn.pgconn
        pgconn.send_query_prepared(
            self.name, params, param_formats=self._formats, result_format=pq.Format.BINARY
        )
        return checked(conn, conn.wait(execute(pgconn)))

    def _prepare(self, conn: Connection[Any]) -> None:
        pgconn = conn.pgconn
        if conn.info.encoding != "utf-8":
            # Text parameters are sent as UTF-8 bytes.
            checked(conn, conn.wait(_simple(pgconn, b"SET client_encoding TO 'UTF8'")))
        pgconn.send_prepare(self.name, self.sql, param_types=self.param_types)
        # Already there if an earlier attempt was interrupted before it noted so.
        with contextlib.suppress(errors.DuplicatePreparedStatement):
            checked(conn, conn.wait(execute(pgconn)))
        with self._lock:
            self._prepared_on[conn] = True


def _simple(pgconn: Any, sql: bytes) -> Any:
    pgconn.send_query(sql)
    return execute(pgconn)


def checked(
    conn: Connection[Any] | AsyncConnection[Any], results: list[pq.abc.PGresult]
) -> pq.abc.PGresult:
    """The last result, or the server's error raised as psycopg raises it."""
    if not results:
        raise errors.OperationalError("the server sent no result")
    for result in results:
        if result.status not in _OK:
            raise errors.error_from_result(result, encoding=conn.info.encoding)
    return results[-1]



class AsyncPreparedStatement:
    """``PreparedStatement`` for the event loop's connections: parameters and rows as text.

    The event loop's busiest read (a member's status) spent more of the loop's time in
    psycopg's cursor — converting the query, looking up its prepared statement,
    dumping each parameter — than in waiting for the answer (bench/README.md, "HTTP").
    Only the event loop uses these connections, so no lock is needed.
    """

    def __init__(self, name: str, sql: str):
        """``sql`` with psycopg's ``%s`` placeholders; the server infers their types."""
        pieces = sql.split("%s")
        self.name = name.encode()
        self.sql = "".join(
            piece + (f"${n}" if n < len(pieces) else "") for n, piece in enumerate(pieces, 1)
        ).encode()
        self._prepared_on: WeakKeyDictionary[AsyncConnection[Any], bool] = WeakKeyDictionary()
        self.reprepared = 0

    async def run(
        self, conn: AsyncConnection[Any], params: Sequence[bytes | None]
    ) -> pq.abc.PGresult:
        """Execute on ``conn``; the result, rows in text."""
        try:
            return await self._run(conn, params)
        except errors.InvalidSqlStatementName:
            self._prepared_on.pop(conn, None)  # the session lost it: prepare again
            self.reprepared += 1
            return await self._run(conn, params)

    async def _run(
        self, conn: AsyncConnection[Any], params: Sequence[bytes | None]
    ) -> pq.abc.PGresult:
        pgconn = conn.pgconn
        if conn not in self._prepared_on:
            if conn.info.encoding != "utf-8":
                checked(conn, await conn.wait(_simple(pgconn, b"SET client_encoding TO 'UTF8'")))
            pgconn.send_prepare(self.name, self.sql)
            with contextlib.suppress(errors.DuplicatePreparedStatement):
                checked(conn, await conn.wait(execute(pgconn)))
            self._prepared_on[conn] = True
        pgconn.send_query_prepared(self.name, params)
        return checked(conn, await conn.wait(execute(pgconn)))
