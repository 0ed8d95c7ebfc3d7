"""Sealing while serving: a tree head every N events or M minutes.

``Sealer.maybe_seal()`` costs one ``MAX(notification_id)`` query when nothing is
due, so a server may call it after every command; ``BackgroundSealer`` calls it
from a daemon thread instead::

    sealer = Sealer.from_config(registry.recorder)       # HARBOR_SEAL_EVERY_EVENTS / _MINUTES
    with BackgroundSealer(sealer, poll_seconds=1.0):
        serve()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from audit.config import AuditConfig
from audit.keys import Signer, TreeHead
from audit.log import AuditLog

log = logging.getLogger(__name__)


class Sealer:
    """Decides when a new tree head is due and signs it."""

    def __init__(
        self,
        audit: AuditLog,
        signer: Signer,
        *,
        every_events: int = 1000,
        every_minutes: float = 10.0,
        witness_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.signer = signer
        self.every_events = every_events
        self.every_minutes = every_minutes
        self.witness_file = witness_file
        self.clock = clock
        self._lock = threading.Lock()
        self._sealed_position = audit.store.tail()[1] or 0
        self._sealed_at = clock()

    @classmethod
    def from_config(cls, recorder: Any, config: AuditConfig | None = None) -> Sealer:
        """A sealer on ``recorder``'s log with the configured key, witness file and cadence."""
        config = config or AuditConfig.from_env()
        return cls(
            AuditLog(recorder),
            Signer.from_file(config.signing_key),
            every_events=config.seal_every_events,
            every_minutes=config.seal_every_minutes,
            witness_file=config.witness_file,
        )

    def due(self, position: int) -> bool:
        """Is a head due, with the log at ``position``? (Something new, and N or M reached.)"""
        new = position - self._sealed_position
        if new <= 0:
            return False
        by_count = self.every_events > 0 and new >= self.every_events
        by_time = (
            self.every_minutes > 0 and self.clock() - self._sealed_at >= self.every_minutes * 60
        )
        return by_count or by_time

    def maybe_seal(self) -> TreeHead | None:
        """Seal when due; returns the new head, or None when nothing was due."""
        with self._lock:
            position = int(self.audit.recorder.max_notification_id() or 0)
            if not self.due(position):
                return None
            return self._seal()

    def seal(self) -> TreeHead:
        """Seal now, due or not."""
        with self._lock:
            return self._seal()

    def _seal(self) -> TreeHead:
        head = self.audit.seal(self.signer, self.witness_file)
        self._sealed_position = self.audit.store.tail()[1] or 0
        self._sealed_at = self.clock()
        return head


class BackgroundSealer:
    """A daemon thread calling ``sealer.maybe_seal()`` every ``poll_seconds``."""

    def __init__(self, sealer: Sealer, *, poll_seconds: float = 1.0) -> None:
        self.sealer = sealer
        self.poll_seconds = poll_seconds
        self.heads: list[TreeHead] = []
        self.errors: list[Exception] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harbor-sealer", daemon=True)

    def start(self) -> BackgroundSealer:
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self, *, final_seal: bool = False, timeout: float = 30.0) -> None:
        """Stop the thread (and seal whatever is left when ``final_seal``)."""
        self._stop.set()
        self._thread.join(timeout)
        if final_seal:
            self.heads.append(self.sealer.seal())

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                head = self.sealer.maybe_seal()
            except Exception as e:  # keep serving; the next poll tries again
                log.exception("sealing failed")
                self.errors.append(e)
                continue
            if head is not None:
                self.heads.append(head)

    def __enter__(self) -> BackgroundSealer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
