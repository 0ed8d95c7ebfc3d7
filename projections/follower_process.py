"""The projection follower in a process of its own, restarted by the server if it dies.

``harbor serve`` on PostgreSQL runs the follower here rather than as a thread of
the server. Python runs one thread at a time per process: as a thread, the
follower's folding (a quarter of a millisecond per event) took the interpreter
from the rest of the server, and under load every request queued behind it (the
measurements: bench/README.md, "HTTP API", session 6's change (1)). A process of
its own runs on the other core.

It follows with the projection lease (store/lease.py), so a second server on the
same database, or a ``harbor project`` beside it, stands by instead of folding
the same events. On SQLite ``harbor serve`` runs a thread instead (``--follower
process`` becomes ``thread``), without a lease.

The child exits once its parent is gone: ``daemon`` only covers a parent that
stops itself, and a server killed outright (SIGKILL, the OOM killer) would leave
an orphan holding the lease, behind which a restarted server's follower stands by
for ever. A child that exits without the server asking it to (a crash, the OOM
killer, a SIGTERM sent to it alone) is started again; only ``stop`` ends it for good.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from domain.registry import Registry
from projections.runner import Projector
from store.lease import lease_for

log = logging.getLogger(__name__)

RESTART_SECONDS = 1.0  # pause before a follower that died is started again
START_SECONDS = 60.0  # start(wait=True) gives a starting child this long
STOP_SECONDS = 10.0  # a follower asked to stop has this long to finish its batch
ORPHAN_CHECK_SECONDS = 0.5  # how often the child looks whether its parent still runs
# A fresh interpreter: forking a server with open connections and threads is unsafe.
SPAWN = multiprocessing.get_context("spawn")


class FollowerProcess:
    """Runs ``Projector.follow`` in a child process, and starts it again if it exits."""

    def __init__(self, env: Mapping[str, str], *, poll_seconds: float = 0.05):
        self._env = dict(env)
        self._poll = poll_seconds
        self._stopping = threading.Event()
        self._process: BaseProcess | None = None
        self._supervisor = threading.Thread(
            target=self._supervise, daemon=True, name="harbor-follower-supervisor"
        )
        self.starts = 0  # how many times a child was started (1 unless one died)

    @classmethod
    def of(cls, registry: Registry, *, poll_seconds: float = 0.05) -> FollowerProcess:
        """A follower process on the same store (and settings) as ``registry``."""
        return cls(registry.env, poll_seconds=poll_seconds)

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before it starts or after it stops)."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def start(self, *, wait: bool = False) -> FollowerProcess:
        """Start the child and the thread that restarts it if it dies.

        With ``wait``, return once the child has opened the store and is about to
        follow (a spawned interpreter takes about half a second to get there).
        """
        ready = self._start_child()
        if wait:
            if not ready.poll(START_SECONDS):
                raise RuntimeError(f"the projection follower did not start in {START_SECONDS} s")
            try:
                ready.recv()
            except EOFError:
                raise RuntimeError("the projection follower failed to start") from None
        ready.close()
        self._supervisor.start()
        return self

    def winding_down(self) -> None:
        """The server is shutting down: a child that exits from now on (a SIGTERM sent to
        the whole process group) is not started again; ``stop`` still ends it."""
        self._stopping.set()

    def stop(self) -> None:
        """Ask the child to finish its batch and exit; kill it if it does not in time."""
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)
        process = self._process
        if process is not None:
            # SIGTERM, not a shared multiprocessing.Event: a child killed while waiting on
            # one leaves it unusable, and setting it would then block forever.
            process.terminate()
            process.join(timeout=STOP_SECONDS)
            if process.is_alive():
                log.warning("projection follower did not stop in %.0f s; killing it", STOP_SECONDS)
                process.kill()
                process.join(timeout=5)

    def _start_child(self) -> Connection:
        ready, tell = SPAWN.Pipe(duplex=False)
        process = SPAWN.Process(
            target=follow_in_child,
            args=(self._env, self._poll, tell, os.getpid()),
            name="harbor-projections",
            # Ended at the server's exit even without stop(); a server killed outright
            # leaves it to notice by itself (_exit_when_orphaned).
            daemon=True,
        )
        process.start()
        tell.close()  # the child's end: once it exits, waiting on ``ready`` ends too
        self._process = process
        self.starts += 1
        return ready

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            process.join(timeout=0.5)
            if process.is_alive() or self._stopping.is_set():
                continue
            # Not asked to stop by stop(): whatever ended it (a crash, the OOM killer, a
            # SIGTERM sent to it alone), projections would freeze without it. A SIGTERM
            # to the whole process group reaches the server too, whose stop() then
            # ends the one started here.
            log.warning(
                "projection follower exited (code %s); starting it again in %.0f s",
                process.exitcode,
                RESTART_SECONDS,
            )
            if self._stopping.wait(RESTART_SECONDS):
                return
            self._start_child().close()


def follow_in_child(
    env: Mapping[str, str], poll_seconds: float, ready: Connection, parent: int
) -> None:
    """(child) Keep projections current until SIGTERM arrives, or process ``parent`` is gone."""
    # Ctrl-C at a terminal reaches the whole process group: the server stops this
    # process itself, after its own requests, so the follower ignores the keypress.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    threading.Thread(
        target=_exit_when_orphaned, args=(parent, stopped), daemon=True, name="harbor-orphan-check"
    ).start()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    registry = Registry(dict(env))
    try:
        projector = Projector(registry)
        with contextlib.suppress(OSError):  # a server that did not wait has closed its end
            ready.send(True)
        ready.close()
        projector.follow(stopped, poll_seconds=poll_seconds, lease=lease_for(registry))
    finally:
        registry.close()


def _exit_when_orphaned(parent: int, stopped: threading.Event) -> None:
    """(child) Stop following once ``parent`` is no longer this process's parent.

    An orphan is adopted by init (or a subreaper), so its parent's id changes. It
    finishes its batch and exits, releasing the lease; one that does not manage to in
    ``STOP_SECONDS`` (stuck on an unreachable database) exits at once all the same:
    its connections, and with them the lease, end with the process.
    """
    while not stopped.wait(ORPHAN_CHECK_SECONDS):
        if os.getppid() != parent:
            log.warning("projection follower: the server (pid %s) is gone; exiting", parent)
            stopped.set()
            time.sleep(STOP_SECONDS)
            os._exit(1)
