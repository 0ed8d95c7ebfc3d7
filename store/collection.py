"""Garbage collection during bulk work, and after loading long-lived data.

Bulk work: far fewer collections while it runs.
A fold or an import allocates millions of short-lived objects and makes few
reference cycles; with Python's default thresholds the collector ran over a
hundred times per 100k events and took a tenth of a rebuild's time and
about 8 % of an import's. The thresholds are process-wide, so the first bulk
job to start raises them and the last one to end puts them back.

Long-lived data (the member cache a server warms at start): collected once, then
frozen out of the collector's sight.

Serving: full collections a hundred times rarer, and every pause counted.
A server's member cache keeps hundreds of thousands of objects alive, and every
full collection walks all of them while the interpreter stops: with the
default thresholds ``harbor serve`` under load made one every two seconds,
each about 90 ms (10,000 cached members take 0.3 s), a twentieth of the
process's time. Younger generations are collected as before, so short-lived
reference cycles are still freed at once; only cycles among objects old enough
to have reached the oldest generation wait for the rarer full collection.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_LOCK = threading.Lock()
_running = 0  # bulk jobs under way in this process
_thresholds: tuple[int, int, int] = gc.get_threshold()
# Collections of the middle generation between two full ones while serving (Python's
# default is 10): with the default gen0 threshold, one full collection per 7 million or
# so net allocations of container objects — minutes apart under load.
SERVING_FULL_EVERY = 1000


@contextlib.contextmanager
def rare_collections(factor: int = 100) -> Iterator[None]:
    """Collect garbage ``factor`` times less often while the block runs (in every thread)."""
    global _running, _thresholds
    with _LOCK:
        if _running == 0:
            _thresholds = gc.get_threshold()
            gc.set_threshold(_thresholds[0] * factor, *_thresholds[1:])
        _running += 1
    try:
        yield
    finally:
        with _LOCK:
            _running -= 1
            if _running == 0:
                gc.set_threshold(*_thresholds)


def freeze_long_lived() -> None:
    """Collect once, then keep every object alive now out of the cyclic collector's sight.

    Warming the member cache creates millions of objects at once, all counted as new
    survivors until the next full collection, which then stops every thread for about
    170 ms (8,000 members) in the middle of traffic. Collected here instead, and frozen
    (``gc.freeze``), they are never scanned again. Nothing leaks: members hold no
    reference cycles, so one replaced in the cache is freed by reference counting.
    """
    gc.collect()
    gc.freeze()


def serving_collections() -> None:
    """Tune the collector for a long-running server: full collections rarer (see the top)."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, SERVING_FULL_EVERY)
    PAUSES.watch()


@dataclass
class Pauses:
    """How often, and for how long, the collector stopped this process, by generation."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _started: float = 0.0
    watching: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def watch(self) -> None:
        """Start counting (once per process; later calls do nothing)."""
        with self._lock:
            if not self.watching:
                gc.callbacks.append(self._observe)
                self.watching = True

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        # Called by the collector with the interpreter stopped: no lock needed, nothing slow.
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        pause = time.perf_counter() - self._started
        self.collections[generation] += 1
        self.seconds[generation] += pause
        if pause > self.longest[generation]:
            self.longest[generation] = pause


PAUSES = Pauses()
