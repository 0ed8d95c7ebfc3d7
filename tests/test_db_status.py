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


def test_limits_make_a_cron_job_exit_1_naming_what_is_behind(
    registry: Registry, store_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Lag, unsealed events and the last check, each against the limit given."""
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    load_article_cases(registry)  # nothing folded, nothing sealed, never verified
    lag = registry.position()

    def status(*limits: str) -> tuple[int, str]:
        code = main(["db", "status", *limits])
        return code, capsys.readouterr().err

    assert status("--max-lag", str(lag), "--max-unsealed", str(lag)) == (0, "")
    code, said = status("--max-lag", str(lag - 1))
    assert code == 1 and f"the read models are {lag} events behind (limit {lag - 1})" in said
    code, said = status("--max-unsealed", "0")
    assert code == 1 and f"{lag} events are not sealed (limit 0)" in said
    code, said = status("--max-check-age", "7")
    assert code == 1 and "`harbor verify` never ran" in said

    audit = AuditLog(registry.recorder)
    audit.store.add_verification(False, lag, "edited at 3: …")
    code, said = status("--max-check-age", "7")
    assert code == 1 and "found a change" in said
    audit.store.add_verification(True, lag, None)
    assert status("--max-check-age", "7") == (0, "")
    with Db(registry.recorder.datastore).transaction() as cur:  # type: ignore[attr-defined]
        cur.execute(  # a check that passed, long ago
            "INSERT INTO harbor_verifications (verified_at, ok, events_checked)"
            " VALUES ('2026-01-05T08:00:00Z', 1, 26)"
        )
    code, said = status("--max-check-age", "7")
    assert code == 1 and "ran 2026-01-05T08:00:00Z, more than 7 days ago" in said
