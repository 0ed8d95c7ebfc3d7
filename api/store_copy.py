"""`harbor db copy --to URL`: a whole Harbor store into another database, either backend.

A centre starts on the embedded SQLite file and moves to PostgreSQL when it grows (or an
auditor takes a PostgreSQL store home as one file). What is copied is what was stored,
as it was stored:

- the event log, every event at its own log position: positions are named by voided
  entries, command receipts and the audit log's leaves, and a log with gaps (PostgreSQL
  skips the ids of rolled-back appends) keeps them;
- the command receipts (idempotency keys), the credentials (token hashes, revocations
  included), and the audit log's leaves, nodes, signed tree heads, public keys and past
  verifications — so every head signed on the source verifies on the target.

The projections are not copied: the target's are rebuilt from its log. The target must
be empty, or hold what an interrupted copy of the same store left: then the copy goes on
from the last event it holds, and every row it already has must be the source's (a
token revoked since is revoked there too). Run it with nothing writing to the source;
if something did, the report says so (``moved``) and a second run copies the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from audit.storage import HEADS, KEYS, LEAVES, NODES, VERIFICATIONS, AuditStore
from domain.registry import Registry
from store.recorders import RECEIPTS_TABLE
from store.sql import Db
from store.tokens import TABLE as TOKENS_TABLE
from store.tokens import TokenStore

# Every table beside the log that holds something the log cannot give back, with its
# primary key, in the order they are copied (the projections are rebuilt instead).
SIDE_TABLES: dict[str, tuple[str, ...]] = {
    RECEIPTS_TABLE: ("unit_id", "key"),
    TOKENS_TABLE: ("token_hash",),
    KEYS: ("key_id",),
    HEADS: ("seq",),
    LEAVES: ("ordinal",),
    NODES: ("level", "idx"),
    VERIFICATIONS: ("seq",),
}
# What may change in a row after it was written: a token is revoked.
MUTABLE = {TOKENS_TABLE: ("revoked_at",)}
# Columns PostgreSQL numbers from a sequence: set past the copied rows, so the next seal
# or verification on the target takes the next number.
SEQUENCED = {HEADS: "seq", VERIFICATIONS: "seq"}
DEFAULT_BATCH = 5000
SIDE_PAGE = 1000  # rows per page of a side table (each page is also looked up by key)

Progress = Callable[[str, int, int], None]  # (what, done, total)
Row = tuple[Any, ...]


class CopyRefused(Exception):
    """The copy cannot be made (and the message says what to do)."""


@dataclass
class CopyReport:
    """What one run copied."""

    events: int = 0  # copied by this run
    already: int = 0  # on the target before this run (an interrupted copy resumed)
    rows: dict[str, int] = field(default_factory=dict)  # side table -> rows the source has
    head: int = 0  # the log position copied up to
    moved: bool = False  # the source changed meanwhile: something was writing to it


class _Store:
    """One side of the copy: its tables' names, its log's id column and its SQL surface."""

    def __init__(self, registry: Registry):
        recorder: Any = registry.recorder
        self.db = Db(recorder.datastore)
        self.postgres = self.db.backend == "postgres"
        self.schema = (recorder.datastore.schema or "public") if self.postgres else ""
        self.log = self.table(recorder.events_table_name)
        self.id = "notification_id" if self.postgres else "rowid"  # SQLite's notification id

    def identity(self) -> tuple[Any, ...]:
        """What names this store however its URL is spelled: PostgreSQL's cluster id,
        database and schema; SQLite's file (device and inode)."""
        if self.postgres:
            row = self.one(
                "SELECT (SELECT system_identifier FROM pg_control_system()), current_database()"
            )
            return ("postgres", *(row or ()), self.schema)
        row = self.one("PRAGMA database_list")
        path = row[2] if row else ""
        try:
            stat = os.stat(path)
        except OSError:
            return ("sqlite", path)
        return ("sqlite", stat.st_dev, stat.st_ino)

    def table(self, name: str) -> str:
        """The name to query ``name`` by, as its owner creates it (in the store's schema)."""
        if not self.postgres or name == TOKENS_TABLE:  # TokenStore's table is unqualified
            return name
        return f'"{self.schema}".{name}'

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a read, or None."""
        rows = self.db.query(sql, params)
        return rows[0] if rows else None

    def event_at(self, position: int) -> tuple[UUID, int, str, bytes] | None:
        """The event at a log position, as comparable values."""
        row = self.one(
            f"SELECT originator_id, originator_version, topic, state FROM {self.log}"
            f" WHERE {self.id} = ?",
            (position,),
        )
        if row is None:
            return None
        originator = row[0] if isinstance(row[0], UUID) else UUID(str(row[0]))
        return originator, int(row[1]), str(row[2]), bytes(row[3])

    def count_to(self, position: int) -> int:
        """How many events the log holds up to a position."""
        row = self.one(f"SELECT COUNT(*) FROM {self.log} WHERE {self.id} <= ?", (position,))
        return int(row[0]) if row else 0

    def has_table(self, name: str) -> bool:
        """Whether the side table exists here."""
        if self.postgres:
            row = self.one("SELECT to_regclass(?) IS NOT NULL", (self.table(name),))
        else:
            row = self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return bool(row and row[0])

    def count(self, name: str) -> int:
        """Rows in a side table (0 when it does not exist)."""
        if not self.has_table(name):
            return 0
        row = self.one(f"SELECT COUNT(*) FROM {self.table(name)}")
        return int(row[0]) if row else 0

    def columns(self, name: str) -> list[str]:
        """A side table's column names."""
        with self.db.transaction(commit=False) as cur:
            raw = cur.raw if self.postgres else cur.raw.sqlite_cursor  # the library hides it
            raw.execute(f"SELECT * FROM {self.table(name)} WHERE 1 = 0")
            return [d[0] for d in raw.description]


def copy_store(
    source: Registry,
    target: Registry,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy the log and every side table from ``source`` to ``target`` (see the module)."""
    if batch < 1:
        raise ValueError("a batch holds at least one event")
    step: Progress = progress or (lambda what, done, total: None)
    src, dst = _Store(source), _Store(target)
    if src.identity() == dst.identity():
        raise CopyRefused("the target is the store being copied; name another database")
    before = _fingerprint(src)
    report = CopyReport(head=source.position())
    report.already = _resume_from(src, dst)
    _make_side_tables(target)  # only once the target is known to be this copy's
    position = report.already
    step("events", position, report.head)
    while position < report.head:
        page = list(source.recorder.select_notifications(position + 1, batch, stop=report.head))
        if not page:
            break
        _append(dst, page)
        report.events += len(page)
        position = page[-1].id
        step("events", position, report.head)
    for name, key in SIDE_TABLES.items():
        if src.has_table(name):
            report.rows[name] = _copy_rows(src, dst, name, key, min(batch, SIDE_PAGE), step)
    # Receipts, revocations and heads copied after the log may name what came after the
    # head: a copy made while something wrote is not one to switch to yet.
    report.moved = source.position() != report.head or _fingerprint(src) != before
    return report


def _make_side_tables(target: Registry) -> None:
    """Create the credentials' and audit log's tables on the target, as their owners do."""
    TokenStore(Db(target.recorder.datastore))  # type: ignore[attr-defined]
    AuditStore.for_recorder(target.recorder)


def _fingerprint(store: _Store) -> tuple[int, ...]:
    """What a write to the side tables changes: their sizes and the revocations."""
    sizes = [store.count(name) for name in SIDE_TABLES]
    revoked = 0
    if store.has_table(TOKENS_TABLE):
        row = store.one(f"SELECT COUNT(*) FROM {TOKENS_TABLE} WHERE revoked_at IS NOT NULL")
        revoked = int(row[0]) if row else 0
    return (*sizes, revoked)


def _resume_from(src: _Store, dst: _Store) -> int:
    """The position the target's log already reaches, checked to be the source's so far."""
    row = dst.one(f"SELECT MAX({dst.id}) FROM {dst.log}")
    reached = int(row[0]) if row and row[0] is not None else 0
    if reached == 0:
        used = [name for name in SIDE_TABLES if dst.count(name)]
        if used:
            raise CopyRefused(
                f"the target's log is empty but it already holds {', '.join(used)} rows of its"
                " own (a key, a token or a seal made there): copy into an empty database"
                " (`harbor db init` on it is fine, nothing else)"
            )
        return 0
    same = (
        src.event_at(reached) == dst.event_at(reached)
        and src.count_to(reached) == dst.count_to(reached)
    )
    if not same:
        raise CopyRefused(
            f"the target already holds {dst.count_to(reached)} events that are not this"
            " store's first ones; copy into an empty database (or the one an interrupted"
            " copy of this store left)"
        )
    for name, key in SIDE_TABLES.items():  # before anything is written, not after the log
        if dst.has_table(name) and dst.count(name):
            _check_own_rows(src, dst, name, key)
    return reached


def _check_own_rows(src: _Store, dst: _Store, name: str, key: tuple[str, ...]) -> None:
    """Refuse a target whose side table holds a row the source lacks or has otherwise: it
    was written to after an interrupted copy (a token issued, a seal made there)."""
    columns = dst.columns(name)
    at = [columns.index(k) for k in key]
    mutable = {columns.index(c) for c in MUTABLE.get(name, ())}
    for rows in _pages(dst, name, columns, key, SIDE_PAGE):
        keys = [row_key(r, at) for r in rows]
        theirs = _rows_by_key(src, name, columns, key, keys) if src.has_table(name) else {}
        for row in rows:
            source_row = theirs.get(row_key(row, at))
            differ = (
                None
                if source_row is None
                else {i for i, (a, b) in enumerate(zip(source_row, row, strict=True)) if a != b}
            )
            if differ is None or not differ <= mutable:
                which = dict(zip(key, row_key(row, at), strict=True))
                raise CopyRefused(
                    f"the target's {name} holds a row {which} the source "
                    + ("has not" if source_row is None else "has otherwise")
                    + ": it was written to after an earlier copy; nothing was copied —"
                    " copy into an empty database"
                )


def _append(dst: _Store, page: Sequence[Any]) -> None:
    """Write a page of the log at its own positions, in one transaction."""
    with dst.db.transaction() as cur:
        if dst.postgres:
            # As the library appends: the table locked, so no writer's ids interleave.
            cur.raw.execute(f"LOCK TABLE {dst.log} IN EXCLUSIVE MODE")
            columns = "notification_id, originator_id, originator_version, topic, state"
            with cur.raw.copy(f"COPY {dst.log} ({columns}) FROM STDIN") as copy:
                for n in page:
                    copy.write_row((n.id, n.originator_id, n.originator_version, n.topic, n.state))
            # With each page, so even a half-done copy never hands out a taken position.
            cur.execute(
                "SELECT setval(pg_get_serial_sequence(?, 'notification_id'), ?)",
                (dst.log, page[-1].id),
            )
        else:
            cur.executemany(
                f"INSERT INTO {dst.log} (rowid, originator_id, originator_version, topic, state)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (n.id, _sqlite_id(n.originator_id), n.originator_version, n.topic, n.state)
                    for n in page
                ],
            )


def _sqlite_id(originator_id: UUID | str) -> str:
    # The SQLite recorder keeps a UUID as its 32 hex digits (the library's own choice).
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


def _copy_rows(
    src: _Store, dst: _Store, name: str, key: tuple[str, ...], page: int, step: Progress
) -> int:
    """Copy a side table's rows the target lacks, after checking those it has; its size."""
    columns = src.columns(name)
    at = [columns.index(k) for k in key]
    mutable = [columns.index(c) for c in MUTABLE.get(name, ())]
    total, done = src.count(name), 0
    insert = (
        f"INSERT INTO {dst.table(name)} ({', '.join(columns)})"
        f" VALUES ({src.db.placeholders(len(columns))})"
    )
    step(name, 0, total)
    for rows in _pages(src, name, columns, key, page):
        have = _rows_by_key(dst, name, columns, key, [tuple(r[i] for i in at) for r in rows])
        new, changed = [], []
        for row in rows:
            there = have.get(tuple(row[i] for i in at))
            if there is None:
                new.append(row)
            elif there != row:
                differ = {i for i, (a, b) in enumerate(zip(there, row, strict=True)) if a != b}
                if not differ <= set(mutable):
                    which = dict(zip(key, row_key(row, at), strict=True))
                    raise CopyRefused(
                        f"the target's {name} holds a row {which}"
                        " that differs from the source's: it was written to after an earlier"
                        " copy; copy into an empty database"
                    )
                changed.append(row)
        with dst.db.transaction() as cur:
            cur.executemany(insert, new)
            for row in changed:  # a token revoked since the last run
                sets = ", ".join(f"{columns[i]} = ?" for i in mutable)
                where = " AND ".join(f"{k} = ?" for k in key)
                cur.execute(
                    f"UPDATE {dst.table(name)} SET {sets} WHERE {where}",
                    [row[i] for i in mutable] + list(row_key(row, at)),
                )
        done += len(rows)
        step(name, done, total)
    if dst.count(name) != src.count(name):
        raise CopyRefused(
            f"the target's {name} holds rows the source has not: it was written to after an"
            " earlier copy; copy into an empty database"
        )
    sequenced = SEQUENCED.get(name)
    if dst.postgres and sequenced is not None and total:
        _sequence_past(dst, dst.table(name), sequenced)
    return total


def row_key(row: Row, at: list[int]) -> Row:
    """The primary-key values of a row."""
    return tuple(row[i] for i in at)


def _pages(
    src: _Store, name: str, columns: list[str], key: tuple[str, ...], page: int
) -> Iterator[list[Row]]:
    """A side table's rows in key order, a page per short statement (no transaction is
    held open across pages, so no idle timeout ends a long copy)."""
    order = ", ".join(key)
    select = f"SELECT {', '.join(columns)} FROM {src.table(name)}"
    after: Row | None = None
    at = [columns.index(k) for k in key]
    while True:
        if after is None:
            rows = src.db.query(f"{select} ORDER BY {order} LIMIT ?", (page,))
        else:
            rows = src.db.query(
                f"{select} WHERE ({order}) > ({src.db.placeholders(len(key))})"
                f" ORDER BY {order} LIMIT ?",
                (*after, page),
            )
        if not rows:
            return
        plain = [tuple(_plain(v) for v in r) for r in rows]
        yield plain
        after = row_key(plain[-1], at)


def _rows_by_key(
    dst: _Store, name: str, columns: list[str], key: tuple[str, ...], keys: list[Row]
) -> dict[Row, Row]:
    """The target's rows with these keys, by key."""
    if not keys:
        return {}
    one = "(" + dst.db.placeholders(len(key)) + ")"
    rows = dst.db.query(
        f"SELECT {', '.join(columns)} FROM {dst.table(name)}"
        f" WHERE ({', '.join(key)}) IN (VALUES {', '.join([one] * len(keys))})",
        [v for k in keys for v in k],
    )
    at = [columns.index(k) for k in key]
    plain = [tuple(_plain(v) for v in r) for r in rows]
    return {row_key(r, at): r for r in plain}


def _plain(value: Any) -> Any:
    # PostgreSQL hands bytea back as bytes, SQLite's BLOB likewise; a memoryview from
    # either driver is made bytes so the other one takes it and rows compare equal.
    return bytes(value) if isinstance(value, memoryview) else value


def _sequence_past(dst: _Store, table: str, column: str) -> None:
    """Set the column's sequence to its highest value: the next row numbers after it."""
    with dst.db.transaction() as cur:
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), (SELECT MAX({column}) FROM {table}))",
            (table, column),
        )
