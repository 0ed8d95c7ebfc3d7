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

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import IntegrityError, Recording

from domain.receipts import ReceiptAt

log = logging.getLogger(__name__)

Put = Callable[[list[Any], list[ReceiptAt]], Sequence[Recording[Any]]]


_NOT_WAITED = threading.Event()  # a called-back job's: nobody waits on it


@dataclass
class _Job:
    events: list[Any]
    receipts: list[ReceiptAt]
    done: bool = False
    leading: bool = False  # its thread holds one of the leader slots
    recordings: list[Recording[Any]] = field(default_factory=list)
    error: BaseException | None = None
    # A job submitted to be called back (no thread waits for it): a pump leads for it.
    callback: Callable[[_Job], None] | None = None
    # For a waiting thread: set when the job is done or the thread is given a leader
    # slot (the state, read under the committer's lock, says which).
    wake: threading.Event = field(default_factory=lambda: _NOT_WAITED)

    def outcome(self) -> list[Recording[Any]]:
        """Its recordings, or the error its commit failed with, raised."""
        if self.error is not None:
            raise self.error
        return self.recordings


class Commit:
    """A command's events on their way into a committer: wait for them, or be called back."""

    def __init__(self, committer: GroupCommitter, events: list[Any], receipts: list[ReceiptAt]):
        self.committer = committer
        self.events = events
        self.receipts = receipts

    def __call__(self) -> list[Recording[Any]]:
        """Wait here until they are committed."""
        return self.committer.submit(self.events, self.receipts)

    def start(self, done: Callable[[_Job], None]) -> None:
        """Queue them and return at once; ``done`` is called (on a committing thread) after."""
        self.committer.submit_later(self.events, self.receipts, done)


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
        # Threads that lead for called-back jobs, started with the first of them.
        self._pumps: list[threading.Thread] = []
        self._pump_turns = 0  # leader slots granted to pumps, not yet taken up
        self._pump_wanted = threading.Condition(self._lock)

    def submit_later(
        self, events: list[Any], receipts: list[ReceiptAt], done: Callable[[_Job], None]
    ) -> None:
        """Queue ``events`` and return; ``done(job)`` is called once they are committed.

        For a caller that must not block (a server's event loop): no thread of its waits,
        so one of ``max_leaders`` pump threads leads the batch it joins.
        """
        job = _Job(events, receipts, callback=done)
        with self._lock:
            if self._closed:
                raise RuntimeError("the group committer is closed")
            if not self._pumps:
                for n in range(self.max_leaders):
                    pump = threading.Thread(
                        target=self._pump, daemon=True, name=f"harbor-commit-pump-{n}"
                    )
                    pump.start()
                    self._pumps.append(pump)
            self._queue.append(job)
            self._grant()

    def _pump(self) -> None:
        while True:
            with self._lock:
                while not self._pump_turns:
                    if self._closed and not self._queue:
                        return  # nothing left to lead, and nothing more will come
                    self._pump_wanted.wait()
                self._pump_turns -= 1  # the slot was counted when granted
            self._lead()
            with self._lock:
                self._leading -= 1
                self._grant()

    def submit(self, events: list[Any], receipts: list[ReceiptAt]) -> list[Recording[Any]]:
        """Append ``events`` with their receipts; returns once they are committed.

        A thread is woken only for its own command (done, or its turn to lead), never
        for everyone's: in a server, every thread woken for nothing takes the
        interpreter lock from the event loop.
        """
        job = _Job(events, receipts, wake=threading.Event())
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
        """Give up ``job``'s leader slot (under the lock)."""
        job.leading = False
        self._leading -= 1
        self._grant()

    def _grant(self) -> None:
        """A free leader slot to the oldest queued job without one (under the lock): to its
        thread, or to a pump if no thread waits for it."""
        if self._leading >= self.max_leaders:
            return
        for waiting in self._queue:
            if waiting.leading:
                continue
            if waiting.callback is None:
                self._leading += 1
                waiting.leading = True
                waiting.wake.set()
            elif self._pump_turns < len(self._pumps):  # else every pump is on its way
                self._leading += 1
                self._pump_turns += 1
                self._pump_wanted.notify()
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
        """Refuse new commands (those already queued are committed by their own threads or
        the pumps, which then end)."""
        with self._lock:
            self._closed = True
            self._pump_wanted.notify_all()

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
            with self._lock:  # two leaders may count at once
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
                if job.callback is None:
                    job.wake.set()
        for job in batch:
            if job.callback is not None:
                try:
                    job.callback(job)
                except Exception:  # the caller's code: it must not stop this leader
                    log.exception("a group commit call-back failed")
