"""Application recorders that also keep command receipts in the events' transaction.

The SQLite recorder extends the library's through its extension points
(``_insert_events``). The PostgreSQL recorder keeps the library's tables and its
ordering guarantee (the EXCLUSIVE table lock on every append) but replaces the
append and the read of whole streams with one prepared statement each, run
through libpq in binary (``store/fastpath.py``); tracking records and the
library's other reads still take the library's own path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.receipts import ReceiptAt, StoredReceipt
from store.fastpath import (
    BYTEA_ARRAY_OID,
    BYTEA_OID,
    INT8_ARRAY_OID,
    INT8_OID,
    TEXT_ARRAY_OID,
    TEXT_OID,
    UUID_ARRAY_OID,
    UUID_OID,
    PreparedStatement,
    array,
    int8,
    read_int8,
    uuid_bytes,
)
from store.held import held_for

RECEIPTS_TABLE = "harbor_command_receipts"

# Any constant will do: it only has to be the same in every Harbor process.
SCHEMA_LOCK_ID = 0x4841524230  # "HARB0"
# As the library's own append retries (eventsourcing's @retry on insert_events).
APPEND_ATTEMPTS = 10
APPEND_RETRY_WAIT = 0.2
T = TypeVar("T")


class PostgresRecorder(PostgresApplicationRecorder):
    """PostgreSQL recorder with command receipts and race-free schema creation."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        if datastore.originator_id_type != "uuid":
            raise ValueError(
                "Harbor's PostgreSQL store keeps aggregate ids as uuid;"
                " unset POSTGRES_ORIGINATOR_ID_TYPE or set it to uuid"
            )
        super().__init__(datastore, events_table_name=events_table_name)
        # The append and the stream read run on connections kept warm (store/held.py).
        self.held = held_for(datastore)
        table = Identifier(self.datastore.schema or "public", RECEIPTS_TABLE)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " unit_id text NOT NULL,"
                " key text NOT NULL,"
                " fingerprint text NOT NULL,"
                " outcome text NOT NULL,"
                " position bigint,"
                " PRIMARY KEY (unit_id, key))"
            ).format(table)
        )
        self._insert_receipt = SQL(
            "INSERT INTO {} (unit_id, key, fingerprint, outcome) VALUES (%s, %s, %s, %s)"
        ).format(table)
        self._set_receipt_position = SQL(
            "UPDATE {} SET position = %s WHERE unit_id = %s AND key = %s"
        ).format(table)
        self.append_function = f"{self.events_table_name.replace('.', '_')}_append"
        # One statement per append (see insert_events): the library's insert with the
        # table lock it takes per append, and the commands' receipts, whose position is
        # their last event's notification id, found inside the same transaction.
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}("
                " e_ids uuid[], e_versions bigint[], e_topics text[], e_states bytea[],"
                " r_units text[], r_keys text[], r_fingerprints text[], r_outcomes text[],"
                " r_ids uuid[], r_versions bigint[])"
                " RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$"
                " BEGIN"
                "  SET LOCAL lock_timeout = '{lock_timeout}s';"
                "  LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
                "  NOTIFY {channel};"
                "  IF r_units IS NULL THEN"
                "   RETURN QUERY"
                "    INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
                "    SELECT * FROM unnest(e_ids, e_versions, e_topics, e_states)"
                "    RETURNING notification_id;"
                "  ELSE"
                # The receipts find their positions among the rows just inserted (a hash
                # join in memory), not by looking each one up in the events' index.
                "   RETURN QUERY"
                "    WITH e AS ("
                "     INSERT INTO {schema}.{table}"
                "      (originator_id, originator_version, topic, state)"
                "     SELECT * FROM unnest(e_ids, e_versions, e_topics, e_states)"
                "     RETURNING notification_id, originator_id, originator_version"
                "    ), kept AS ("
                "     INSERT INTO {receipts} (unit_id, key, fingerprint, outcome, position)"
                "     SELECT r.u, r.k, r.f, r.o, e.notification_id"
                "     FROM unnest(r_units, r_keys, r_fingerprints, r_outcomes, r_ids, r_versions)"
                "      AS r(u, k, f, o, i, v)"
                "     JOIN e ON e.originator_id = r.i AND e.originator_version = r.v"
                "    )"
                # Ids are drawn in insertion order, so this is the events' order.
                "    SELECT e.notification_id FROM e ORDER BY e.notification_id;"
                "  END IF;"
                " END; $BODY$"
            ).format(
                schema=Identifier(self.datastore.schema or "public"),
                function=Identifier(self.append_function),
                lock_timeout=self.datastore.lock_timeout,
                table=Identifier(self.events_table_name),
                channel=Identifier(self.channel_name),
                receipts=table,
            )
        )
        schema = Identifier(self.datastore.schema or "public")
        self._append = PreparedStatement(
            self.append_function,
            SQL("SELECT * FROM {}.{}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .format(schema, Identifier(self.append_function))
            .as_string(),
            [
                UUID_ARRAY_OID,
                INT8_ARRAY_OID,
                TEXT_ARRAY_OID,
                BYTEA_ARRAY_OID,
                *[TEXT_ARRAY_OID] * 4,
                UUID_ARRAY_OID,
                INT8_ARRAY_OID,
            ],
        )
        self._read_streams = PreparedStatement(
            f"{self.events_table_name.replace('.', '_')}_streams",
            SQL(
                "SELECT originator_id, originator_version, topic, state FROM {}.{}"
                " WHERE originator_id = ANY($1) ORDER BY originator_id, originator_version"
            )
            .format(schema, Identifier(self.events_table_name))
            .as_string(),
            [UUID_ARRAY_OID],
        )
        self._select_receipts = SQL(
            "SELECT r.unit_id, r.key, r.fingerprint, r.outcome, r.position FROM {} r"
            " JOIN unnest(%b::text[], %b::text[]) AS w(unit_id, key)"
            " ON r.unit_id = w.unit_id AND r.key = w.key"
        ).format(table)
        self._select_existing = SQL(
            "SELECT DISTINCT originator_id FROM {}.{} WHERE originator_id = ANY(%b::uuid[])"
            " AND originator_version = 1"
        ).format(Identifier(self.datastore.schema or "public"), Identifier(self.events_table_name))
        self._select_own = SQL(
            "SELECT e.originator_id, e.originator_version, e.notification_id, e.state"
            " FROM {}.{} e JOIN unnest(%s::uuid[], %s::bigint[]) AS w(id, version)"
            " ON e.originator_id = w.id AND e.originator_version = w.version"
        ).format(Identifier(self.datastore.schema or "public"), Identifier(self.events_table_name))
        self._select_receipt = SQL(
            "SELECT fingerprint, outcome, position FROM {} WHERE unit_id = %s AND key = %s"
        ).format(table)

    def close(self) -> None:
        """Give the connections it keeps back to the pool (the datastore closes the pool)."""
        self.held.close()

    def create_table(self) -> None:
        """Create the schema, one process at a time (concurrent DDL fails in PostgreSQL)."""
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_ID,))
            try:
                super().create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_ID,))

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Append in one statement: the table lock, the rows and the receipts.

        The library's path holds the table lock across several round trips; one
        function call does the same work in one, as its own transaction: the same
        EXCLUSIVE lock (so notification ids commit in order, across processes), and a
        duplicate stream version fails the whole append.

        A connection lost during the append leaves its outcome unknown: the commit may
        have happened with only its answer lost. Appending again would then fail on its
        own rows, which the command would take for a lost race and decide again — a
        second copy of a keyless command, or a refusal (``DUPLICATE_MEMBER``) of one
        that was stored. So before each new attempt the store is asked whether these
        very events (same stream, version and bytes) are there, and if so that is the
        answer.
        """
        if not stored_events or kwargs.get("tracking") is not None:
            done: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return done
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            try:
                if attempt > 1:
                    stored = self._stored_already(stored_events)
                    if stored is not None:
                        return stored
                try:
                    return self._append_once(stored_events, kwargs)
                except IntegrityError:
                    # The first attempt may have been still running on the server when it
                    # was checked (waiting for the table lock), and committed since: this
                    # attempt then failed on its rows. The lock orders the two, so it has
                    # committed by now if it ever will.
                    if attempt == 1:
                        raise
                    stored = self._stored_already(stored_events)
                    if stored is not None:
                        return stored
                    raise
            except (InterfaceError, OperationalError):
                if attempt == APPEND_ATTEMPTS:
                    raise
                time.sleep(APPEND_RETRY_WAIT)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _stored_already(self, stored_events: Sequence[StoredEvent]) -> list[int] | None:
        """The notification ids of exactly these events if an earlier attempt stored them
        (None if it did not: then no event of the append is there, or another writer's
        event holds the same stream version, and appending again says which)."""
        with self.held.connection() as conn:
            rows = conn.execute(
                self._select_own,
                (
                    [e.originator_id for e in stored_events],
                    [e.originator_version for e in stored_events],
                ),
            ).fetchall()
        found = {
            (UUID(str(r["originator_id"])), int(r["originator_version"])): (
                int(r["notification_id"]),
                bytes(r["state"]),
            )
            for r in rows
        }
        ids = []
        for event in stored_events:
            row = found.get((UUID(str(event.originator_id)), event.originator_version))
            if row is None or row[1] != bytes(event.state):
                return None
            ids.append(row[0])
        return ids

    def _append_once(
        self, stored_events: Sequence[StoredEvent], kwargs: dict[str, Any]
    ) -> list[int]:
        """One attempt of the append (``insert_events`` decides whether to try again)."""
        receipts: list[ReceiptAt] = kwargs.get("receipts") or []
        last = [stored_events[r.last_event] for r in receipts]
        params = [
            array(UUID_OID, [uuid_bytes(e.originator_id) for e in stored_events]),
            array(INT8_OID, [int8(e.originator_version) for e in stored_events]),
            array(TEXT_OID, [e.topic.encode() for e in stored_events]),
            array(BYTEA_OID, [e.state for e in stored_events]),
            *(
                (
                    array(TEXT_OID, [r.receipt.unit_id.encode() for r in receipts]),
                    array(TEXT_OID, [r.receipt.key.encode() for r in receipts]),
                    array(TEXT_OID, [r.receipt.fingerprint.encode() for r in receipts]),
                    array(TEXT_OID, [r.receipt.outcome_json.encode() for r in receipts]),
                    array(UUID_OID, [uuid_bytes(e.originator_id) for e in last]),
                    array(INT8_OID, [int8(e.originator_version) for e in last]),
                )
                if receipts
                else (None,) * 6
            ),
        ]
        result = self.held.run(self._append, params)
        return [read_int8(result.get_value(i, 0)) for i in range(result.ntuples)]

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """A stream's events; the whole stream, as a command loads it, in one binary read."""
        if gt is not None or lte is not None or desc or limit is not None:
            events: Sequence[StoredEvent] = super().select_events(
                originator_id, gt=gt, lte=lte, desc=desc, limit=limit
            )
            return events
        stream = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
        streams: dict[UUID, list[StoredEvent]] = self.select_streams([stream])
        return streams.get(stream, [])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_streams(self, ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
        """Whole streams of many aggregates in one read (those without events are left out)."""
        result = self.held.run(self._read_streams, [array(UUID_OID, [i.bytes for i in ids])])
        streams: dict[UUID, list[StoredEvent]] = {}
        for i in range(result.ntuples):
            stream = UUID(bytes=bytes(result.get_value(i, 0) or b""))
            streams.setdefault(stream, []).append(
                StoredEvent(
                    originator_id=stream,
                    originator_version=read_int8(result.get_value(i, 1)),
                    topic=bytes(result.get_value(i, 2) or b"").decode(),
                    state=bytes(result.get_value(i, 3) or b""),
                )
            )
        return streams

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        receipts: list[ReceiptAt] = kwargs.get("receipts") or []
        if receipts:
            curs.executemany(
                self._insert_receipt,
                [
                    (
                        r.receipt.unit_id,
                        r.receipt.key,
                        r.receipt.fingerprint,
                        r.receipt.outcome_json,
                    )
                    for r in receipts
                ],
            )

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        receipts: list[ReceiptAt] = kwargs.get("receipts") or []
        if receipts and ids:
            curs.executemany(
                self._set_receipt_position,
                [(ids[r.last_event], r.receipt.unit_id, r.receipt.key) for r in receipts],
            )
        return ids

    def find_receipt(self, unit_id: str, key: str) -> StoredReceipt | None:
        """The receipt kept under (unit, key), if any."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_receipt, (unit_id, key), prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        return StoredReceipt(row["fingerprint"], row["outcome"], row["position"])

    def find_receipts(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredReceipt]:
        """The receipts kept under any of these (unit, key) pairs, in one query."""
        units, keys = _columns(pairs)
        if not units:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_receipts, (units, keys))
            return {
                (row["unit_id"], row["key"]): StoredReceipt(
                    row["fingerprint"], row["outcome"], row["position"]
                )
                for row in curs.fetchall()
            }

    def existing(self, ids: Iterable[UUID]) -> set[UUID]:
        """Which of these aggregate ids have a stream in the store, in one query."""
        wanted = list(set(ids))
        if not wanted:
            return set()
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_existing, (wanted,))
            return {row["originator_id"] for row in curs.fetchall()}


class SQLiteRecorder(SQLiteApplicationRecorder):
    """SQLite recorder with command receipts."""

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        """The library's tables plus the receipts table."""
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} ("
            " unit_id TEXT NOT NULL,"
            " key TEXT NOT NULL,"
            " fingerprint TEXT NOT NULL,"
            " outcome TEXT NOT NULL,"
            " position INTEGER,"
            " PRIMARY KEY (unit_id, key))",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        receipts: list[ReceiptAt] = kwargs.get("receipts") or []
        for at in receipts:
            receipt = at.receipt
            c.execute(
                f"INSERT INTO {RECEIPTS_TABLE} (unit_id, key, fingerprint, outcome, position)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    receipt.unit_id,
                    receipt.key,
                    receipt.fingerprint,
                    receipt.outcome_json,
                    ids[at.last_event] if ids else None,
                ),
            )
        return ids

    def find_receipt(self, unit_id: str, key: str) -> StoredReceipt | None:
        """The receipt kept under (unit, key), if any."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT fingerprint, outcome, position FROM {RECEIPTS_TABLE}"
                " WHERE unit_id = ? AND key = ?",
                (unit_id, key),
            )
            row = c.fetchone()
        if row is None:
            return None
        return StoredReceipt(row["fingerprint"], row["outcome"], row["position"])

    def find_receipts(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredReceipt]:
        """The receipts kept under any of these (unit, key) pairs (a few queries)."""
        found: dict[tuple[str, str], StoredReceipt] = {}
        wanted = list(set(pairs))
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks(wanted, SQLITE_CHUNK // 2):
                c.execute(
                    "SELECT unit_id, key, fingerprint, outcome, position"
                    f" FROM {RECEIPTS_TABLE} WHERE (unit_id, key) IN"
                    f" (VALUES {', '.join(['(?, ?)'] * len(chunk))})",
                    [value for pair in chunk for value in pair],
                )
                for row in c.fetchall():
                    found[(row["unit_id"], row["key"])] = StoredReceipt(
                        row["fingerprint"], row["outcome"], row["position"]
                    )
        return found

    def select_streams(self, ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
        """Whole streams of many aggregates (a few queries; those without events left out)."""
        streams: dict[UUID, list[StoredEvent]] = {}
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks(list(ids), SQLITE_CHUNK):
                c.execute(
                    "SELECT originator_id, originator_version, topic, state"
                    f" FROM {self.events_table_name} WHERE originator_id IN"
                    f" ({', '.join(['?'] * len(chunk))})"
                    " ORDER BY originator_id, originator_version",
                    [i.hex for i in chunk],  # the library stores UUIDs as hex text
                )
                for row in c.fetchall():
                    stream = UUID(row["originator_id"])
                    streams.setdefault(stream, []).append(
                        StoredEvent(stream, row["originator_version"], row["topic"], row["state"])
                    )
        return streams

    def existing(self, ids: Iterable[UUID]) -> set[UUID]:
        """Which of these aggregate ids have a stream in the store (a few queries)."""
        wanted = list(set(ids))
        found: set[UUID] = set()
        with self.datastore.transaction(commit=False) as c:
            for chunk in _chunks(wanted, SQLITE_CHUNK):
                c.execute(
                    f"SELECT originator_id FROM {self.events_table_name}"
                    f" WHERE originator_version = 1 AND originator_id IN"
                    f" ({', '.join(['?'] * len(chunk))})",
                    [i.hex for i in chunk],  # the library stores UUIDs as hex text
                )
                found.update(UUID(row["originator_id"]) for row in c.fetchall())
        return found


SQLITE_CHUNK = 500  # host parameters per statement, well under SQLite's limit


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _columns(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str]]:
    wanted = list(set(pairs))
    return [u for u, _ in wanted], [k for _, k in wanted]
