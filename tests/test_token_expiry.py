"""Credentials expire (DESIGN.md "Security"): every token issued gets a last day.

A role's default lifetime when none is given, never more than two years ahead; tokens
an older Harbor stored without an expiry keep acting, flagged for reissue.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from domain import registry as registry_module
from domain.registry import Registry
from store.sql import Db
from store.tokens import (
    DEFAULT_LIFETIME,
    LEGACY_NO_EXPIRY,
    MAX_LIFETIME,
    TABLE,
    ExpiryRefused,
    TokenStore,
    check_expiry,
    default_expiry,
)

DAY = date(2026, 3, 1)


@pytest.fixture
def tokens(registry: Registry) -> TokenStore:
    return TokenStore(Db(registry.recorder.datastore), cache_seconds=0)  # type: ignore[attr-defined]


def _expiry(tokens: TokenStore, token: str) -> date | None:
    credential = tokens.check(token, DAY)
    assert credential is not None
    return credential.expires_on


def test_a_token_issued_without_an_expiry_gets_its_roles_default(tokens: TokenStore) -> None:
    assert {
        "unit": timedelta(days=365),
        "auditor": timedelta(days=365),
        "admin": timedelta(days=30),
    } == DEFAULT_LIFETIME
    for role in ("unit", "auditor", "admin"):
        token = tokens.issue("daning-center", role, "clerk", today=DAY)
        assert _expiry(tokens, token) == DAY + DEFAULT_LIFETIME[role] == default_expiry(role, DAY)
        assert tokens.check(token, DAY + DEFAULT_LIFETIME[role]) is not None  # its last day
        assert tokens.check(token, DAY + DEFAULT_LIFETIME[role] + timedelta(1)) is None
    assert all(t.expires_on is not None for t in tokens.list())


def test_without_a_today_the_default_counts_from_today_in_shanghai(
    tokens: TokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20:00 UTC on 1 March is already 04:00 on 2 March in Shanghai. Only domain.registry's
    # wall clock (what today_in_shanghai reads) is stopped; the rest of the process keeps
    # the real one.
    instant = datetime(2026, 3, 1, 20, 0, tzinfo=UTC).timestamp()
    monkeypatch.setattr(
        registry_module, "time", SimpleNamespace(time=lambda: instant, monotonic=time.monotonic)
    )

    token = tokens.issue("daning-center", "admin", "clerk")

    credential = tokens.check(token, date(2026, 3, 2))
    assert credential is not None
    assert credential.expires_on == date(2026, 4, 1)  # 2 March + 30 days, not 1 March + 30


def test_no_token_lives_more_than_two_years(tokens: TokenStore) -> None:
    latest = DAY + MAX_LIFETIME
    assert timedelta(days=730) == MAX_LIFETIME
    assert _expiry(tokens, tokens.issue("u", "unit", "c", latest, today=DAY)) == latest
    with pytest.raises(ExpiryRefused, match="more than 730 days ahead"):
        tokens.issue("u", "unit", "c", latest + timedelta(1), today=DAY)
    with pytest.raises(ExpiryRefused):
        tokens.issue("u", "admin", "c", date(9999, 12, 31), today=DAY)
    assert len(tokens.list()) == 1  # nothing stored for the refusals


def test_a_day_in_the_past_is_refused_to_people_and_never_acts(tokens: TokenStore) -> None:
    yesterday = DAY - timedelta(1)
    assert check_expiry(DAY, DAY) == DAY  # today itself: valid through today
    with pytest.raises(ExpiryRefused, match="is in the past"):
        check_expiry(yesterday, DAY)
    # The store keeps such a token as asked (tests use them), and it never acts.
    token = tokens.issue("u", "unit", "c", yesterday, today=DAY)
    assert tokens.check(token, DAY) is None


def test_a_token_stored_without_an_expiry_still_acts_and_is_flagged(tokens: TokenStore) -> None:
    with tokens.db.transaction() as cur:
        cur.execute(
            f"INSERT INTO {TABLE} (token_hash, token_id, unit_id, role, holder, issued_at,"
            " expires_on) VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (
                hashlib.sha256(b"hbr_from-an-older-harbor").hexdigest(),
                "legacy01",
                "daning-center",
                "unit",
                "老张",
                "2024-01-01T00:00:00+00:00",
            ),
        )
    old = tokens.check("hbr_from-an-older-harbor", date(2999, 12, 31))
    assert old is not None and old.expires_on is None  # existing databases keep working
    (legacy,) = tokens.list()
    assert legacy.expires_on is None
    assert legacy.state == LEGACY_NO_EXPIRY
    assert "revoke and reissue" in legacy.state
    # A new token lists its expiry, a revoked one its revocation.
    tokens.issue("daning-center", "unit", "clerk", today=DAY)
    fresh = next(t for t in tokens.list() if t.token_id != "legacy01")
    assert fresh.state == f"expires {DAY + timedelta(days=365)}"
    assert tokens.revoke(fresh.token_id)
    assert next(t for t in tokens.list() if t.token_id == fresh.token_id).state.startswith(
        "revoked "
    )


def test_a_start_with_admin_token_revokes_the_tokens_the_last_start_printed(
    registry: Registry, tokens: TokenStore
) -> None:
    from api.cli_http import start_tokens

    today = registry.clock()
    kept = tokens.issue("daning-center", "unit", "clerk", today=today)
    first = start_tokens(registry, tokens)
    second = start_tokens(registry, tokens)

    def printed(lines: list[str]) -> list[str]:
        return [line.rsplit(": ", 1)[1] for line in lines if " token (" in line]

    assert len(printed(first)) == len(printed(second)) == 2
    assert not any(" earlier start" in line for line in first)
    assert "revoked the 2 token(s) an earlier start printed" in second
    assert all(tokens.check(t, today) is None for t in printed(first))
    roles = [tokens.check(t, today) for t in printed(second)]
    assert [c.role for c in roles if c is not None] == ["admin", "auditor"]
    assert tokens.check(kept, today) is not None  # tokens issued by hand are not touched


def test_a_token_revoked_while_it_is_being_checked_is_not_kept_alive_by_the_cache(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check read the token's row just before the revocation committed: that request
    may pass (it came first), but the row it read must not be cached for the next ones."""
    tokens = TokenStore(Db(registry.recorder.datastore), cache_seconds=60)  # type: ignore[attr-defined]
    today = date(2026, 11, 26)
    token = tokens.issue("daning-center", "unit", "clerk", today=today)
    read = Db.query

    def query_then_revoke(db: Db, sql: str, params: object = ()) -> list[tuple[object, ...]]:
        rows = read(db, sql, params)
        if "token_hash" in sql:
            tokens.revoke_unit("daning-center")  # commits between the read and the caching
        return rows

    monkeypatch.setattr(Db, "query", query_then_revoke)
    assert tokens.check(token, today) is not None
    monkeypatch.setattr(Db, "query", read)

    assert tokens.check_cached(token, today) == (False, None)
    assert tokens.check(token, today) is None
