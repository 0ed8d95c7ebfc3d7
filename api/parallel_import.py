"""`harbor import --jobs N`: the members of a file shared among N processes (PostgreSQL).

One process decides about one line per 80 µs of CPU, however fast the server
writes; a large file of paper records keeps one core busy and the others idle.
Members are independent of each other, so each worker process imports the lines
of its own members (a member's lines all go to the same worker, in file order),
through the same rules, batches and idempotency keys as ``import_file``. The unit
lines come first, stored by this process before the workers start.

What it gives up: a letter number two members of different workers both claim
is refused to the second at commit (its member is then reported as changed
while the import ran; a re-run names the taken number), where one process would
have named it at once. A file whose unit lines come after member lines (a unit
registered halfway through the history) is imported by one process.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore

from api.importer import UNIT_LINE, ImportReport, _keys, import_file, line_member
from domain.registry import Registry

SPAWN = multiprocessing.get_context("spawn")
PROGRESS_EVERY = 200  # lines between a worker's progress messages
MAX_JOBS = 64
NO_WORKER = 255  # the owner of a line this process imports itself (a unit line)


@dataclass(frozen=True)
class Share:
    """The line numbers one worker imports: ``owner[n] == worker``."""

    owner: bytes
    worker: int

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and number < len(self.owner) and (
            self.owner[number] == self.worker
        )


def plan(registry: Registry, path: Path, jobs: int) -> bytes | None:
    """Who imports each line (``owner[n]``): a worker by its member, NO_WORKER for a unit
    line (this process); None if a unit line follows a member's.

    A line that cannot be read goes to worker 0, which reports it as one process would.
    """
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs must be between 1 and {MAX_JOBS}")
    member_id_for = lru_cache(maxsize=65536)(registry.member_id_for)
    owner = bytearray()
    members_seen = False
    for number, text, _ in _keys(path):
        if len(owner) <= number:
            owner.extend(b"\0" * (number + 1 - len(owner)))
        member = line_member(text, member_id_for)  # a line it cannot tell goes to worker 0
        if member is UNIT_LINE:
            if members_seen:
                return None
            owner[number] = NO_WORKER
            continue
        members_seen = True
        owner[number] = member.int % jobs if isinstance(member, UUID) else 0
    return bytes(owner)


def on_postgres(registry: Registry) -> bool:
    """Parallel workers need a server: SQLite takes one writer at a time."""
    return isinstance(getattr(registry.recorder, "datastore", None), PostgresDatastore)


def import_in_parallel(
    registry: Registry,
    path: Path,
    *,
    jobs: int,
    batch_events: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``path`` with ``jobs`` worker processes (one process if the file needs it)."""
    owner = plan(registry, path, jobs) if jobs > 1 and on_postgres(registry) else None
    if owner is None:
        return import_file(registry, path, batch_events=batch_events, progress=progress)
    report = (
        import_file(registry, path, batch_events=batch_events, lines=Share(owner, NO_WORKER))
        if NO_WORKER in owner
        else ImportReport()
    )
    done = {"units": report.lines}
    if progress is not None:
        progress(report.lines)
    messages: Queue[tuple[str, int, Any]] = SPAWN.Queue()
    today = registry.clock()  # the workers decide on the same today as this process
    workers = [
        SPAWN.Process(
            target=_work,
            args=(
                dict(registry.env), today, path, Share(owner, k), batch_events, messages
            ),
            name=f"harbor-import-{k}",
        )
        for k in range(jobs)
    ]
    for worker in workers:
        worker.start()
    try:
        reports = _collect(workers, messages, done, progress)
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    for part in reports:
        report.lines += part.lines
        report.stored += part.stored
        report.already += part.already
        report.units += part.units
        report.problems += part.problems
        report.members |= part.members
    report.problems.sort(key=lambda p: p.line)
    report.processes = jobs
    return report


def _collect(
    workers: list[Any],
    messages: Queue[tuple[str, int, Any]],
    done: dict[Any, int],
    progress: Callable[[int], None] | None,
) -> list[ImportReport]:
    """Wait for every worker's report, passing their progress on."""
    reports: dict[int, ImportReport] = {}
    while len(reports) < len(workers):
        try:
            kind, k, payload = messages.get(timeout=1.0)
        except queue.Empty:
            dead = [w.name for i, w in enumerate(workers) if i not in reports and not w.is_alive()]
            if dead:
                raise RuntimeError(
                    f"import worker {dead[0]} ended without a report; what the workers"
                    " committed is stored — run the import again, it resumes"
                ) from None
            continue
        if kind == "progress":
            done[k] = payload
            if progress is not None:
                progress(sum(done.values()))
        elif kind == "done":
            reports[k] = payload
        else:
            raise RuntimeError(
                f"import worker {k} failed; what the workers committed is stored — fix the"
                f" cause and run the import again, it resumes:\n{payload}"
            )
    return [reports[k] for k in sorted(reports)]


def _work(
    env: dict[str, str],
    today: date,
    path: Path,
    share: Share,
    batch_events: int,
    messages: Queue[tuple[str, int, Any]],
) -> None:
    """(worker) Import this worker's share of the lines; report progress and the result."""
    try:
        registry = Registry(env, clock=lambda: today)
        try:

            def tell(lines: int) -> None:
                if lines % PROGRESS_EVERY == 0:
                    messages.put(("progress", share.worker, lines))

            report = import_file(
                registry, path, batch_events=batch_events, progress=tell, lines=share
            )
        finally:
            registry.close()
        messages.put(("progress", share.worker, report.lines))
        messages.put(("done", share.worker, report))
    except BaseException:
        messages.put(("failed", share.worker, traceback.format_exc()))
        raise
