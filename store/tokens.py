"""Credentials: bearer tokens naming a unit, a role and a holder. Only hashes are kept."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from domain.registry import today_in_shanghai
from store.recorders import SCHEMA_LOCK_ID
from store.sql import Db

TABLE = "harbor_tokens"
ROLES = ("unit", "auditor", "admin")

# Every credential expires (DESIGN.md "Security"): a token that is lost, copied or left
# with someone who moved on stops acting by itself, even if nobody thinks to revoke it.
# These are the only lifetimes; the CLI, `harbor serve --admin-token` and any other issuer
# take them from here.
# - unit and auditor: a year, so a clerk's token outlives the cases in hand (a transfer
#   takes weeks to months) and is renewed once a year, not mid-case;
# - admin: a month — it registers and dissolves units, so a leaked one must not last, and
#   an admin token is wanted for setting up, not for daily work.
DEFAULT_LIFETIME: dict[str, timedelta] = {
    "unit": timedelta(days=365),
    "auditor": timedelta(days=365),
    "admin": timedelta(days=30),
}
# No token, whatever expiry is asked for, lives longer than this (about two years).
MAX_LIFETIME = timedelta(days=730)
LEGACY_NO_EXPIRY = "no expiry (issued before expiry was required; revoke and reissue)"


class ExpiryRefused(ValueError):
    """An expiry a new token may not have: in the past, or too far ahead."""


def default_expiry(role: str, today: date) -> date:
    """The last day a token issued ``today`` for ``role`` is valid, unless one is chosen."""
    if role not in DEFAULT_LIFETIME:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return today + DEFAULT_LIFETIME[role]


def check_expiry(expires_on: date, today: date, *, allow_past: bool = False) -> date:
    """``expires_on`` if a token issued ``today`` may have it; else ExpiryRefused.

    A day before ``today`` would issue a token that never acts (``allow_past`` lets
    tests make such tokens); one beyond ``MAX_LIFETIME`` a token that hardly expires.
    """
    latest = today + MAX_LIFETIME
    if expires_on < today and not allow_past:
        raise ExpiryRefused(
            f"expiry {expires_on} is in the past (today is {today}); give today or a later day"
        )
    if expires_on > latest:
        raise ExpiryRefused(
            f"expiry {expires_on} is more than {MAX_LIFETIME.days} days ahead; give"
            f" {latest} or earlier (issue a new token when this one runs out)"
        )
    return expires_on


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
    expires_on: str | None  # None only for tokens issued before expiry was required
    revoked_at: str | None

    @property
    def state(self) -> str:
        """Revoked, its expiry, or the warning a token from before expiry was required gets."""
        if self.revoked_at:
            return f"revoked {self.revoked_at}"
        return f"expires {self.expires_on}" if self.expires_on else LEGACY_NO_EXPIRY

    def state_on(self, today: date) -> str:
        """``state``, saying ``expired`` once the expiry day has passed."""
        if not self.revoked_at and self.expires_on and self.expires_on < today.isoformat():
            return f"expired {self.expires_on}"
        return self.state


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
        # Bumped by every revocation once committed: a check that read its row before
        # then does not cache it (it would keep a revoked token alive for cache_seconds).
        self._revocations = 0
        self._caching = threading.Lock()  # the test and the write of a cache entry as one
        with db.transaction() as cur:
            if db.backend == "postgres":  # two CREATE TABLE IF NOT EXISTS at once can collide
                cur.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK_ID,))
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (token_hash TEXT PRIMARY KEY,"
                " token_id TEXT UNIQUE NOT NULL, unit_id TEXT NOT NULL, role TEXT NOT NULL,"
                " holder TEXT NOT NULL, issued_at TEXT NOT NULL, expires_on TEXT,"
                " revoked_at TEXT)"
            )

    def issue(
        self,
        unit_id: str,
        role: str,
        holder: str,
        expires_on: date | None = None,
        *,
        today: date | None = None,
    ) -> str:
        """A new token (returned once, never stored in clear).

        It is valid up to and including ``expires_on``: by default ``DEFAULT_LIFETIME``
        from ``today`` (the registry's today; Shanghai's by default), and never more
        than ``MAX_LIFETIME`` ahead (ExpiryRefused). A day already past is stored as
        given — the token never acts; callers taking the day from a person refuse it
        first with ``check_expiry``.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        day = today or today_in_shanghai()
        if expires_on is None:
            expires_on = default_expiry(role, day)
        check_expiry(expires_on, day, allow_past=True)
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
                    expires_on.isoformat(),
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
            revocations = self._revocations
            rows = self.db.query(
                f"SELECT token_id, unit_id, role, holder, expires_on, revoked_at FROM {TABLE}"
                " WHERE token_hash = ?",
                (digest,),
            )
            row = tuple(rows[0]) if rows else None
            if self.cache_seconds > 0:
                with self._caching:
                    if revocations == self._revocations:
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

    def revoke_holder(self, holder: str) -> int:
        """Revoke every live token issued to ``holder``; returns how many."""
        return self._revoke("holder = ?", (holder,))

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
        with self._caching:
            self._revocations += 1  # after the commit: checks that read before it cache nothing
            self._checked.clear()  # and rows they cached already are dropped
        return int(row[0]) if row else 0


def _credential(row: tuple[str, ...] | None, today: date) -> Credential | None:
    """The credential a stored token row gives today, if it is valid."""
    if row is None:
        return None
    token_id, unit_id, role, holder, expires_on, revoked_at = row
    # A token issued before expiry was required has none: it still acts (existing
    # databases keep working) and `harbor tokens list` asks for it to be reissued.
    expires = date.fromisoformat(expires_on) if expires_on else None
    if revoked_at is not None or (expires is not None and today > expires):
        return None
    return Credential(token_id, unit_id, role, holder, expires)
