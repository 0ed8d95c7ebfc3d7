"""Credentials: bearer tokens naming a unit, a role and a holder. Only hashes are kept."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

from store.recorders import SCHEMA_LOCK_ID
from store.sql import Db

TABLE = "harbor_tokens"
ROLES = ("unit", "auditor", "admin")


@dataclass(frozen=True)
class Credential:
    """Who a valid token speaks for."""

    token_id: str
    unit_id: str
    role: str
    holder: str
    expires_on: date | None


@dataclass(frozen=True)
class TokenInfo:
    """A token as `harbor tokens list` shows it (never the token itself)."""

    token_id: str
    unit_id: str
    role: str
    holder: str
    issued_at: str
    expires_on: str | None
    revoked_at: str | None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """Issue, check, list and revoke tokens, in the store's own database."""

    def __init__(self, db: Db, *, cache_seconds: float = 1.0):
        """``cache_seconds``: how long a checked token is trusted without asking the store.

        Revoking through this store takes effect at once; a revocation by another
        process (``harbor tokens revoke``) within that time.
        """
        self.db = db
        self.cache_seconds = cache_seconds
        self._checked: dict[str, tuple[float, tuple[str, ...] | None]] = {}
        with db.transaction() as cur:
            if db.backend == "postgres":  # two CREATE TABLE IF NOT EXISTS at once can collide
                cur.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_ID,))
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (token_hash TEXT PRIMARY KEY,"
                " token_id TEXT UNIQUE NOT NULL, unit_id TEXT NOT NULL, role TEXT NOT NULL,"
                " holder TEXT NOT NULL, issued_at TEXT NOT NULL, expires_on TEXT,"
                " revoked_at TEXT)"
            )

    def issue(self, unit_id: str, role: str, holder: str, expires_on: date | None = None) -> str:
        """A new token (returned once, never stored in clear)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        token = "hbr_" + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(4)
        with self.db.transaction() as cur:
            cur.execute(
                f"INSERT INTO {TABLE} (token_hash, token_id, unit_id, role, holder, issued_at,"
                " expires_on) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    _hash(token),
                    token_id,
                    unit_id,
                    role,
                    holder,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    expires_on.isoformat() if expires_on else None,
                ),
            )
        return token

    def check_cached(self, token: str, today: date) -> tuple[bool, Credential | None]:
        """(True, ``check``'s answer) when it needs no store read; else (False, None)."""
        cached = self._cached(_hash(token))
        if cached is None:
            return False, None
        return True, _credential(cached[0], today)

    def _cached(self, digest: str) -> tuple[tuple[str, ...] | None] | None:
        """(row,) as checked within ``cache_seconds``, or None when the store must be asked."""
        cached = self._checked.get(digest)
        return (cached[1],) if cached is not None and cached[0] > time.monotonic() else None

    def check(self, token: str, today: date) -> Credential | None:
        """The credential of a valid token; None if unknown, expired or revoked."""
        digest = _hash(token)
        cached = self._cached(digest)
        if cached is not None:
            row = cached[0]
        else:
            rows = self.db.query(
                f"SELECT token_id, unit_id, role, holder, expires_on, revoked_at FROM {TABLE}"
                " WHERE token_hash = ?",
                (digest,),
            )
            row = tuple(rows[0]) if rows else None
            if self.cache_seconds > 0:
                if len(self._checked) > 10_000:
                    self._checked.clear()
                self._checked[digest] = (time.monotonic() + self.cache_seconds, row)
        return _credential(row, today)

    def list(self) -> list[TokenInfo]:
        """Every token ever issued, newest first."""
        rows = self.db.query(
            f"SELECT token_id, unit_id, role, holder, issued_at, expires_on, revoked_at"
            f" FROM {TABLE} ORDER BY issued_at DESC"
        )
        return [TokenInfo(*row) for row in rows]

    def revoke(self, token_id: str) -> bool:
        """Revoke one token by its id; False if there is no such live token."""
        return self._revoke("token_id = ?", (token_id,)) > 0

    def revoke_unit(self, unit_id: str) -> int:
        """Revoke every token of a unit (when it is dissolved); returns how many."""
        return self._revoke("unit_id = ?", (unit_id,))

    def _revoke(self, where: str, params: tuple[str, ...]) -> int:
        with self.db.transaction() as cur:
            cur.execute(
                f"SELECT COUNT(*) FROM {TABLE} WHERE {where} AND revoked_at IS NULL", params
            )
            row = cur.fetchone()
            cur.execute(
                f"UPDATE {TABLE} SET revoked_at = ? WHERE {where} AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(timespec="seconds"), *params),
            )
        self._checked.clear()  # after the commit: a check meanwhile may have cached the row
        return int(row[0]) if row else 0


def _credential(row: tuple[str, ...] | None, today: date) -> Credential | None:
    """The credential a stored token row gives today, if it is valid."""
    if row is None:
        return None
    token_id, unit_id, role, holder, expires_on, revoked_at = row
    expires = date.fromisoformat(expires_on) if expires_on else None
    if revoked_at is not None or (expires is not None and today > expires):
        return None
    return Credential(token_id, unit_id, role, holder, expires)
