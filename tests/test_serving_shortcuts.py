"""What a serving process works out once instead of on every request.

Each shortcut must give exactly the answer of the long way: today's date in
Shanghai, a token's credential, and FastAPI's telemetry only when asked for.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from api.http.app import NO_TELEMETRY, create_app
from domain import registry as registry_module
from domain.registry import SHANGHAI, Registry, today_in_shanghai
from store.sql import Db
from store.tokens import TokenStore
from tests.conftest import TODAY
from tests.support import ADMIN, register_article_units


def test_today_in_shanghai_turns_at_shanghais_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    midnight = datetime(2026, 11, 27, 0, 0, tzinfo=SHANGHAI).timestamp()
    seen = []
    for offset in (-61, -1, 0, 59, 60):
        monkeypatch.setattr(registry_module.time, "time", lambda t=midnight + offset: t)
        seen.append(today_in_shanghai())

    eve, day = date(2026, 11, 26), date(2026, 11, 27)
    assert seen == [eve, eve, day, day, day]


def test_a_cached_token_check_answers_as_the_stored_one(registry: Registry) -> None:
    register_article_units(registry)
    tokens = TokenStore(Db(registry.recorder.datastore))  # type: ignore[attr-defined]
    valid = tokens.issue("daning-center", "unit", "clerk")
    expired = tokens.issue("daning-center", "unit", "clerk", expires_on=TODAY - timedelta(1))

    assert tokens.check_cached(valid, TODAY) == (False, None)  # not checked yet
    checked = tokens.check(valid, TODAY)
    assert checked is not None and tokens.check_cached(valid, TODAY) == (True, checked)
    assert tokens.check(expired, TODAY) is None
    assert tokens.check_cached(expired, TODAY) == (True, None)
    assert tokens.check_cached(expired, TODAY - timedelta(1))[1] is not None  # its last day

    (info,) = [t for t in tokens.list() if t.token_id == checked.token_id]
    assert tokens.revoke(info.token_id)
    assert tokens.check_cached(valid, TODAY) == (False, None)  # forgotten on revoking
    assert tokens.check(valid, TODAY) is None
    assert tokens.check_cached(valid, TODAY) == (True, None)


def test_fastapis_telemetry_is_off_unless_asked_for(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HARBOR_OTEL", raising=False)
    plain = create_app(registry, follow=False)
    monkeypatch.setenv("HARBOR_OTEL", "on")
    traced = create_app(registry, follow=False)

    assert {k: plain._telemetry[k] for k in NO_TELEMETRY} == NO_TELEMETRY  # type: ignore[attr-defined]
    assert traced._telemetry["tracing"] and traced._telemetry["metrics"]  # type: ignore[attr-defined]


def test_a_unit_dissolved_while_it_is_being_read_is_not_kept_alive_by_the_cache(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of zb-factory that began before its dissolution committed may answer with the
    unit as it was, but must not cache it: the next command sees it dissolved."""
    register_article_units(registry)
    load = registry._load_unit

    def load_then_dissolve(code: str, field: str = "unit_id") -> object:
        unit = load(code, field)
        if code == "zb-factory":
            monkeypatch.setattr(registry, "_load_unit", load)
            registry.dissolve_unit(ADMIN, "zb-factory", occurred_on=TODAY)
        return unit

    monkeypatch.setattr(registry, "_load_unit", load_then_dissolve)
    assert registry.unit("zb-factory").dissolved_on is None  # read before the dissolution

    assert not registry.unit_is_cached("zb-factory")
    assert registry.unit("zb-factory").dissolved_on == TODAY
