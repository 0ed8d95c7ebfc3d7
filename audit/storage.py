"""The audit tables, next to the events in the same database (SQLite or PostgreSQL).

- ``harbor_merkle_leaves(ordinal, notification_id, leaf_hash)``: one row per
  event in log order; ordinals run 0, 1, 2, … without gaps.
- ``harbor_merkle_nodes(level, idx, hash)``: every *perfect* subtree of level
  ≥ 1 (see ``audit.merkle``), written as the leaves complete it, so roots and
  proofs cost O(log² n) lookups instead of a pass over every leaf.
- ``harbor_tree_heads``: signed tree heads, append-only.
- ``harbor_signing_keys``: public keys (never private ones) by key id.

The events themselves are read through the recorder's own table; nothing here
writes to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from audit.keys import TreeHead, now_utc
from audit.leaf import NOT_TEXT
from store.recorders import SCHEMA_LOCK_ID

LEAVES = "harbor_merkle_leaves"
NODES = "harbor_merkle_nodes"
HEADS = "harbor_tree_heads"
KEYS = "harbor_signing_keys"
VERIFICATIONS = "harbor_verifications"
PAGE = 20_000
T = TypeVar("T")

Leaf = tuple[int, int, bytes]  # ordinal, notification id, leaf hash
Node = tuple[int, int, bytes]  # level, index, hash


class AuditError(Exception):
    """The audit log cannot do what was asked (and says what to do instead)."""

EventRow = tuple[int, UUID | str | bytes, int, str, bytes]  # id, originator, version, topic, state


@dataclass(frozen=True)
class KeyRecord:
    """A public signing key as the database keeps it."""

    key_id: str
    public_pem: str
    created_at: str
    endorsed_by: str | None = None
    endorsement: bytes | None = None


_TABLES = [
    (
        LEAVES,
        "CREATE TABLE IF NOT EXISTS {t} (ordinal {int8} PRIMARY KEY,"
        " notification_id {int8} NOT NULL UNIQUE, leaf_hash {blob} NOT NULL)",
    ),
    (
        NODES,
        "CREATE TABLE IF NOT EXISTS {t} (level {int2} NOT NULL, idx {int8} NOT NULL,"
        " hash {blob} NOT NULL, PRIMARY KEY (level, idx))",
    ),
    (
        HEADS,
        "CREATE TABLE IF NOT EXISTS {t} (seq {serial} PRIMARY KEY, tree_size {int8} NOT NULL,"
        " root_hash {blob} NOT NULL, signed_at TEXT NOT NULL, key_id TEXT NOT NULL,"
        " signature {blob} NOT NULL)",
    ),
    (
        KEYS,
        "CREATE TABLE IF NOT EXISTS {t} (key_id TEXT PRIMARY KEY, public_pem TEXT NOT NULL,"
        " created_at TEXT NOT NULL, endorsed_by TEXT, endorsement {blob})",
    ),
    (
        VERIFICATIONS,
        "CREATE TABLE IF NOT EXISTS {t} (seq {serial} PRIMARY KEY, verified_at TEXT NOT NULL,"
        " ok {int2} NOT NULL, events_checked {int8} NOT NULL, first_problem TEXT)",
    ),
]


class AuditStore(ABC):
    """Reads and appends the audit tables; one subclass per backend."""

    leaves_table = LEAVES
    nodes_table = NODES
    heads_table = HEADS
    keys_table = KEYS
    verifications_table = VERIFICATIONS

    @staticmethod
    def for_recorder(recorder: Any) -> AuditStore:
        """The store next to ``recorder``'s events (tables created if missing)."""
        store: AuditStore
        if isinstance(recorder, PostgresApplicationRecorder):
            store = PostgresAuditStore(recorder)
        elif isinstance(recorder, SQLiteApplicationRecorder):
            store = SQLiteAuditStore(recorder)
        else:
            raise TypeError(f"the audit log needs SQLite or PostgreSQL, not {type(recorder)}")
        store.create_tables()
        return store

    # --- backend primitives -----------------------------------------------------

    @abstractmethod
    def create_tables(self) -> None:
        """Create the audit tables if they are missing."""

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query (``?`` placeholders); rows as tuples of plain values (blobs as bytes)."""

    @abstractmethod
    def append(self, leaves: Sequence[Leaf], nodes: Sequence[Node]) -> None:
        """Append leaves and nodes in one transaction; IntegrityError if any exists already."""

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        """Run one statement in its own transaction."""

    # --- leaves and nodes ---------------------------------------------------------

    def tail(self) -> tuple[int, int | None]:
        """(number of leaves, notification id of the last one)."""
        rows = self._rows(
            f"SELECT ordinal, notification_id FROM {self.leaves_table}"
            " ORDER BY ordinal DESC LIMIT 1"
        )
        if not rows:
            return 0, None
        return int(rows[0][0]) + 1, int(rows[0][1])

    def leaf_at(self, ordinal: int) -> int | None:
        """The notification id of the leaf at ``ordinal``, if there is one."""
        rows = self._rows(
            f"SELECT notification_id FROM {self.leaves_table} WHERE ordinal = ?", (ordinal,)
        )
        return int(rows[0][0]) if rows else None

    def nodes(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Hashes of perfect subtrees by (level, index); level 0 reads the leaves."""
        wanted = sorted(set(keys))
        leaves = [index for level, index in wanted if level == 0]
        inner = [key for key in wanted if key[0] > 0]
        found: dict[tuple[int, int], bytes] = {}
        for chunk in _chunks(leaves, 500):
            for index, h in self._rows(
                f"SELECT ordinal, leaf_hash FROM {self.leaves_table}"
                f" WHERE ordinal IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                found[(0, index)] = h
        for pairs in _chunks(inner, 250):
            for level, index, h in self._rows(
                f"SELECT level, idx, hash FROM {self.nodes_table} WHERE "
                + " OR ".join(["(level = ? AND idx = ?)"] * len(pairs)),  # each uses the key
                [n for pair in pairs for n in pair],
            ):
                found[(level, index)] = h
        return found

    def leaf_pages(self, page: int = PAGE) -> Iterator[list[Leaf]]:
        """Every stored leaf in ordinal order, a page at a time."""
        after = -1
        while True:
            rows = self._rows(
                f"SELECT ordinal, notification_id, leaf_hash FROM {self.leaves_table}"
                " WHERE ordinal > ? ORDER BY ordinal LIMIT ?",
                (after, page),
            )
            if not rows:
                return
            yield rows
            if len(rows) < page:
                return
            after = int(rows[-1][0])

    def node_pages(self, level: int, page: int = PAGE) -> Iterator[list[tuple[int, bytes]]]:
        """Every stored node of ``level`` in index order, a page at a time."""
        after = -1
        while True:
            rows = self._rows(
                f"SELECT idx, hash FROM {self.nodes_table}"
                " WHERE level = ? AND idx > ? ORDER BY idx LIMIT ?",
                (level, after, page),
            )
            if not rows:
                return
            yield rows
            if len(rows) < page:
                return
            after = int(rows[-1][0])

    def stray_rows(self, size: int) -> tuple[list[int], list[tuple[int, int]]]:
        """Leaf ordinals and (level, index) nodes that no tree of the stored leaves holds.

        ``size`` (the leaves a verification read) narrows the read; the leaves' size is
        read again after the nodes, and a seal stores its nodes with their leaves, so a
        node a seal added meanwhile is not stray."""
        leaves = [int(o) for (o,) in self._rows(
            f"SELECT ordinal FROM {self.leaves_table} WHERE ordinal < 0 ORDER BY ordinal"
        )]  # fmt: skip
        candidates = self._rows(
            f"SELECT level, idx FROM {self.nodes_table} WHERE level < 1 OR idx < 0"
            " OR level > 62 OR ((idx + 1) << level) > ? ORDER BY level, idx",
            (size,),
        )
        now = self.tail()[0]
        nodes = [
            (int(level), int(idx))
            for level, idx in candidates
            if level < 1 or idx < 0 or level > 62 or (idx + 1) << level > now
        ]
        return leaves, nodes

    def leaves_for(self, notification_ids: Sequence[int]) -> dict[int, tuple[int, bytes]]:
        """(ordinal, leaf hash) by notification id, for those that have a leaf."""
        found: dict[int, tuple[int, bytes]] = {}
        for chunk in _chunks(sorted(set(notification_ids)), 500):
            marks = ",".join("?" * len(chunk))
            for o, n, h in self._rows(
                f"SELECT ordinal, notification_id, leaf_hash FROM {self.leaves_table}"
                f" WHERE notification_id IN ({marks})",
                chunk,
            ):
                found[int(n)] = (int(o), bytes(h))
        return found

    # --- events (read only) ------------------------------------------------------------

    def event_pages(
        self, after: int | None, stop: int | None = None, page: int = PAGE
    ) -> Iterator[list[EventRow]]:
        """Stored events with ``after < id ≤ stop`` in log order, as stored, a page at a time."""
        # The upper bound is applied here, not in SQL: with both bounds PostgreSQL may
        # plan a bitmap scan and sort the whole range for every page.
        select, table, nid = self._events_select()
        while True:
            if after is None:
                rows = self._rows(f"SELECT {select} FROM {table} ORDER BY {nid} LIMIT ?", (page,))
            else:
                rows = self._rows(
                    f"SELECT {select} FROM {table} WHERE {nid} > ? ORDER BY {nid} LIMIT ?",
                    (after, page),
                )
            if stop is not None and rows and rows[-1][0] > stop:
                rows = [r for r in rows if r[0] <= stop]
                if rows:
                    yield rows
                return
            if not rows:
                return
            yield rows
            if len(rows) < page:
                return
            after = int(rows[-1][0])

    def count_events_after(self, after: int | None) -> int:
        """How many stored events have an id above ``after``."""
        _, table, nid = self._events_select()
        if after is None:
            return int(self._rows(f"SELECT COUNT(*) FROM {table}")[0][0])
        return int(self._rows(f"SELECT COUNT(*) FROM {table} WHERE {nid} > ?", (after,))[0][0])

    def stream_rows(self, originator_id: UUID) -> list[EventRow]:
        """One aggregate's stored events, by version."""
        select, table, _ = self._events_select()
        rows = self._rows(
            f"SELECT {select} FROM {table} WHERE originator_id = ? ORDER BY originator_version",
            (self._id_param(originator_id),),
        )
        return rows

    def events_at(self, notification_ids: Sequence[int]) -> dict[int, EventRow]:
        """The stored events with these ids (for describing a finding)."""
        select, table, nid = self._events_select()
        found: dict[int, EventRow] = {}
        for chunk in _chunks(sorted(set(notification_ids)), 500):
            marks = ",".join("?" * len(chunk))
            for r in self._rows(f"SELECT {select} FROM {table} WHERE {nid} IN ({marks})", chunk):
                found[r[0]] = r
        return found

    @abstractmethod
    def _events_select(self) -> tuple[str, str, str]:
        """(select list, table, id column) of the events table."""

    @abstractmethod
    def _id_param(self, originator_id: UUID) -> Any:
        """An originator id as the events table stores it."""

    # --- tree heads and keys -------------------------------------------------------------

    def add_head(self, head: TreeHead) -> None:
        """Append a signed tree head."""
        self._execute(
            f"INSERT INTO {self.heads_table} (tree_size, root_hash, signed_at, key_id, signature)"
            " VALUES (?, ?, ?, ?, ?)",
            (head.tree_size, head.root_hash, head.signed_at, head.key_id, head.signature),
        )

    def heads(self) -> list[TreeHead]:
        """Every well-formed stored tree head, in the order they were stored."""
        return [h for h in self.head_rows() if isinstance(h, TreeHead)]

    def head_rows(self) -> list[TreeHead | str]:
        """Every stored tree head in stored order — or, for a malformed row, what is wrong."""
        return [
            _head(row)
            for row in self._rows(
                f"SELECT seq, tree_size, root_hash, signed_at, key_id, signature"
                f" FROM {self.heads_table} ORDER BY seq"
            )
        ]

    def latest_head(self) -> TreeHead | None:
        """The head covering the most events (the latest stored among equals)."""
        rows = self._rows(
            "SELECT seq, tree_size, root_hash, signed_at, key_id, signature"
            f" FROM {self.heads_table} ORDER BY tree_size DESC, seq DESC LIMIT 1"
        )
        if not rows:
            return None
        head = _head(rows[0])
        if isinstance(head, str):
            raise AuditError(f"{head}: run `harbor verify`")
        return head

    def add_key(self, record: KeyRecord) -> None:
        """Keep a public key (IntegrityError if its id is already kept)."""
        self._execute(
            f"INSERT INTO {self.keys_table}"
            " (key_id, public_pem, created_at, endorsed_by, endorsement) VALUES (?, ?, ?, ?, ?)",
            (
                record.key_id,
                record.public_pem,
                record.created_at,
                record.endorsed_by,
                record.endorsement,
            ),
        )

    def add_verification(self, ok: bool, events_checked: int, first_problem: str | None) -> None:
        """Remember the outcome of a `harbor verify` run (for /audit/status)."""
        self._execute(
            f"INSERT INTO {self.verifications_table} (verified_at, ok, events_checked,"
            " first_problem) VALUES (?, ?, ?, ?)",
            (now_utc(), int(ok), events_checked, first_problem),
        )

    def last_verification(self) -> dict[str, Any] | None:
        """The latest recorded verification, if any."""
        rows = self._rows(
            f"SELECT verified_at, ok, events_checked, first_problem FROM {self.verifications_table}"
            " ORDER BY seq DESC LIMIT 1"
        )
        if not rows:
            return None
        at, ok, checked, problem = rows[0]
        return {
            "verified_at": at,
            "ok": bool(ok),
            "events_checked": int(checked),
            "first_problem": problem,
        }

    def public_keys(self) -> list[KeyRecord]:
        """Every public key, oldest first."""
        return [
            KeyRecord(
                str(k),
                str(p),
                str(c),
                None if e_by is None else str(e_by),
                # A column edited to another type keeps its bytes, so it fails to verify.
                None if e is None else bytes(e) if isinstance(e, bytes) else repr(e).encode(),
            )
            for k, p, c, e_by, e in self._rows(
                "SELECT key_id, public_pem, created_at, endorsed_by, endorsement"
                f" FROM {self.keys_table} ORDER BY created_at, key_id"
            )
        ]


def _head(row: tuple[Any, ...]) -> TreeHead | str:
    """A stored head row as a TreeHead, or what is wrong with it (edited column types)."""
    seq, size, root, at, kid, sig = row
    if (
        type(size) is not int
        or size < 0
        or not isinstance(root, bytes)
        or len(root) != 32
        or not isinstance(at, str)
        or not isinstance(kid, str)
        or not isinstance(sig, bytes)
    ):
        return (
            f"tree head row {seq} is malformed (tree size {size!r}, root {_short(root)},"
            f" signed at {_short(at)}, key {_short(kid)}): it was not stored by a sealer"
        )
    return TreeHead(size, root, at, kid, sig)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


class SQLiteAuditStore(AuditStore):
    """The audit tables in the SQLite file of the events."""

    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self.recorder = recorder
        self.datastore: SQLiteDatastore = recorder.datastore

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for table, ddl in _TABLES:
                c.execute(
                    ddl.format(
                        t=table, int8="INTEGER", int2="INTEGER", blob="BLOB", serial="INTEGER"
                    )
                )

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples
            cursor.execute(sql, tuple(params))
            rows: list[tuple[Any, ...]] = cursor.fetchall()
            return rows

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(sql, tuple(params))

    def append(self, leaves: Sequence[Leaf], nodes: Sequence[Node]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.executemany(
                f"INSERT INTO {self.leaves_table} (ordinal, notification_id, leaf_hash)"
                " VALUES (?, ?, ?)",
                leaves,
            )
            c.executemany(
                f"INSERT INTO {self.nodes_table} (level, idx, hash) VALUES (?, ?, ?)", nodes
            )

    def _events_select(self) -> tuple[str, str, str]:
        # The store keeps ids as text and finds a stream by that text: an id rewritten as
        # a blob of the same 16 bytes would hash as the sealed leaf yet be invisible to
        # every read. Anything but text is read as text naming its type, so it cannot
        # pass for the id it hides behind (``leaf.NOT_TEXT``).
        oid = (
            "CASE typeof(originator_id) WHEN 'text' THEN originator_id"
            f" ELSE '{NOT_TEXT}' || typeof(originator_id) || ' ' || hex(originator_id) END"
        )
        return (
            f"rowid, {oid}, originator_version, topic, state",
            self.recorder.events_table_name,
            "rowid",
        )

    def _id_param(self, originator_id: UUID) -> Any:
        return originator_id.hex


class PostgresAuditStore(AuditStore):
    """The audit tables in the PostgreSQL database (and schema) of the events."""

    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self.recorder = recorder
        self.datastore: PostgresDatastore = recorder.datastore
        self.schema = self.datastore.schema or "public"
        self.leaves_table = f'"{self.schema}".{LEAVES}'
        self.nodes_table = f'"{self.schema}".{NODES}'
        self.heads_table = f'"{self.schema}".{HEADS}'
        self.verifications_table = f'"{self.schema}".{VERIFICATIONS}'
        self.keys_table = f'"{self.schema}".{KEYS}'

    def create_tables(self) -> None:
        """Create the tables one process at a time (concurrent DDL fails in PostgreSQL)."""
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_ID,))
            try:
                with conn.transaction():
                    for table, ddl in _TABLES:
                        conn.execute(
                            SQL(
                                ddl.format(
                                    t="{}",
                                    int8="bigint",
                                    int2="smallint",
                                    blob="bytea",
                                    serial="bigserial",
                                )
                            ).format(Identifier(self.schema, table))
                        )
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_ID,))

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql(sql), tuple(params), binary=True)
            return cur.fetchall()

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        with self.datastore.get_connection() as conn, conn.transaction():
            conn.execute(self._sql(sql), tuple(params))

    def append(self, leaves: Sequence[Leaf], nodes: Sequence[Node]) -> None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cur:
            if len(leaves) + len(nodes) > 200:
                with cur.copy(
                    f"COPY {self.leaves_table} (ordinal, notification_id, leaf_hash) FROM STDIN"
                ) as cp:
                    for row in leaves:
                        cp.write_row(row)
                with cur.copy(f"COPY {self.nodes_table} (level, idx, hash) FROM STDIN") as cp:
                    for row in nodes:
                        cp.write_row(row)
            else:
                cur.executemany(
                    f"INSERT INTO {self.leaves_table} (ordinal, notification_id, leaf_hash)"
                    " VALUES (%s, %s, %s)",
                    leaves,
                )
                if nodes:
                    cur.executemany(
                        f"INSERT INTO {self.nodes_table} (level, idx, hash) VALUES (%s, %s, %s)",
                        nodes,
                    )

    def _events_select(self) -> tuple[str, str, str]:
        oid = (
            "uuid_send(originator_id)"
            if self.datastore.originator_id_type == "uuid"
            else "originator_id"
        )
        return (
            f"notification_id, {oid}, originator_version, topic, state",
            f'"{self.schema}"."{self.recorder.events_table_name}"',
            "notification_id",
        )

    def _id_param(self, originator_id: UUID) -> Any:
        return originator_id if self.datastore.originator_id_type == "uuid" else str(originator_id)
