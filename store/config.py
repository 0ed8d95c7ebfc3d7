"""Where the events live: ``HARBOR_DATABASE_URL`` turned into eventsourcing settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_DATABASE_URL = "sqlite:///./harbor.db"
# The library's JSON format, encoded and decoded faster (store/transcoder.py).
TRANSCODER_TOPIC = "store.transcoder:FastJSONTranscoder"


@dataclass(frozen=True)
class StoreConfig:
    """A parsed database URL."""

    url: str
    backend: str  # "sqlite" or "postgres"
    env: dict[str, str]

    @property
    def display(self) -> str:
        """The URL with any password hidden."""
        parsed = urlparse(self.url)
        if parsed.password:
            return self.url.replace(f":{parsed.password}@", ":***@")
        return self.url


def database_url() -> str:
    """The configured URL (``HARBOR_DATABASE_URL``), or the embedded default."""
    return os.environ.get("HARBOR_DATABASE_URL") or DEFAULT_DATABASE_URL


def sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite:///path`` URL names (None for another URL or ``:memory:``).

    Unlike ``parse_database_url`` it creates nothing: a command that only reads can
    tell that the store does not exist before opening it would create one.
    """
    if urlparse(url).scheme != "sqlite" or not url.startswith("sqlite:///"):
        return None
    path = _sqlite_path(url)
    return Path(path).expanduser() if path and path != ":memory:" else None


def _sqlite_path(url: str) -> str:
    # sqlite:///relative/path and sqlite:////absolute/path, as SQLAlchemy spells them.
    return unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""


def parse_database_url(url: str) -> StoreConfig:
    """Settings for ``sqlite:///path`` or ``postgresql://user:password@host:port/db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = _sqlite_path(url)
        if not path:
            raise ValueError(f"HARBOR_DATABASE_URL {url!r}: write sqlite:///path/to/file.db")
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return StoreConfig(
            url=url,
            backend="sqlite",
            env={
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(Path(path).expanduser()) if path != ":memory:" else path,
                "SQLITE_LOCK_TIMEOUT": "30",
                "APPLICATION_RECORDER_TOPIC": "store.recorders:SQLiteRecorder",
                "TRANSCODER_TOPIC": TRANSCODER_TOPIC,
            },
        )
    if parsed.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        dbname = unquote(parsed.path.lstrip("/"))
        if not dbname:
            raise ValueError(f"HARBOR_DATABASE_URL {url!r}: name the database after the last /")
        return StoreConfig(
            url=url,
            backend="postgres",
            env={
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": dbname,
                "POSTGRES_HOST": unquote(parsed.hostname or "127.0.0.1"),
                "POSTGRES_PORT": str(parsed.port or 5432),
                "POSTGRES_USER": unquote(parsed.username or "postgres"),
                "POSTGRES_PASSWORD": unquote(parsed.password or ""),
                "POSTGRES_CONNECT_TIMEOUT": "5",
                "POSTGRES_POOL_SIZE": "5",
                "POSTGRES_MAX_OVERFLOW": "10",
                # No ping per checkout: a connection broken by a server restart fails
                # its statement, which the library retries on a fresh connection.
                "POSTGRES_PRE_PING": "n",
                "APPLICATION_RECORDER_TOPIC": "store.recorders:PostgresRecorder",
                "TRANSCODER_TOPIC": TRANSCODER_TOPIC,
            },
        )
    raise ValueError(
        f"HARBOR_DATABASE_URL {url!r} is neither sqlite:///path nor postgresql://user@host/db"
    )
