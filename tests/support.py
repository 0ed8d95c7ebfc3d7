"""Helpers shared by tests: the article's units and small counting helpers."""

from __future__ import annotations

from api.demo import load_units
from domain.registry import Actor, Registry

ADMIN = Actor("sh-org-dept", "test-admin")

def as_unit(code: str, who: str = "clerk") -> Actor:
    """An actor recording for ``code``."""
    return Actor(code, who)


def register_article_units(registry: Registry) -> None:
    """Register the eight units of cases.md (the org department registers the rest)."""
    load_units(registry, "test-admin")


def event_count(registry: Registry) -> int:
    """How many events the log holds (not just the highest position)."""
    total, start = 0, 1
    while True:
        page = registry.recorder.select_notifications(start, 1000)
        total += len(page)
        if len(page) < 1000:
            return total
        start = page[-1].id + 1
