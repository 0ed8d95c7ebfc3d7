"""Group commit: concurrent commands of one process share a store transaction.

Each command is decided as before, on its member's latest version. Instead of
saving alone, its events (and receipt) join a queue. A waiting thread whose
command is still queued becomes a leader when fewer than ``max_leaders``
commits are under way: it takes what has queued up —
at most ``max_batch`` commands, waiting at most ``max_wait`` seconds for more
— and appends them in one transaction (one table lock, one commit), while
the others wait for their turn or for their own commit. A lone command is
therefore committed on its own thread, with no hand-over. Every command is
acknowledged only after that commit. If the shared transaction fails on a
conflict (two commands on the same member, a receipt or letter number
taken), each command is committed on its own instead, so one command's
refusal never fails the others.

Notification ids keep committing in order however many leaders there are: every
append takes the store's table lock first, which orders transactions within a
process exactly as it orders them across processes. A second leader is what lets
the next transaction reach the server while the previous one waits for its
commit to be flushed, instead of after its thread has woken up again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
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
    done: bool = False
    leading: bool = False  # its thread holds one of the leader slots
    recordings: list[Recording[Any]] = field(default_factory=list)
    error: BaseException | None = None
    # Set when the job is done or its thread is given a leader slot: the state, read
    # under the committer's lock, says which.
    wake: threading.Event = field(default_factory=threading.Event)


class GroupCommitter:
    """Gathers concurrent appends into shared transactions."""

    def __init__(
        self, put: Put, *, max_batch: int = 64, max_wait: float = 0.0, max_leaders: int = 1
    ):
        self._put = put
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self.max_leaders = max(1, max_leaders)
        self._queue: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._leading = 0
        self._closed = False
        self.batches = 0
        self.commands = 0

    def submit(self, events: list[Any], receipts: list[ReceiptAt]) -> list[Recording[Any]]:
        """Append ``events`` with their receipts; returns once they are committed.

        A thread is woken only for its own command (done, or its turn to lead), never
        for everyone's: in a server, every thread woken for nothing takes the
        interpreter lock from the event loop.
        """
        job = _Job(events, receipts)
        with self._lock:
            if self._closed:
                raise RuntimeError("the group committer is closed")
            self._queue.append(job)
            if self._leading < self.max_leaders:
                self._leading += 1
                job.leading = True
        while True:
            if not job.leading:
                job.wake.wait()
                with self._lock:
                    job.wake.clear()
                    if job.done:
                        if job.leading:  # given a slot as its batch was committed
                            self._step_down(job)
                        break
                continue
            self._lead()
            with self._lock:
                if not job.done and job in self._queue:
                    continue  # still waiting for a batch: lead the next one too
                self._step_down(job)
                if job.done:
                    break
            # In another leader's batch, under way: wait for it.
        if job.error is not None:
            raise job.error
        return job.recordings

    def _step_down(self, job: _Job) -> None:
        """Give ``job``'s leader slot to the oldest queued job without one (under the lock)."""
        job.leading = False
        self._leading -= 1
        for waiting in self._queue:
            if not waiting.leading:
                waiting.leading = True
                self._leading += 1
                waiting.wake.set()
                return

    def _lead(self) -> None:
        """Take a batch from the queue and commit it (the caller holds a leader slot)."""
        if self.max_wait > 0:
            deadline = time.monotonic() + self.max_wait
            while len(self._queue) < self.max_batch and time.monotonic() < deadline:
                time.sleep(min(0.0005, self.max_wait))
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        if batch:
            self._commit(batch)

    def close(self) -> None:
        """Refuse new commands (those already queued are committed by their own threads)."""
        with self._lock:
            self._closed = True

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
        with self._lock:
            for job in batch:
                job.done = True
                job.wake.set()
