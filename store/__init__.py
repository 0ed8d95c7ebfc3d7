"""The event store: eventsourcing's recorders on SQLite or PostgreSQL, configured from a URL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from domain.registry import Registry, today_in_shanghai
from store.config import StoreConfig, database_url, parse_database_url


def open_registry(
    url: str | None = None,
    *,
    clock: Callable[[], date] = today_in_shanghai,
    extra_env: dict[str, str] | None = None,
) -> Registry:
    """A Registry on ``url`` (default ``HARBOR_DATABASE_URL``); creates the schema if missing."""
    config = parse_database_url(url or database_url())
    return Registry({**config.env, **(extra_env or {})}, clock=clock)


__all__ = ["StoreConfig", "database_url", "open_registry", "parse_database_url"]
