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

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Notification, Tracking

from domain.member_events import EntryVoided, MemberEvent
from domain.member_state import MemberState, fold
from domain.registry import Registry
from domain.unit import Unit
from projections import rows, schema
from projections.db import Cursor, Db

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000
DEFAULT_CACHE = 5000
# SQLite allows a limited number of bound variables per statement.
_IN_CHUNK = 500


def tracking_name(generation: int) -> str:
    """The tracking record's application name for a generation."""
    return f"harbor-projections-g{generation}"


@dataclass
class BatchResult:
    """What one batch did."""

    events: int
    position: int


class Projector:
    """Folds the log into one generation of the read-model tables."""

    def __init__(
        self,
        registry: Registry,
        *,
        generation: int | None = None,
        batch_size: int = DEFAULT_BATCH,
        cache_size: int = DEFAULT_CACHE,
    ):
        self.registry = registry
        self.db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
        self.tracking = registry.factory.tracking_recorder()
        schema.ensure_schema(self.db)
        self.pinned = generation is not None
        self.generation = generation if generation is not None else schema.live_generation(self.db)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._members: OrderedDict[UUID, tuple[int, MemberState]] = OrderedDict()
        self._units: dict[UUID, Unit] = {}

    # --- positions ------------------------------------------------------------

    def position(self) -> int:
        """The last log position this generation has folded."""
        return self.tracking.max_tracking_id(tracking_name(self.generation)) or 0

    # --- running ----------------------------------------------------------------

    def run_once(self, *, stop: int | None = None, swap: bool = False) -> BatchResult:
        """Fold one batch (up to ``stop``); with ``swap``, make this generation live."""
        if not self.pinned:
            live = schema.live_generation(self.db)
            if live != self.generation:
                log.info("projections: generation %s is live now", live)
                self.generation = live
                self._forget()
        start = self.position()
        notes = self.registry.recorder.select_notifications(start + 1, self.batch_size, stop=stop)
        if not notes and not swap:
            return BatchResult(0, start)
        try:
            batch = self._fold(notes)
            with self.db.transaction() as cur:
                self._write(cur, batch)
                if notes:
                    self.tracking._insert_tracking(  # type: ignore[attr-defined]
                        cur.raw, Tracking(tracking_name(self.generation), notes[-1].id)
                    )
                if swap:
                    schema.point_views_at(self.db, cur, self.generation)
                    cur.execute(f"UPDATE {schema.STATE_TABLE} SET building = NULL WHERE id = 1")
        except IntegrityError:
            # Another runner committed this batch first: start again from its position.
            log.warning("projections: batch after %s was already folded elsewhere", start)
            self._forget()
            return BatchResult(0, self.position())
        except BaseException:
            self._forget()  # the cache may hold states past the committed position
            raise
        return BatchResult(len(notes), notes[-1].id if notes else start)

    def catch_up(
        self, *, stop: int | None = None, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Fold batches until the log (or ``stop``) is reached; returns events folded."""
        done = 0
        while True:
            result = self.run_once(stop=stop)
            done += result.events
            if progress is not None:
                progress(result.events, result.position)
            if result.events == 0:
                return done

    def follow(self, stop: threading.Event, *, poll_seconds: float = 0.2) -> None:
        """Keep folding new events until ``stop`` is set (short polling, both backends)."""
        while not stop.is_set():
            try:
                result = self.run_once()
            except Exception:  # keep following through a database restart
                log.exception("projections: batch failed; retrying")
                stop.wait(1.0)
                continue
            if result.events == 0:
                stop.wait(poll_seconds)

    # --- folding ------------------------------------------------------------------

    def _fold(self, notes: Sequence[Notification]) -> _Batch:
        batch = _Batch()
        mapper = self.registry.mapper
        for note in notes:
            event = mapper.to_domain_event(note)
            if isinstance(event, MemberEvent):
                member_id = event.originator_id
                if isinstance(event, EntryVoided):
                    state = self._fold_from_store(member_id, event.originator_version)
                    batch.voids.append((str(member_id), event.voided_version, event.reason))
                else:
                    state = self._member_state(member_id, event.originator_version - 1)
                    event.evolve(state)
                self._remember(member_id, event.originator_version, state)
                batch.members[member_id] = (event.originator_version, state)
                batch.trail.append(rows.trail_row(note.id, event))
            elif isinstance(event, Unit.Event):
                unit = event.mutate(self._unit_before(event))
                assert isinstance(unit, Unit)
                self._units[event.originator_id] = unit
                batch.units[unit.code] = unit
        return batch

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

    def _member_state(self, member_id: UUID, version: int) -> MemberState:
        cached = self._members.get(member_id)
        if cached is not None and cached[0] == version:
            self._members.move_to_end(member_id)
            return cached[1]
        if version == 0:
            return MemberState()
        return self._fold_from_store(member_id, version)

    def _fold_from_store(self, member_id: UUID, version: int) -> MemberState:
        stored = self.registry.recorder.select_events(member_id, lte=version)
        events = [self.registry.mapper.to_domain_event(s) for s in stored]
        return fold(e for e in events if isinstance(e, MemberEvent))

    def _remember(self, member_id: UUID, version: int, state: MemberState) -> None:
        self._members[member_id] = (version, state)
        self._members.move_to_end(member_id)
        while len(self._members) > self.cache_size:
            self._members.popitem(last=False)

    def _forget(self) -> None:
        self._members.clear()
        self._units.clear()

    # --- writing ---------------------------------------------------------------------

    def _write(self, cur: Cursor, batch: _Batch) -> None:
        g = self.generation
        if batch.units:
            _upsert(
                cur,
                schema.table(g, "units"),
                "units",
                [rows.unit_row(u) for u in batch.units.values()],
            )
        if batch.members:
            member_ids = [str(m) for m in batch.members]
            _upsert(
                cur,
                schema.table(g, "members"),
                "members",
                [
                    rows.member_row(mid, version, state)
                    for mid, (version, state) in batch.members.items()
                ],
            )
            per_member: dict[str, list[Any]] = {
                "cases": [],
                "referrals": [],
                "letters": [],
                "overrides": [],
            }
            for mid, (_, state) in batch.members.items():
                per_member["cases"] += rows.case_rows(mid, state)
                per_member["referrals"] += rows.referral_rows(mid, state)
                per_member["letters"] += rows.letter_rows(mid, state)
                per_member["overrides"] += rows.override_rows(mid, state)
            for name, new_rows in per_member.items():
                _delete_members(cur, schema.table(g, name), member_ids)
                _insert(cur, schema.table(g, name), name, new_rows)
        _insert(cur, schema.table(g, "trail"), "trail", batch.trail)
        for member_id, version, reason in batch.voids:
            cur.execute(
                f"UPDATE {schema.table(g, 'trail')} SET voided = 1, void_reason = ?"
                " WHERE member_id = ? AND version = ?",
                (reason, member_id, version),
            )


@dataclass
class _Batch:
    members: dict[UUID, tuple[int, MemberState]]
    units: dict[str, Unit]
    trail: list[rows.Row]
    voids: list[tuple[str, int, str]]

    def __init__(self) -> None:
        self.members = {}
        self.units = {}
        self.trail = []
        self.voids = []


def _insert(cur: Cursor, table: str, name: str, new_rows: Sequence[rows.Row]) -> None:
    columns = schema.COLUMNS[name]
    cur.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        new_rows,
    )


def _upsert(cur: Cursor, table: str, name: str, new_rows: Sequence[rows.Row]) -> None:
    columns = schema.COLUMNS[name]
    key = columns[0]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    cur.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}",
        new_rows,
    )


def _delete_members(cur: Cursor, table: str, member_ids: list[str]) -> None:
    for i in range(0, len(member_ids), _IN_CHUNK):
        chunk = member_ids[i : i + _IN_CHUNK]
        cur.execute(
            f"DELETE FROM {table} WHERE member_id IN ({', '.join('?' * len(chunk))})", chunk
        )


def rebuild(
    registry: Registry,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Build a fresh generation from position zero beside the live one, then swap it in.

    Returns the new live generation. Readers see the old tables until the swap.
    """
    db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
    schema.ensure_schema(db)
    generation = schema.start_generation(db)
    projector = Projector(registry, generation=generation, batch_size=batch_size)
    projector.catch_up(progress=progress)
    projector.run_once(swap=True)  # the last few events and the swap, in one transaction
    return generation


def wait_for(registry: Registry, position: int, *, timeout: float = 5.0) -> bool:
    """Wait until the live projections have folded ``position``; False on timeout."""
    db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
    tracking = registry.factory.tracking_recorder()
    deadline = time.monotonic() + timeout
    while True:
        generation = schema.live_generation(db)
        if (tracking.max_tracking_id(tracking_name(generation)) or 0) >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
