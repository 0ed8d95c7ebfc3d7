"""`harbor db copy --to URL`: a whole Harbor store into another database, either backend.

A centre starts on the embedded SQLite file and moves to PostgreSQL when it grows (or an
auditor takes a PostgreSQL store home as one file). What is copied is what was stored,
as it was stored:

- the event log, every event at its own log position: positions are named by voided
  entries, command receipts and the audit log's leaves, and a log with gaps (PostgreSQL
  skips the ids of rolled-back appends) keeps them;
- the command receipts (idempotency keys), the credentials (token hashes), and the audit
  log's leaves, nodes, signed tree heads, public keys and past verifications — so every
  head signed on the source verifies on the target.

The projections are not copied: the target's are rebuilt from its log. Run it with
nothing writing to the source; interrupted, run it again and it goes on from the last
event the target holds, once it has checked that the target's log is the source's so far.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from audit.storage import HEADS, KEYS, LEAVES, NODES, VERIFICATIONS, AuditStore
from domain.registry import Registry
from store.recorders import RECEIPTS_TABLE
from store.sql import Db
from store.tokens import TABLE as TOKENS_TABLE
from store.tokens import TokenStore

# Every table beside the log that holds something the log cannot give back, in the order
# they are copied. (The projections and their tracking rows are rebuilt instead.)
SIDE_TABLES = (RECEIPTS_TABLE, TOKENS_TABLE, KEYS, HEADS, LEAVES, NODES, VERIFICATIONS)
# Columns PostgreSQL numbers from a sequence: set past the copied rows, so the next seal
# or verification on the target takes the next number.
SEQUENCED = {HEADS: "seq", VERIFICATIONS: "seq"}
DEFAULT_BATCH = 5000

Progress = Callable[[str, int, int], None]  # (what, done, total)


class CopyRefused(Exception):
    """The copy cannot be made (and the message says what to do)."""


@dataclass
class CopyReport:
    """What one run copied."""

    events: int = 0  # copied by this run
    already: int = 0  # on the target before this run (an interrupted copy resumed)
    rows: dict[str, int] = field(default_factory=dict)  # side table -> rows on the source
    head: int = 0  # the log position copied up to
    moved: bool = False  # the source's log grew meanwhile: something was writing to it


class _Store:
    """One side of the copy: its log table, its id column and its SQL surface."""

    def __init__(self, registry: Registry):
        recorder: Any = registry.recorder
        self.db = Db(recorder.datastore)
        self.postgres = self.db.backend == "postgres"
        if self.postgres:
            schema = recorder.datastore.schema or "public"
            self.log = f"{schema}.{recorder.events_table_name}"
            self.id = "notification_id"
        else:
            self.log = recorder.events_table_name
            self.id = "rowid"  # the SQLite recorder's notification id

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
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

    def has_table(self, table: str) -> bool:
        """Whether the table exists here."""
        if self.postgres:
            row = self.one("SELECT to_regclass(?) IS NOT NULL", (table,))
        else:
            row = self.one(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            )
        return bool(row and row[0])


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
    report = CopyReport(head=source.position())
    report.already = _resume_from(src, dst)
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
    if dst.postgres and report.head:
        _sequence_past(dst, dst.log, "notification_id")
    _make_side_tables(target)
    for table in SIDE_TABLES:
        if src.has_table(table):
            report.rows[table] = _copy_rows(src, dst, table, batch, step)
    # Receipts and heads copied last may name events after the head: a copy made while
    # something wrote is not one to switch to (run again with nothing writing, and it
    # copies what came since).
    report.moved = source.position() != report.head
    return report


def _resume_from(src: _Store, dst: _Store) -> int:
    """The position the target's log already reaches, checked to be the source's so far."""
    row = dst.one(f"SELECT MAX({dst.id}) FROM {dst.log}")
    reached = int(row[0]) if row and row[0] is not None else 0
    if reached == 0:
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
    return reached


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


def _make_side_tables(target: Registry) -> None:
    """Create the credentials' and audit log's tables on the target, as their owners do."""
    TokenStore(Db(target.recorder.datastore))  # type: ignore[attr-defined]
    AuditStore.for_recorder(target.recorder)


def _copy_rows(src: _Store, dst: _Store, table: str, batch: int, step: Progress) -> int:
    """Copy a side table's rows (those the target has already are kept); returns its count."""
    total_row = src.one(f"SELECT COUNT(*) FROM {table}")
    total = int(total_row[0]) if total_row else 0
    done = 0
    step(table, 0, total)
    with _rows_of(src, table, batch) as (columns, pages):
        insert = (
            f"INSERT INTO {table} ({', '.join(columns)})"
            f" VALUES ({src.db.placeholders(len(columns))}) ON CONFLICT DO NOTHING"
        )
        for rows in pages:
            with dst.db.transaction() as cur:
                cur.executemany(insert, [tuple(_plain(v) for v in r) for r in rows])
            done += len(rows)
            step(table, done, total)
    sequenced = SEQUENCED.get(table)
    if dst.postgres and sequenced is not None and total:
        _sequence_past(dst, table, sequenced)
    return total


@contextmanager
def _rows_of(
    src: _Store, table: str, batch: int
) -> Iterator[tuple[list[str], Iterator[list[tuple[Any, ...]]]]]:
    """The table's column names and its rows, a page at a time, from one read."""
    with src.db.transaction(commit=False) as cur:
        if src.postgres:
            # A server-side cursor: a table of millions of receipts is not held in memory.
            raw = cur.raw.connection.cursor(name=f"harbor_copy_{table}")
        else:
            raw = cur.raw.sqlite_cursor  # the library's wrapper hides fetchmany and description
        raw.execute(f"SELECT * FROM {table}")
        columns = [d[0] for d in raw.description]

        def pages() -> Iterator[list[tuple[Any, ...]]]:
            while rows := raw.fetchmany(batch):
                yield [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in rows]

        yield columns, pages()


def _plain(value: Any) -> Any:
    # PostgreSQL hands bytea back as bytes, SQLite's BLOB likewise; a memoryview from
    # either driver is made bytes so the other one takes it.
    return bytes(value) if isinstance(value, memoryview) else value


def _sequence_past(dst: _Store, table: str, column: str) -> None:
    """Set the column's sequence to its highest value: the next row numbers after it."""
    with dst.db.transaction() as cur:
        cur.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), (SELECT MAX({column}) FROM {table}))",
            (table, column),
        )
