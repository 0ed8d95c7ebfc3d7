"""Writing projection rows: only what changed, in bulk.

The writer remembers, for recently written members, the rows it last wrote,
so a batch sends only the rows an event actually changed (a dues payment
touches one row, not six). A member it does not remember is rewritten whole.
On PostgreSQL many rows travel by COPY into a staging table and are merged
with one ``INSERT … ON CONFLICT`` per table, a few by a pipelined
``executemany``; on SQLite (in-process) always by ``executemany``.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from projections import schema
from store.sql import Cursor, Db

Row = tuple[Any, ...]
Key = tuple[Any, ...]

KEYS: dict[str, list[str]] = {
    "units": ["code"],
    "members": ["member_id"],
    "cases": ["case_id"],
    "referrals": ["member_id", "version"],
    "letters": ["member_id", "version"],
    "overrides": ["member_id", "version", "rule"],
    "trail": ["position"],
}
MEMBER_TABLES = ("members", "cases", "referrals", "letters", "overrides")
IN_CHUNK = 500  # ids per IN list (also the read models')
# Up to this many rows a PostgreSQL merge is a pipelined INSERT … ON CONFLICT per row;
# beyond, COPY into a staging table and one merge. The staging costs four statements
# per table whatever the rows, which made a follower's batches of a few events (a
# server under a steady trickle of commands) cost more than the commands themselves.
SMALL_UPSERT = 64


def _key_of(name: str) -> Any:
    positions = [schema.COLUMNS[name].index(k) for k in KEYS[name]]
    return lambda row: tuple(row[p] for p in positions)


KEY_OF = {name: _key_of(name) for name in KEYS}


class Changes:
    """What one batch will write."""

    def __init__(self) -> None:
        self.upserts: dict[str, dict[Key, Row]] = defaultdict(dict)
        # Rows of members with nothing stored yet: plain inserts, no merge needed.
        self.inserts: dict[str, dict[Key, Row]] = defaultdict(dict)
        self.deletes: dict[str, list[Key]] = defaultdict(list)
        self.rewrite: list[str] = []  # members whose child rows are replaced whole
        self.trail: list[Row] = []
        self.voids: list[tuple[int, str, str]] = []  # (position voided, member, reason)


def _sorted(rows: dict[Key, Row]) -> list[Row]:
    # Keys are primary keys (text and integers, never NULL), so they sort as they are.
    return [rows[k] for k in sorted(rows)]


class RowWriter:
    """Turns desired rows into the smallest set of writes, and writes them."""

    def __init__(self, db: Db, cache_size: int):
        """``cache_size``: how many members' written rows it remembers (0: none)."""
        self.db = db
        self.cache_size = cache_size
        self._written: OrderedDict[UUID, dict[str, dict[Key, Row]]] = OrderedDict()

    def forget(self) -> None:
        """Drop what it remembers (after a failed transaction, or a generation switch)."""
        self._written.clear()

    def member(
        self, changes: Changes, member_id: UUID, tables: dict[str, list[Row]], *, new: bool
    ) -> None:
        """Plan the writes that make the member's rows equal ``tables``."""
        desired = {name: {KEY_OF[name](r): r for r in rows} for name, rows in tables.items()}
        before = self._written.get(member_id)
        if before is None and not new:
            changes.rewrite.append(str(member_id))
        for name, rows in desired.items():
            if new and before is None:
                changes.inserts[name].update(rows)
                continue
            old = before.get(name, {}) if before is not None else {}
            for key, row in rows.items():
                if old.get(key) != row:
                    changes.upserts[name][key] = row
            if before is not None:
                changes.deletes[name].extend(k for k in old if k not in rows)
        if self.cache_size:
            self._written[member_id] = desired
            self._written.move_to_end(member_id)
            while len(self._written) > self.cache_size:
                self._written.popitem(last=False)

    def flush(self, cur: Cursor, generation: int, changes: Changes) -> None:
        """Write the planned changes inside the caller's transaction.

        Rows are locked in one order — members first, then each member table; in each,
        new members' inserts, then merges, each sorted by key. Two runners folding
        from the same committed position class every member alike (new when its first
        event is in the batch), so they lock in the same order and cannot deadlock.
        """
        self._upsert(cur, generation, "units", _sorted(changes.upserts.get("units", {})))
        for name in MEMBER_TABLES:
            inserts = changes.inserts.get(name)
            if inserts:
                self._append(cur, schema.table(generation, name), name, _sorted(inserts))
            if name == "members":
                self._upsert(cur, generation, name, _sorted(changes.upserts.get(name, {})))
                continue
            if changes.rewrite:
                self._delete_members(cur, schema.table(generation, name), sorted(changes.rewrite))
            for key in sorted(changes.deletes.get(name, []), key=lambda k: tuple(map(str, k))):
                where = " AND ".join(f"{k} = ?" for k in KEYS[name])
                cur.execute(f"DELETE FROM {schema.table(generation, name)} WHERE {where}", key)
            self._upsert(cur, generation, name, _sorted(changes.upserts.get(name, {})))
        self._append(cur, schema.table(generation, "trail"), "trail", changes.trail)
        for position, member_id, reason in changes.voids:
            # By the trail's primary key (the member too, as a check): no other index
            # is needed while a rebuild loads.
            cur.execute(
                f"UPDATE {schema.table(generation, 'trail')} SET voided = 1, void_reason = ?"
                " WHERE position = ? AND member_id = ?",
                (reason, position, member_id),
            )

    def _upsert(self, cur: Cursor, generation: int, name: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        target = schema.table(generation, name)
        columns = schema.COLUMNS[name]
        keys = KEYS[name]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
        conflict = f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
        if self.db.backend == "postgres" and len(rows) > SMALL_UPSERT:
            stage = f"harbor_stage_{name}"
            cur.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {target}) ON COMMIT DELETE ROWS"
            )
            self._copy(cur, stage, name, rows)
            cur.execute(
                f"INSERT INTO {target} ({', '.join(columns)})"
                f" SELECT {', '.join(columns)} FROM {stage} {conflict}"
            )
            cur.execute(f"TRUNCATE {stage}")
        else:  # SQLite, and a following batch's few rows (one pipelined round trip)
            cur.executemany(
                f"INSERT INTO {target} ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))}) {conflict}",
                rows,
            )

    def _append(self, cur: Cursor, target: str, name: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        columns = schema.COLUMNS[name]
        if self.db.backend == "postgres":
            self._copy(cur, target, name, rows)
        else:
            cur.executemany(
                f"INSERT INTO {target} ({', '.join(columns)})"
                f" VALUES ({', '.join('?' * len(columns))})",
                rows,
            )

    @staticmethod
    def _copy(cur: Cursor, table: str, name: str, rows: Sequence[Row]) -> None:
        """COPY rows of read model ``name`` into ``table``, in binary (less to parse)."""
        columns = schema.COLUMNS[name]
        with cur.raw.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(schema.COPY_TYPES[name])
            for row in rows:
                copy.write_row(row)

    def _delete_members(self, cur: Cursor, table: str, member_ids: list[str]) -> None:
        if self.db.backend == "postgres":
            cur.execute(f"DELETE FROM {table} WHERE member_id = ANY(?)", (member_ids,))
            return
        for i in range(0, len(member_ids), IN_CHUNK):
            chunk = member_ids[i : i + IN_CHUNK]
            cur.execute(
                f"DELETE FROM {table} WHERE member_id IN ({', '.join('?' * len(chunk))})", chunk
            )
