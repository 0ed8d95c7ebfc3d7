# ruff: noqa: F401, F811  (the tamper tests' fixtures are imported, then requested as parameters)
"""`harbor verify --keys DIR` takes key retirement from the auditor's keys.json, not the database.

Someone who can rewrite the database and holds a leaked, retired key could delete the rotation
that retired it from the database's key records, and then sign heads with it. Verifying with the
database's records (or bare PEMs) lets those heads pass; verifying with the folder
`harbor keys export` wrote (its keys.json records the rotation) fails, naming the key and the
missing rotation. Runs on both backends."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.cli import main
from api.demo import DemoMembers
from audit.config import AuditConfig
from audit.keyring import load_trusted_keys, rotate_key
from audit.keys import Signer, endorsement_message
from audit.log import AuditLog, append_witness_line
from audit.storage import KEYS
from audit.verify import verify_log
from domain.registry import Registry
from tests.test_audit_tamper import RawStore, _contacts, audit_env, sealed

FROM_DB_NOTE = "taken from the database's key records"


@dataclass(frozen=True)
class Exported:
    """A store whose key was rotated, and the auditor's copy of the keys taken after it."""

    keys: Path  # what `harbor keys export` wrote after the rotation, keys.json included
    old: Signer  # the retired key, as whoever leaked it holds it
    new_key: str


@pytest.fixture
def exported(sealed: DemoMembers, registry: Registry, audit_env: Path) -> Exported:
    """Two heads by the first key, a rotation, and the keys exported right after it."""
    config = AuditConfig.from_env()
    old = Signer.from_file(config.signing_key)
    change = rotate_key(AuditLog(registry.recorder), config)
    assert main(["keys", "export", str(audit_env / "auditor")]) == 0
    return Exported(audit_env / "auditor", old, change.key_id)


def _sql(store_url: str, sql: str, *params: Any) -> None:
    with RawStore(store_url).transaction() as run:
        run(sql, *params)


def _hide_rotation(store_url: str, exported: Exported) -> None:
    """The attacker's database edit: the record of the rotation is gone."""
    _sql(store_url, f"DELETE FROM {KEYS} WHERE key_id = ?", exported.new_key)


def _seal_with(signer: Signer, registry: Registry, sealed: DemoMembers) -> None:
    """Record an event and seal it (witness line included) with ``signer``."""
    _contacts(registry, sealed.old_comrade, 1)
    AuditLog(registry.recorder).seal(signer, AuditConfig.from_env().witness_file)


def _leak_head(signer: Signer, registry: Registry, sealed: DemoMembers) -> None:
    """Record an event; sign a head by hand (the sealer may refuse the key), store, witness it."""
    audit = AuditLog(registry.recorder)
    _contacts(registry, sealed.old_comrade, 1)
    audit.catch_up()
    head = signer.sign_head(audit.size(), audit.root(audit.size()))
    append_witness_line(AuditConfig.from_env().witness_file, head)
    audit.store.add_head(head)


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["--json", "verify", *args])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _text_verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _pems_only(exported: Exported, target: Path) -> Path:
    target.mkdir()
    for pem in exported.keys.glob("*.pem"):
        shutil.copy(pem, target)
    return target


# --- a rotation deleted from the database ---------------------------------------------------------


def test_a_rotation_deleted_from_the_database_fails_verify_with_the_exported_folder(
    exported: Exported,
    sealed: DemoMembers,
    registry: Registry,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _hide_rotation(store_url, exported)
    # With the rotation gone from the database, even the sealer accepts the leaked key.
    _seal_with(exported.old, registry, sealed)

    code, report = _verify(capsys, "--keys", str(exported.keys))

    assert code == 1 and not report["ok"], report
    assert report["retirement_from"] == str(exported.keys / "keys.json")
    messages = [f["message"] for f in report["findings"]]
    (missing,) = [f for f in report["findings"] if f["kind"] == "key"]
    assert f"key {exported.new_key}" in missing["message"]
    assert f"replaced key {exported.old.key_id}" in missing["message"]
    assert "missing from the database's key records" in missing["message"]
    assert "edited" in missing["message"] and "stale" in missing["message"]
    (retired,) = [f["message"] for f in report["findings"] if f["kind"] == "signature"]
    assert f"signed by key {exported.old.key_id}" in retired
    assert f"after key {exported.new_key} replaced it" in retired
    assert messages[0] == missing["message"], messages  # the edited key history comes first
    last = AuditLog(registry.recorder).store.last_verification()
    assert last is not None and not last["ok"]


def test_the_text_output_names_the_missing_rotation_and_the_retired_key(
    exported: Exported,
    sealed: DemoMembers,
    registry: Registry,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _hide_rotation(store_url, exported)
    _seal_with(exported.old, registry, sealed)

    code, out = _text_verify(capsys, "--keys", str(exported.keys))

    assert code == 1, out
    first = out.splitlines()[0]
    assert first.startswith("CHANGED: ") and f"key {exported.new_key}" in first, out
    assert "also: tree head of size" in out and f"signed by key {exported.old.key_id}" in out
    assert FROM_DB_NOTE not in out


def test_without_the_key_history_the_deleted_rotation_goes_unnoticed_and_that_is_said(
    exported: Exported,
    sealed: DemoMembers,
    registry: Registry,
    store_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The gap the folder closes: the database's records (or bare PEMs) cannot tell."""
    _hide_rotation(store_url, exported)
    _seal_with(exported.old, registry, sealed)
    pems = _pems_only(exported, tmp_path / "pems")

    plain_code, plain = _verify(capsys)
    pems_code, with_pems = _verify(capsys, "--keys", str(pems))
    text_code, text = _text_verify(capsys, "--keys", str(pems))

    for code, report in [(plain_code, plain), (pems_code, with_pems)]:
        assert code == 0 and report["ok"] and report["findings"] == [], report
        assert report["heads"] == 3 and report["retirement_from"] == "database"
        assert [n for n in report["notes"] if FROM_DB_NOTE in n], report
    assert text_code == 0 and text.startswith("verified: "), text
    assert f"note: key retirement was {FROM_DB_NOTE}, not from your keys" in text
    assert "keys.json" in text


# --- other disagreements between the database and keys.json ---------------------------------------


def test_a_later_creation_time_in_the_database_does_not_move_the_retirement(
    exported: Exported,
    sealed: DemoMembers,
    registry: Registry,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Moving the rotation into the future makes the leaked key's heads look earlier; the
    # leaked key endorses the moved rotation again, so the database's records hold together.
    old, later = exported.old, "2999-01-01T00:00:00.000000Z"
    (record,) = [
        k for k in AuditLog(registry.recorder).store.public_keys() if k.key_id == exported.new_key
    ]
    endorsement = old.sign(endorsement_message(record.key_id, record.public_pem, later))
    _sql(
        store_url,
        f"UPDATE {KEYS} SET created_at = ?, endorsement = ? WHERE key_id = ?",
        later,
        endorsement,
        exported.new_key,
    )
    _leak_head(old, registry, sealed)

    plain_code, plain = _verify(capsys)
    code, report = _verify(capsys, "--keys", str(exported.keys))

    assert plain_code == 0 and plain["ok"], plain  # the database alone places it before
    assert code == 1, report
    (changed,) = [f["message"] for f in report["findings"] if f["kind"] == "key"]
    assert f"key {exported.new_key}: the database's key record disagrees" in changed
    assert "created at 2999-01-01T00:00:00.000000Z according to the database" in changed
    assert any(
        f["kind"] == "signature" and f"signed by key {old.key_id}" in f["message"]
        for f in report["findings"]
    ), report


def test_a_key_in_the_database_that_the_folder_lacks_is_named(
    exported: Exported,
    registry: Registry,
    audit_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    later = rotate_key(AuditLog(registry.recorder), AuditConfig.from_env())  # after the export

    code, report = _verify(capsys, "--keys", str(exported.keys))

    assert code == 1, report
    (extra,) = [f["message"] for f in report["findings"] if f["kind"] == "key"]
    assert f"key {later.key_id}" in extra and f"replacing key {exported.new_key}" in extra
    assert "not in" in extra and "keys.json" in extra
    assert "stale" in extra and "harbor keys export" in extra


# --- an untouched store ---------------------------------------------------------------------------


def test_an_untouched_store_verifies_clean_with_the_exported_folder(
    exported: Exported,
    sealed: DemoMembers,
    registry: Registry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new = Signer.from_file(AuditConfig.from_env().signing_key)
    _seal_with(new, registry, sealed)

    code, report = _verify(capsys, "--keys", str(exported.keys))
    text_code, text = _text_verify(capsys, "--keys", str(exported.keys))

    assert code == 0 and report["ok"] and report["findings"] == [], report
    assert report["heads"] == 3 and report["notes"] == []
    assert report["retirement_from"] == str(exported.keys / "keys.json")
    assert text_code == 0 and text.startswith("verified: ") and "note:" not in text, text


def test_a_leaked_head_fails_with_the_folder_when_the_database_is_untouched_too(
    exported: Exported, sealed: DemoMembers, registry: Registry
) -> None:
    _leak_head(exported.old, registry, sealed)

    report = verify_log(AuditLog(registry.recorder), trusted_keys=load_trusted_keys(exported.keys))

    assert [f.kind for f in report.findings] == ["signature"], report.findings
    assert f"after key {exported.new_key} replaced it" in report.findings[0].message
    assert report.notes == []


# --- a retired key endorsing a key of its own ---------------------------------------------------

def test_a_key_endorsed_by_a_retired_key_signs_nothing_and_the_fork_is_named(
    exported: Exported, sealed: DemoMembers, registry: Registry, audit_env: Path,
    store_url: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """Whoever holds the leaked old key mints a second successor for it and seals with that:
    a rotation makes one successor, so the second is never current — with the database's
    records and with a folder exported after the forgery alike."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.keys import now_utc, public_pem

    minted = Signer(Ed25519PrivateKey.generate())
    pem, at = public_pem(minted.public_key), now_utc()
    endorsement = exported.old.sign(endorsement_message(minted.key_id, pem, at))
    _sql(store_url, f"INSERT INTO {KEYS} VALUES (?, ?, ?, ?, ?)",
         minted.key_id, pem, at, exported.old.key_id, endorsement)
    _leak_head(minted, registry, sealed)
    assert main(["keys", "export", str(audit_env / "after")]) == 0

    for args in ((), ("--keys", str(audit_env / "after"))):
        code, report = _verify(capsys, *args)

        assert code == 1, args
        messages = [f["message"] for f in report["findings"]]
        assert any("endorsed two successors" in m for m in messages), messages
        assert any(
            f"signed by key {minted.key_id}, which key {exported.old.key_id} endorsed" in m
            for m in messages
        ), messages
