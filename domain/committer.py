"""Group commit: concurrent commands of one process share a store transaction.

Each command is decided as before, on its member's latest version. Instead of
saving alone, its events (and receipt) join a queue; one committer thread
takes whatever has queued up — at most ``max_batch`` commands, waiting at
most ``max_wait`` seconds for more — and appends them in one transaction:
one table lock, one commit. Every command is acknowledged only after that
commit. If the shared transaction fails on a conflict (two commands on the
same member, a receipt or letter number taken), each command is committed on
its own instead, so one command's refusal never fails the others.

Only one thread writes, so notification ids keep committing in order, and
across processes the store's own append lock still orders them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import IntegrityError, Recording

from domain.receipts import ReceiptAt

Put = Callable[[list[Any], list[ReceiptAt]], Sequence[Recording[Any]]]


@dataclass
class _Job:
    events: list[Any]
    receipts: list[ReceiptAt]
    done: threading.Event = field(default_factory=threading.Event)
    recordings: list[Recording[Any]] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommitter:
    """Gathers concurrent appends into shared transactions."""

    def __init__(self, put: Put, *, max_batch: int = 64, max_wait: float = 0.0):
        self._put = put
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="harbor-group-commit", daemon=True)
        self._closed = False
        self.batches = 0
        self.commands = 0
        self._thread.start()

    def submit(self, events: list[Any], receipts: list[ReceiptAt]) -> list[Recording[Any]]:
        """Append ``events`` with their receipts; returns once they are committed."""
        if self._closed:
            raise RuntimeError("the group committer is closed")
        job = _Job(events, receipts)
        self._queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.recordings

    def close(self) -> None:
        """Finish what is queued, then stop the committer thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            deadline = time.monotonic() + self.max_wait
            stopping = False
            while len(batch) < self.max_batch:
                try:
                    remaining = deadline - time.monotonic()
                    more = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[_Job]) -> None:
        try:
            events: list[Any] = []
            receipts: list[ReceiptAt] = []
            for job in batch:
                offset = len(events)
                events.extend(job.events)
                receipts.extend(ReceiptAt(r.receipt, r.last_event + offset) for r in job.receipts)
            recordings = list(self._put(events, receipts))
            start = 0
            for job in batch:
                job.recordings = recordings[start : start + len(job.events)]
                start += len(job.events)
            self.batches += 1
            self.commands += len(batch)
        except IntegrityError as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                for job in batch:  # someone conflicts: let each stand or fall alone
                    self._commit([job])
                return
        except BaseException as error:  # the store is down: every command here failed
            for job in batch:
                job.error = error
        for job in batch:
            job.done.set()
