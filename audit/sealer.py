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

MAX_BACKOFF = 300.0


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
        key_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.audit = audit
        self.signer = signer
        self.key_file = key_file
        self._key_stamp = _stamp(key_file)
        self.every_events = every_events
        self.every_minutes = every_minutes
        self.witness_file = witness_file
        self.clock = clock
        self._lock = threading.Lock()
        self._sealed_position = audit.store.tail()[1] or 0
        self._sealed_at = clock()
        self._failures = 0
        self._retry_at = 0.0

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
            key_file=config.signing_key,
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
            if not self.due(position) or self.clock() < self._retry_at:
                return None
            try:
                return self._seal()
            except Exception:
                # Back off (1 s doubling to 5 min) so a broken witness file or a retired key
                # costs a log line now and then, not a failed seal on every poll.
                self._failures += 1
                self._retry_at = self.clock() + min(2.0 ** (self._failures - 1), MAX_BACKOFF)
                raise

    def seal(self) -> TreeHead:
        """Seal now, due or not."""
        with self._lock:
            return self._seal()

    def _seal(self) -> TreeHead:
        self._reload_key()
        head = self.audit.seal(self.signer, self.witness_file)
        self._sealed_position = self.audit.store.tail()[1] or 0
        self._sealed_at = self.clock()
        self._failures, self._retry_at = 0, 0.0
        return head

    def _reload_key(self) -> None:
        """Pick up a rotated key: `harbor keys rotate` replaces the file, so its stamp changes."""
        stamp = _stamp(self.key_file)
        if self.key_file is None or stamp == self._key_stamp:
            return
        self.signer = Signer.from_file(self.key_file)
        self._key_stamp = stamp
        log.info("signing key changed: now signing with key %s", self.signer.key_id)


def _stamp(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


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
            try:
                self.heads.append(self.sealer.seal())
            except Exception as e:  # shutting down: say why in one line, do not fail the stop
                log.error("the final seal was not made: %s", e)
                self.errors.append(e)

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
