"""Harbor's projection runner: the event log folded into read-model tables in batches.

Each batch reads a page of the notification log, folds it, and commits the
changed rows together with the tracking position (the library's tracking
recorder, inside the same transaction). A crash between batches therefore
loses and repeats nothing: on restart the runner resumes after the last
committed position. Two runners on the same generation cannot both commit
the same batch — the tracking record only moves forward, so the second
transaction fails and that runner starts again from the committed position.

The runner's only state is a cache of folded member states, always checked
against the stream version it was folded to; anything missing is folded
again from the event store, never from the projection's own rows.
"""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, cast
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, OperationalError, Tracking
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import tuple_row

from domain.member_events import EntryVoided, MemberEvent
from domain.member_state import MemberState, fold
from domain.registry import Registry
from domain.unit import Unit
from projections import rows, schema
from projections.writer import Changes, RowWriter
from store.collection import rare_collections
from store.lease import Lease, rebuild_lock
from store.sql import Db

log = logging.getLogger(__name__)

DEFAULT_BATCH = 5000
REBUILD_BATCH = 5000
DEFAULT_CACHE = 5000
STANDBY_SECONDS = 1.0  # a follower without the lease looks again this often
# A rebuild worker meets each member in a few nearby batches: a smaller cache keeps
# its memory flat however long the log is.
REBUILD_CACHE = 2000


_MEMBER_TOPICS = ("domain.member_events:",)
_NO_STOP = 2**62  # "up to the end of the log" as a page query bound


def tracking_name(generation: int) -> str:
    """The tracking record's application name for a generation."""
    return f"harbor-projections-g{generation}"


class _LogRow(NamedTuple):
    """A row of the log as a page reads it: a Notification's fields."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    state: bytes


@dataclass
class BatchResult:
    """What one batch did."""

    events: int
    position: int
    raced: bool = False  # another runner got there first; nothing was written


class Projector:
    """Folds the log into one generation of the read-model tables."""

    def __init__(
        self,
        registry: Registry,
        *,
        generation: int | None = None,
        batch_size: int = DEFAULT_BATCH,
        cache_size: int = DEFAULT_CACHE,
        partition: tuple[int, int] | None = None,
        defer: bool = False,
    ):
        """``partition`` (lo, hi) folds only the members whose id's last byte is in
        [lo, hi), and, with lo = 0, every event that is not a member's (rebuilds).

        ``defer`` writes a member's rows once, when it leaves the cache or the fold
        ends, instead of after every batch that touched it: for rebuilds only, whose
        half-built generation is never resumed (see ``rebuild``).
        """
        self.registry = registry
        self.partition = partition
        self.defer = defer
        # Deferring: member (id's integer) -> the first version its rows do not show yet.
        self._unwritten: dict[int, int] = {}
        self.db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
        self.tracking = registry.factory.tracking_recorder()
        schema.ensure_schema(self.db)
        self.pinned = generation is not None
        self.generation = generation if generation is not None else schema.live_generation(self.db)
        self.batch_size = batch_size
        self.cache_size = cache_size
        # Keyed by the id's integer: hashing a UUID runs Python code, an int does not.
        self._members: OrderedDict[int, tuple[int, MemberState]] = OrderedDict()
        self._committed: int | None = None
        # A deferring fold writes a member's rows once, as it leaves the cache: were it
        # to come back, rewriting its rows whole is cheaper than remembering them all.
        self.writer = RowWriter(self.db, 0 if defer else cache_size)
        self._units: dict[UUID, Unit] = {}
        recorder = registry.recorder
        self._page_sql: str | None = None
        # Whether _fold must skip other partitions' events (the server filters them on
        # PostgreSQL, and a partition of all 256 byte values takes everything).
        self._filter = partition is not None and partition != (0, 256)
        if isinstance(recorder, PostgresApplicationRecorder):
            table = f"{recorder.datastore.schema or 'public'}.{recorder.events_table_name}"
            mine = ""
            if self._filter and partition is not None:
                # The same test as _mine, made by the server: a rebuild worker then
                # receives only its own share of the log.
                lo, hi = partition
                self._filter = False
                mine = (
                    f" AND CASE WHEN topic LIKE '{_MEMBER_TOPICS[0]}%%'"
                    f" THEN get_byte(uuid_send(originator_id), 15) BETWEEN {lo:d} AND {hi - 1:d}"
                    f" ELSE {lo:d} = 0 END"
                )
            self._page_sql = (
                "SELECT notification_id, originator_id, originator_version, topic, state"
                f" FROM {table} WHERE notification_id >= %s AND notification_id <= %s{mine}"
                " ORDER BY notification_id LIMIT %s"
            )

    # --- positions ------------------------------------------------------------

    @property
    def tracking_name(self) -> str:
        """The name this projector's position is tracked under."""
        name = tracking_name(self.generation)
        return f"{name}-b{self.partition[0]}to{self.partition[1]}" if self.partition else name

    def position(self) -> int:
        """The last log position this generation has folded."""
        return self.tracking.max_tracking_id(self.tracking_name) or 0

    # --- running ----------------------------------------------------------------

    def run_once(self, *, stop: int | None = None, swap: bool = False) -> BatchResult:
        """Fold one batch (up to ``stop``); with ``swap``, make this generation live."""
        if self.defer:
            raise RuntimeError("a deferring projector folds with catch_up only")
        if swap:
            return self._swap(stop)
        start = self._start()
        notes = self._read(start + 1, stop)
        if not notes:
            return BatchResult(0, start)
        try:
            changes = self._plan(notes)
            self._commit(changes, notes[-1].id)
        except (IntegrityError, OperationalError) as e:
            return self._raced(start, e)
        except BaseException:
            self._forget(failing=True)  # the cache may hold states past the committed position
            raise
        self._committed = notes[-1].id
        return BatchResult(len(notes), self._committed)

    def catch_up(
        self,
        *,
        stop: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        until: threading.Event | None = None,
    ) -> int:
        """Fold batches until the log (or ``stop``) is reached; returns events folded.

        Reading, folding and writing overlap: a thread reads the next page while
        this one folds the current batch, and another commits the previous batch
        (rows and tracking position in one transaction, batches in order). The
        database's waits release the interpreter, so the fold runs on through them.
        ``until`` stops it between batches (a follower being shut down).
        """
        done = 0
        with rare_collections():
            while True:
                folded, raced = self._pipeline(stop, progress, until)
                done += folded
                if not raced:
                    break
            if self._unwritten:
                self._write_unwritten()
        return done

    def follow(
        self,
        stop: threading.Event,
        *,
        poll_seconds: float = 0.2,
        linger_seconds: float = 0.02,
        lease: Lease | None = None,
    ) -> None:
        """Keep folding new events until ``stop`` is set (short polling, both backends).

        A few new events are folded in a single batch on this thread; a full batch
        means a backlog, which the pipelined catch-up works through. After a partial
        batch it lingers ``linger_seconds`` before looking again: every batch is a
        transaction of several statements, and under a steady trickle of commands
        back-to-back batches of one or two events each would cost the process more
        than the commands themselves (a reader waiting with min_position waits that
        much longer, at most).

        With a ``lease`` (store/lease.py), it folds only while this process holds it
        and otherwise stands by, so one of several server processes does the work.
        """
        try:
            self._follow(stop, poll_seconds, linger_seconds, lease)
        finally:
            if lease is not None:
                lease.release()

    def _follow(
        self, stop: threading.Event, poll_seconds: float, linger_seconds: float, lease: Lease | None
    ) -> None:
        while not stop.is_set():
            if lease is not None and not lease.hold():
                stop.wait(STANDBY_SECONDS)
                continue
            try:
                result = self.run_once()
                if result.events >= self.batch_size:
                    self.catch_up(until=stop)
            except Exception:  # keep following through a database restart
                log.exception("projections: batch failed; retrying")
                stop.wait(1.0)
                continue
            if result.raced:
                continue
            if result.events == 0:
                stop.wait(poll_seconds)
            elif result.events < self.batch_size:
                stop.wait(min(linger_seconds, poll_seconds))

    # --- the steps of a batch ---------------------------------------------------------

    def _start(self) -> int:
        """The committed position to go on from (after noticing a new live generation)."""
        if not self.pinned:
            live = schema.live_generation(self.db)
            if live != self.generation:
                log.info("projections: generation %s is live now", live)
                self.generation = live
                self._forget()
        start = self.position()
        if self._committed is not None and start != self._committed:
            # Another runner folded part of the log meanwhile: what this one remembers
            # (member states, rows it wrote) may no longer be what the tables hold.
            self._forget()
        self._committed = start
        return start

    def _read(self, start: int, stop: int | None) -> list[Notification]:
        """A page of the log from ``start`` (at most ``batch_size``, up to ``stop``)."""
        recorder = self.registry.recorder
        if not isinstance(recorder, PostgresApplicationRecorder) or self._page_sql is None:
            return list(recorder.select_notifications(start, self.batch_size, stop=stop))
        # The library's select_notifications builds a dict per row; tuples are cheaper.
        bound = stop if stop is not None else _NO_STOP
        with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._page_sql, (start, bound, self.batch_size), prepare=True, binary=True)
            # Notification's own __init__ (a frozen dataclass) costs more than the rest of
            # reading a row; a tuple with the same fields serves the mapper just as well.
            return cast(list[Notification], list(map(_LogRow._make, cur.fetchall())))

    def _plan(self, notes: Sequence[Notification]) -> Changes:
        """Fold a batch and turn it into the writes that bring the tables up to it."""
        # A batch allocates many short-lived objects and few cycles: collecting once per
        # batch instead of every few hundred allocations keeps the fold CPU-bound on work.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._changes(self._fold(notes))
        finally:
            if collecting:
                gc.enable()

    def _commit(self, changes: Changes, last: int | None) -> None:
        """Write the changes and the tracking position in one transaction."""
        with self.db.transaction() as cur:
            if not self.pinned and self.db.backend == "postgres":
                # Shared: waits while a rebuild swaps (see _swap), never for another batch.
                # (SQLite has one writer at a time: a swap already keeps batches out.)
                schema.lock_state(self.db, cur, exclusive=False)
            self.writer.flush(cur, self.generation, changes)
            if last is not None:
                self.tracking._insert_tracking(  # type: ignore[attr-defined]
                    cur.raw, Tracking(self.tracking_name, last)
                )

    def _swap(self, stop: int | None) -> BatchResult:
        """Fold what is left and make this generation live, in one transaction.

        The state row is locked first, so no follower commits to the live generation
        meanwhile; this generation then folds at least as far as the live one has, or
        the swap would take the live position backwards and a reader that waited for
        a position (``min_position``) could miss what it waited for. On PostgreSQL the
        rest is read and folded under the lock. SQLite's pool lets a process hold one
        writing connection and no other while it waits, so there the pages are read
        and folded first and, if a follower got further meanwhile, the swap is tried
        again (``raced``).
        """
        start = self._start()
        postgres = self.db.backend == "postgres"
        notes: list[Notification] = [] if postgres else self._pages_to(start, None, stop)
        # Folding may read (a voided entry's stream, a unit): on SQLite before the lock too.
        planned = None if postgres else self._plan(notes)
        try:
            with self.db.transaction() as cur:
                live, building = schema.lock_state(self.db, cur, exclusive=True)
                if building != self.generation:
                    raise RuntimeError(
                        f"generation {self.generation} is no longer the one being built"
                        f" ({building} is): another rebuild started meanwhile; nothing swapped"
                    )
                reach = self._tracked_in(cur, tracking_name(live))
                if postgres:
                    notes = self._pages_to(start, reach, stop)
                elif (notes[-1].id if notes else start) < reach:
                    self._forget()  # the pages read ahead were folded into the cache
                    return BatchResult(0, start, raced=True)
                changes = planned if planned is not None else self._plan(notes)
                self.writer.flush(cur, self.generation, changes)
                if notes:
                    self.tracking._insert_tracking(  # type: ignore[attr-defined]
                        cur.raw, Tracking(self.tracking_name, notes[-1].id)
                    )
                schema.point_views_at(self.db, cur, self.generation)
                cur.execute(f"UPDATE {schema.STATE_TABLE} SET building = NULL WHERE id = 1")
        except (IntegrityError, OperationalError) as e:
            return self._raced(start, e)
        except BaseException:
            self._forget(failing=True)
            raise
        self._committed = notes[-1].id if notes else start
        return BatchResult(len(notes), self._committed)

    def _tracked_in(self, cur: Any, name: str) -> int:
        """The position tracked under ``name``, read in the caller's transaction (whose
        lock keeps it from moving), through the library's own statement."""
        if self.db.backend == "postgres":
            found = self.tracking._max_tracking_id(name, cur.raw)  # type: ignore[attr-defined]
        else:
            cur.raw.execute(self.tracking.select_max_tracking_id_statement, (name,))  # type: ignore[attr-defined]
            row = cur.raw.fetchone()
            found = row[0] if row is not None else None
        return int(found or 0)

    def _pages_to(self, start: int, reach: int | None, stop: int | None) -> list[Notification]:
        """The log after ``start``, page by page, at least up to ``reach`` (None: the end)."""
        notes: list[Notification] = []
        while True:
            page = self._read((notes[-1].id if notes else start) + 1, stop)
            notes += page
            if not page or len(page) < self.batch_size:
                return notes
            if reach is not None and page[-1].id >= reach:
                return notes

    def _raced(self, start: int, e: Exception) -> BatchResult:
        """After a failed commit: another runner got there first, or a real error."""
        if isinstance(e, OperationalError):
            genuine = "deadlock" not in str(e)
        else:
            # A runner that won the race committed its tracking position with its rows;
            # a key conflict with the position unmoved is a fault of the rows themselves,
            # which would only fail again, batch after batch.
            genuine = self.position() == start
        self._forget(failing=genuine)
        if genuine:
            raise e
        # Another runner committed this batch first (or collided with it): start
        # again from whatever is committed now.
        log.warning(
            "projections: batch after %s was folded elsewhere (%s)", start, type(e).__name__
        )
        return BatchResult(0, self.position(), raced=True)

    def _pipeline(
        self,
        stop: int | None,
        progress: Callable[[int, int], None] | None,
        until: threading.Event | None = None,
    ) -> tuple[int, bool]:
        """Fold from the committed position to the end; (events folded, raced)."""
        start = self._start()
        pages = _Pages(self, start + 1, stop)
        writing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harbor-projection-writer")
        pending: tuple[Future[None], int, int] | None = None  # (commit, events, last id)
        done = 0

        def settle() -> None:
            nonlocal pending, done
            if pending is not None:
                future, events, last = pending
                pending = None
                future.result()
                self._committed = last
                done += events
                if progress is not None:
                    progress(events, last)

        try:
            for notes in pages:
                if until is not None and until.is_set():
                    break
                changes = self._plan(notes)
                settle()  # the previous batch is committed before this one is sent
                last = notes[-1].id
                pending = (writing.submit(self._commit, changes, last), len(notes), last)
            settle()
        except (IntegrityError, OperationalError) as e:
            self._raced(start, e)
            return done, True
        except BaseException:
            self._forget(failing=True)
            raise
        finally:
            pages.close()
            writing.shutdown(wait=True)
        if progress is not None and done == 0:
            progress(0, start)
        return done, False

    # --- folding ------------------------------------------------------------------

    def _fold(self, notes: Sequence[Notification]) -> _Batch:
        batch = _Batch()
        mapper = self.registry.mapper
        for note in notes:
            if self._filter and not self._mine(note):
                continue
            event = mapper.to_domain_event(note)
            if isinstance(event, MemberEvent):
                member_id = event.originator_id
                key = member_id.int
                version = event.originator_version
                if isinstance(event, EntryVoided):
                    state = self._fold_from_store(member_id, version)
                    batch.voids.append((event.voided, str(member_id), event.reason))
                else:
                    state = self._member_state(member_id, key, version - 1)
                    event.evolve(state)
                evicted = self._remember(key, version, state)
                if self.defer:
                    self._unwritten.setdefault(key, version)
                    for gone, (gone_version, gone_state) in evicted:
                        first = self._unwritten.pop(gone, None)
                        if first is not None:  # leaving the cache: its rows are due now
                            batch.member(UUID(int=gone), gone_version, gone_state, first)
                else:
                    batch.member(member_id, version, state, version)
                batch.trail.append(rows.trail_row(note.id, event))
            elif isinstance(event, Unit.Event):
                unit = event.mutate(self._unit_before(event))
                assert isinstance(unit, Unit)
                self._units[event.originator_id] = unit
                batch.units[unit.code] = unit
        return batch

    def _mine(self, note: Notification) -> bool:
        assert self.partition is not None
        lo, hi = self.partition
        if note.topic.startswith(_MEMBER_TOPICS):
            return lo <= note.originator_id.bytes[15] < hi  # type: ignore[union-attr]
        return lo == 0  # units and everything else: the first partition

    def _unit_before(self, event: Unit.Event) -> Unit | None:
        if isinstance(event, Unit.UnitRegistered):
            return None
        unit = self._units.get(event.originator_id)
        if unit is None or unit.version != event.originator_version - 1:
            loaded: Any = self.registry.repository.get(
                event.originator_id, version=event.originator_version - 1
            )
            assert isinstance(loaded, Unit)
            unit = loaded
        return unit

    def _member_state(self, member_id: UUID, key: int, version: int) -> MemberState:
        cached = self._members.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        if version == 0:
            return MemberState()
        return self._fold_from_store(member_id, version)

    def _fold_from_store(self, member_id: UUID, version: int) -> MemberState:
        stored = self.registry.recorder.select_events(member_id, lte=version)
        events = [self.registry.mapper.to_domain_event(s) for s in stored]
        return fold(e for e in events if isinstance(e, MemberEvent))

    def _remember(
        self, key: int, version: int, state: MemberState
    ) -> list[tuple[int, tuple[int, MemberState]]]:
        """Cache the member's state (most recently used); returns those that left the cache."""
        self._members[key] = (version, state)
        self._members.move_to_end(key)
        evicted = []
        while len(self._members) > self.cache_size:
            evicted.append(self._members.popitem(last=False))
        return evicted

    def _write_unwritten(self) -> None:
        """Write the rows a deferring fold still owes (its tracking position is already in)."""
        batch = _Batch()
        for key, first in self._unwritten.items():
            version, state = self._members[key]
            batch.member(UUID(int=key), version, state, first)
        self._unwritten.clear()
        self._commit(self._changes(batch), None)

    def _forget(self, *, failing: bool = False) -> None:
        unwritten = bool(self._unwritten)
        self._unwritten.clear()
        self._members.clear()
        self._units.clear()
        self.writer.forget()
        if unwritten and not failing:
            # Those rows existed only in the states just dropped: the fold cannot go on.
            raise RuntimeError("a deferring fold was interrupted; start the rebuild again")

    # --- writing ---------------------------------------------------------------------

    def _changes(self, batch: _Batch) -> Changes:
        changes = Changes()
        for code, unit in batch.units.items():
            changes.upserts["units"][(code,)] = rows.unit_row(unit)
        for mid, (version, state) in batch.members.items():
            self.writer.member(
                changes,
                mid,
                {
                    "members": [rows.member_row(mid, version, state)],
                    "cases": rows.case_rows(mid, state),
                    "referrals": rows.referral_rows(mid, state),
                    "letters": rows.letter_rows(mid, state),
                    "overrides": rows.override_rows(mid, state),
                },
                new=batch.first_version[mid] == 1,
            )
        changes.trail = batch.trail
        changes.voids = batch.voids
        return changes


class _Pages:
    """Pages of the log read ahead by a thread, while the caller folds the one before."""

    def __init__(self, projector: Projector, start: int, stop: int | None, ahead: int = 1):
        self._projector = projector
        self._next = start
        self._stop = stop
        self._queue: queue.Queue[list[Notification] | BaseException | None] = queue.Queue(ahead)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harbor-projection-reader")
        self._thread.daemon = True
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                notes = self._projector._read(self._next, self._stop)
                if not notes:
                    break
                self._next = notes[-1].id + 1
                self._put(notes)
        except BaseException as e:  # handed to the folding thread, which raises it
            self._put(e)
            return
        self._put(None)

    def _put(self, item: list[Notification] | BaseException | None) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[list[Notification]]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop reading ahead."""
        self._closed.set()
        self._thread.join(timeout=30)


@dataclass
class _Batch:
    members: dict[UUID, tuple[int, MemberState]]
    first_version: dict[UUID, int]
    units: dict[str, Unit]
    trail: list[rows.Row]
    voids: list[tuple[int, str, str]]  # (position voided, member, reason)

    def __init__(self) -> None:
        self.members = {}
        self.first_version = {}
        self.units = {}
        self.trail = []
        self.voids = []

    def member(self, member_id: UUID, version: int, state: MemberState, first: int) -> None:
        """Rows are due for this member as of ``version``; ``first`` is the earliest unwritten."""
        self.members[member_id] = (version, state)
        self.first_version.setdefault(member_id, first)


def default_workers(registry: Registry) -> int:
    """Rebuild workers by default: two on PostgreSQL (the machine's cores), one on SQLite."""
    return 2 if isinstance(registry.recorder, PostgresApplicationRecorder) else 1


def rebuild(
    registry: Registry,
    *,
    batch_size: int = REBUILD_BATCH,
    workers: int = 1,
    cache_size: int = REBUILD_CACHE,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Build a fresh generation from position zero beside the live one, then swap it in.

    The log up to the position the rebuild started at is folded first, split
    between ``workers`` processes (the machine's cores) when there are more than
    one, each writing a member's rows once rather than after every batch (a
    deferring fold). That is safe because a half-built generation is never
    resumed: a rebuild that fails or is killed is dropped by the next one. This
    process then folds what arrived meanwhile and makes the swap. Returns the
    new live generation. Readers see the old tables until the swap.
    ``cache_size`` is the members each fold keeps (rows are written as they leave).
    """
    if workers < 1 or batch_size < 1 or cache_size < 1:
        raise ValueError("rebuild needs at least one worker, a batch and a cache of one")
    with rebuild_lock(registry):
        return _rebuild(registry, batch_size, workers, cache_size, progress)


def _rebuild(
    registry: Registry,
    batch_size: int,
    workers: int,
    cache_size: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
    schema.ensure_schema(db)
    generation = schema.start_generation(db, loading=True)
    projector = Projector(registry, generation=generation, batch_size=batch_size)
    head = registry.position()
    _fold_in_parallel(registry, generation, head, (batch_size, cache_size), workers, progress)
    if head > 0:
        with db.transaction() as cur:
            projector.tracking._insert_tracking(  # type: ignore[attr-defined]
                cur.raw, Tracking(projector.tracking_name, head)
            )
    projector.catch_up(progress=progress)
    # The last few events and the swap, in one transaction (again if it collided).
    while projector.run_once(swap=True).raced:
        pass
    return generation


def _deferring(
    registry: Registry, generation: int, sizes: tuple[int, int], partition: tuple[int, int]
) -> Projector:
    batch_size, cache_size = sizes
    return Projector(
        registry,
        generation=generation,
        batch_size=batch_size,
        cache_size=cache_size,
        partition=partition,
        defer=True,
    )


def _fold_partition(
    env: dict[str, str],
    generation: int,
    head: int,
    sizes: tuple[int, int],
    partition: tuple[int, int],
) -> None:
    registry = Registry(env)
    try:
        _deferring(registry, generation, sizes, partition).catch_up(stop=head)
    finally:
        registry.close()


# Events one process folds while a worker process starts (about 0.25 s of imports at
# about 25k events/s on the machine this was measured on): the rebuilding process takes
# that much more than an even share, and folds a log this short alone.
WORKER_START_EVENTS = 6_000


def shares(head: int, workers: int) -> list[tuple[int, int]]:
    """Ranges of the last byte of member ids, one per fold: the first for this process.

    The folds start together except the workers, which start ``WORKER_START_EVENTS``
    later; the shares are sized so that all of them end together.
    """
    others = workers - 1
    if others == 0 or head <= WORKER_START_EVENTS:
        return [(0, 256)]
    own = (1 + others * WORKER_START_EVENTS / head) / workers
    cut = round(256 * own)
    if cut >= 256 - others:
        return [(0, 256)]
    rest = 256 - cut
    bounds = [cut + rest * i // others for i in range(others + 1)]
    return [(0, cut), *itertools.pairwise(bounds)]


def _fold_in_parallel(
    registry: Registry,
    generation: int,
    head: int,
    sizes: tuple[int, int],
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Fold the log up to ``head``: one share here, the others in worker processes."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    env = dict(registry.env)
    own, *theirs = shares(head, workers)
    processes = [
        context.Process(
            target=_fold_partition, args=(env, generation, head, sizes, share), daemon=True
        )
        for share in theirs
    ]
    for process in processes:
        process.start()
    watchers = [Projector(registry, generation=generation, partition=share) for share in theirs]

    def report(_events: int, last: int) -> None:
        if progress is not None:
            progress(0, min([last, *(w.position() for w in watchers)]))

    try:
        # This process folds the first share itself while the workers start up, then
        # (PostgreSQL) builds the indexes left out for the load while the workers
        # finish, on what would otherwise be an idle core.
        _deferring(registry, generation, sizes, own).catch_up(stop=head, progress=report)
        db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
        if db.backend == "postgres":
            _build_indexes(db, generation)
        for process in processes:
            while process.is_alive():
                process.join(timeout=0.2)  # returns the moment the worker ends
                report(0, head)
        if db.backend != "postgres":
            # One writer at a time: an index built on a long table would hold the
            # workers' writes past their lock timeout.
            _build_indexes(db, generation)
    except BaseException:
        for process in processes:
            process.terminate()
        raise
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"a rebuild worker failed (exit codes {failed}); nothing was swapped")


def _build_indexes(db: Db, generation: int) -> None:
    for statement in schema.index_statements(generation):
        with db.transaction() as cur:  # one short lock per table
            cur.execute(statement)


def live_position(registry: Registry) -> int:
    """The last log position the live projections have folded."""
    db, tracking = _position_readers(registry)
    return tracking.max_tracking_id(tracking_name(schema.live_generation(db))) or 0


def wait_for(registry: Registry, position: int, *, timeout: float = 5.0) -> bool:
    """Wait until the live projections have folded ``position``; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if live_position(registry) >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


_READERS: weakref.WeakKeyDictionary[Registry, tuple[Db, Any]] = weakref.WeakKeyDictionary()


def _position_readers(registry: Registry) -> tuple[Db, Any]:
    # Made once per registry: a tracking recorder checks its tables when it is made,
    # which is most of the cost of a health check or a read-your-writes wait.
    readers = _READERS.get(registry)
    if readers is None:
        db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
        schema.ensure_schema(db)
        readers = (db, registry.factory.tracking_recorder())
        _READERS[registry] = readers
    return readers
