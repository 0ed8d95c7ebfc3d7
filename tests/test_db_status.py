"""`harbor db status`: the log, the read models' lag, the audit log and the credentials."""

from __future__ import annotations

import json
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli import main
from api.demo import load_article_cases
from audit.keys import Signer, now_utc, public_pem
from audit.log import AuditLog
from audit.storage import KeyRecord
from domain.registry import Registry
from projections.queries import ReadModels
from projections.runner import Projector
from store.sql import Db
from store.tokens import TokenStore
from tests.conftest import TODAY
from tests.support import as_unit


def test_status_says_how_far_the_read_models_and_the_seals_are_behind_the_log(
    registry: Registry, store_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Folded and sealed halfway, two tokens of which one revoked: the status says so."""
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    members = load_article_cases(registry)
    Projector(registry).catch_up()
    holder = ReadModels(registry).member_status(members.liu_yang)["holder_unit_id"]
    audit = AuditLog(registry.recorder)
    signer = Signer(Ed25519PrivateKey.generate())
    audit.keep_key(KeyRecord(signer.key_id, public_pem(signer.public_key), now_utc()))
    audit.seal(signer)
    folded = registry.position()
    tokens = TokenStore(Db(registry.recorder.datastore))  # type: ignore[attr-defined]
    tokens.issue("daning-center", "unit", "clerk", today=TODAY)
    tokens.issue("sh-univ", "unit", "clerk", today=TODAY)
    tokens.revoke(tokens.list()[0].token_id)
    for day in (20, 21):  # two events after the fold and the seal
        registry.make_contact(as_unit(holder), members.liu_yang, channel="phone",
                              note="联系上了", occurred_on=date(2026, 11, day))
    later = registry.position()

    assert main(["db", "status", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)

    assert (found["log_position"], found["projected_position"]) == (later, folded)
    assert found["projection_lag"] == later - folded > 0
    assert found["audit"]["tree_leaves"] == folded
    assert found["audit"]["unsealed_events"] == later - folded
    assert found["audit"]["last_tree_head"]["key_id"] == signer.key_id
    assert found["tokens"] == {"live": 1, "issued": 2}

    assert main(["db", "status"]) == 0
    text = capsys.readouterr().out
    assert f"folded to {folded} (lag {later - folded} events)" in text
    assert f"key {signer.key_id}" in text and "never (run `harbor verify`)" in text
    assert "1 live of 2 issued" in text
