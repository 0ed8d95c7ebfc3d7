# ruff: noqa: F401, F811  (the tamper tests' fixtures are imported, then requested as parameters)
"""Hardening of the audit log: forged histories, concurrent seals, edited column types,
key rotation, a failing witness file, exit codes, heads compared with the witness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli import main
from api.demo import DemoMembers, load_units
from audit.config import AuditConfig
from audit.keyring import rotate_key
from audit.keys import Signer, now_utc, public_pem
from audit.log import AuditError, AuditLog, read_witness_file
from audit.sealer import Sealer
from audit.storage import KeyRecord
from audit.verify import verify_log
from domain.registry import Registry
from tests.test_audit_tamper import (
    RawStore,
    _contacts,
    _flip_one_byte,
    _verify,
    audit_env,
    sealed,
)


def _heads_in_db(raw: RawStore) -> int:
    with raw.transaction() as run:
        return int(run("SELECT COUNT(*) FROM harbor_tree_heads")[0][0])


def _wipe_audit_tables(raw: RawStore) -> None:
    with raw.transaction() as run:
        for table in ("harbor_merkle_leaves", "harbor_merkle_nodes", "harbor_tree_heads"):
            run(f"DELETE FROM {table}")


# --- 1. a seal never signs a history the witness file contradicts ----------------------------


def test_seal_refuses_a_rewritten_history_whose_audit_tables_were_emptied(
    sealed: DemoMembers, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = RawStore(store_url)
    _flip_one_byte(raw, raw.ids()[3])
    _wipe_audit_tables(raw)

    capsys.readouterr()
    code = main(["seal"])

    assert code == 2
    assert "harbor verify" in capsys.readouterr().err
    assert _heads_in_db(raw) == 0


def test_seal_refuses_a_rewritten_history_even_with_a_stored_head_left(
    sealed: DemoMembers, registry: Registry, store_url: str, audit_env: Path
) -> None:
    raw = RawStore(store_url)
    _flip_one_byte(raw, raw.ids()[3])
    _wipe_audit_tables(raw)
    config = AuditConfig.from_env()
    audit = AuditLog(registry.recorder)
    signer = Signer.from_file(config.signing_key)
    audit.seal(signer)  # an attacker's seal without the witness file: a forged stored head

    with pytest.raises(AuditError, match=r"witness file.*not signing"):
        audit.seal(signer, config.witness_file)


def test_seal_refuses_a_log_shorter_than_the_witnessed_head(
    sealed: DemoMembers, store_url: str, audit_env: Path, registry: Registry
) -> None:
    raw = RawStore(store_url)
    with raw.transaction() as run:
        run(f"DELETE FROM {raw.table} WHERE {raw.nid} = ?", raw.ids()[-1])
    _wipe_audit_tables(raw)
    config = AuditConfig.from_env()
    AuditLog(registry.recorder).seal(Signer.from_file(config.signing_key))

    with pytest.raises(AuditError, match="not an extension of the tree head in the witness") as e:
        AuditLog(registry.recorder).seal(Signer.from_file(config.signing_key), config.witness_file)
    # Another store's witness file beside this one's looks the same: say how to part them.
    assert "its own HARBOR_WITNESS_FILE and HARBOR_SIGNING_KEY" in str(e.value)


# --- 2. a seal while verify runs is not tampering ---------------------------------------------


def test_a_seal_between_verify_pages_is_not_reported_as_tampering(
    sealed: DemoMembers, registry: Registry, audit_env: Path
) -> None:
    config = AuditConfig.from_env()
    signer = Signer.from_file(config.signing_key)
    sealing = AuditLog(registry.recorder)
    done: list[int] = []

    def advance(n: int) -> None:
        if not done:  # after the first page: record a command and seal it
            done.append(n)
            _contacts(registry, sealed.old_comrade, 1)
            sealing.seal(signer, config.witness_file)

    report = verify_log(
        AuditLog(registry.recorder),
        witness_files=[config.witness_file],
        advance=advance,
    )

    assert done and report.ok, report.findings


# --- 3. edited column types are findings, not crashes -----------------------------------------

TYPE_EDITS = [
    ("state = CAST(state AS TEXT)", "edited"),
    ("state = NULL", "edited"),
    ("originator_version = '4x'", "edited"),
    ("topic = CAST(topic AS BLOB)", "edited"),
    ("originator_id = CAST(originator_id AS BLOB)", "edited"),
]


@pytest.mark.parametrize(("edit", "kind"), TYPE_EDITS, ids=[e for e, _ in TYPE_EDITS])
def test_an_event_column_of_the_wrong_type_is_reported_edited_at_its_position(
    edit: str,
    kind: str,
    sealed: DemoMembers,
    registry: Registry,
    store_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if store_url.startswith("postgres") and edit != "state = NULL":  # bytea takes NULL
        pytest.skip("PostgreSQL's typed columns refuse these edits")
    raw = RawStore(store_url)
    target = raw.ids()[9]
    with raw.transaction() as run:
        run(f"UPDATE {raw.table} SET {edit} WHERE {raw.nid} = ?", target)

    code, report = _verify(capsys)

    assert code == 1
    first = report["findings"][0]
    assert (first["kind"], first["position"]) == (kind, 9)
    assert "columns were edited" in first["message"]
    last = AuditLog(registry.recorder).store.last_verification()
    assert last is not None and not last["ok"] and last["first_problem"].startswith(kind)


def test_a_malformed_tree_head_row_is_a_bad_head_not_a_crash(
    sealed: DemoMembers, registry: Registry, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if store_url.startswith("postgres"):
        pytest.skip("PostgreSQL's typed columns refuse this edit")
    with RawStore(store_url).transaction() as run:
        run("UPDATE harbor_tree_heads SET tree_size = 'abc' WHERE seq = 1")

    code, report = _verify(capsys)

    assert code == 1
    assert any(f["kind"] == "tree-head" and "malformed" in f["message"] for f in report["findings"])
    last = AuditLog(registry.recorder).store.last_verification()
    assert last is not None and not last["ok"]


# --- 4. a rotated key signs nothing more ------------------------------------------------------


def test_a_head_signed_by_a_retired_key_after_the_rotation_does_not_verify(
    sealed: DemoMembers, registry: Registry, audit_env: Path
) -> None:
    config = AuditConfig.from_env()
    audit = AuditLog(registry.recorder)
    old = Signer.from_file(config.signing_key)
    rotate_key(audit, config)
    _contacts(registry, sealed.old_comrade, 1)
    audit.catch_up()
    leaked = old.sign_head(audit.size(), audit.root(audit.size()))  # after the rotation
    audit.store.add_head(leaked)

    report = verify_log(audit)

    assert any(
        f.kind == "signature" and "after key" in f.message and "replaced it" in f.message
        for f in report.findings
    ), report.findings
    with pytest.raises(AuditError, match="retired"):
        audit.seal(old)


def test_a_running_sealer_picks_up_the_rotated_key(
    sealed: DemoMembers, registry: Registry, audit_env: Path
) -> None:
    config = AuditConfig.from_env()
    sealer = Sealer.from_config(registry.recorder, config)
    old_id = sealer.signer.key_id

    change = rotate_key(sealer.audit, config)
    _contacts(registry, sealed.old_comrade, 1)
    head = sealer.seal()

    assert head.key_id == change.key_id != old_id
    assert verify_log(sealer.audit, witness_files=[config.witness_file]).ok


# --- 5. a witness file that cannot be written -------------------------------------------------


def test_seal_with_an_unwritable_witness_file_stores_no_head_and_exits_2(
    registry: Registry,
    audit_env: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    load_units(registry, "test")
    assert main(["keys", "init"]) == 0
    monkeypatch.setenv("HARBOR_WITNESS_FILE", str(audit_env))  # a folder: cannot be appended to
    capsys.readouterr()

    code = main(["seal"])

    assert code == 2
    err = capsys.readouterr().err
    assert "witness file" in err and "Traceback" not in err
    assert _heads_in_db(RawStore(store_url)) == 0


def test_the_sealer_backs_off_after_a_failed_seal(registry: Registry, tmp_path: Path) -> None:
    now = [0.0]
    audit = AuditLog(registry.recorder)
    signer = Signer(Ed25519PrivateKey.generate())
    audit.keep_key(KeyRecord(signer.key_id, public_pem(signer.public_key), now_utc()))
    sealer = Sealer(
        audit,
        signer,
        every_events=1,
        every_minutes=0,
        witness_file=tmp_path,
        clock=lambda: now[0],
    )
    load_units(registry, "test")

    with pytest.raises(AuditError):
        sealer.maybe_seal()
    skipped = [sealer.maybe_seal() for _ in range(5)]
    now[0] += 1.5
    with pytest.raises(AuditError):
        sealer.maybe_seal()

    assert skipped == [None] * 5
    assert audit.store.heads() == []


def test_a_witness_line_cut_short_does_not_swallow_the_next(
    sealed: DemoMembers, registry: Registry, audit_env: Path
) -> None:
    config = AuditConfig.from_env()
    with config.witness_file.open("ab") as f:
        f.write(b"harbor-tree-head/1 12 ab")  # a failed write's partial line
    _contacts(registry, sealed.old_comrade, 1)

    head = AuditLog(registry.recorder).seal(
        Signer.from_file(config.signing_key), config.witness_file
    )

    entries = read_witness_file(config.witness_file)
    assert entries[-1][1] == head and isinstance(entries[-2][1], str)


# --- 6. exit codes as documented --------------------------------------------------------------


def test_verify_with_nothing_sealed_exits_0_and_says_nothing_is_proved(
    registry: Registry, audit_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load_units(registry, "test")
    capsys.readouterr()

    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "nothing is sealed yet" in out and "not covered yet (run `harbor seal`)" in out
    # The JSON's notes are the text's note lines (docs/audit.md).
    assert main(["--json", "verify"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert [n for n in notes if "sealed yet" in n or "not covered yet" in n] == [
        line.removeprefix("note: ") for line in out.splitlines()
        if "sealed yet" in line or "not covered yet" in line
    ]
    assert len(notes) >= 2


def test_a_bundle_with_a_garbled_field_exits_2(
    sealed: DemoMembers, audit_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = audit_env / "m.json"
    assert main(["bundle", str(sealed.old_comrade), "-o", str(path)]) == 0
    assert main(["keys", "export", str(audit_env / "public")]) == 0
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    del data["tree_head"]
    path.write_text(json.dumps(data), encoding="utf-8")
    capsys.readouterr()

    code = main(["verify-bundle", str(path), "--key", str(audit_env / "public")])

    assert code == 2 and "MALFORMED" in capsys.readouterr().out


# --- 7. stored heads against the witness; leaf notification ids --------------------------------


def test_deleted_stored_heads_are_found_by_the_witness(
    sealed: DemoMembers, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with RawStore(store_url).transaction() as run:
        run("DELETE FROM harbor_tree_heads")

    code, report = _verify(capsys)

    assert code == 1
    assert any("not among the database's tree heads" in f["message"] for f in report["findings"])


def test_an_emptied_witness_file_is_found(
    sealed: DemoMembers, audit_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (audit_env / "witness.txt").write_text("")

    code, report = _verify(capsys)

    assert code == 1
    assert any(
        f["kind"] == "witness" and "not in the sealers'" in f["message"] for f in report["findings"]
    )


def test_a_changed_leaf_notification_id_is_a_leaf_table_finding(
    sealed: DemoMembers, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with RawStore(store_url).transaction() as run:
        run("UPDATE harbor_merkle_leaves SET notification_id = 1000000 WHERE ordinal = 5")

    code, report = _verify(capsys)

    assert code == 1
    assert any(f["kind"] == "leaf-table" for f in report["findings"]), report


def test_a_witness_file_that_cannot_be_read_is_a_usage_error_not_a_finding(
    sealed: DemoMembers, audit_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["verify", "--witness", str(audit_env / "nowhere.txt")])

    assert code == 2
    assert "cannot read the witness file" in capsys.readouterr().err
    assert main(["verify", "--witness", str(audit_env)]) == 2  # a folder


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE harbor_merkle_nodes SET hash = 'text' WHERE level = 1 AND idx = 0",
        "UPDATE harbor_signing_keys SET endorsed_by = key_id, endorsement = 'text'",
    ],
)
def test_an_audit_column_edited_to_another_type_is_a_finding_not_a_crash(
    edit: str, sealed: DemoMembers, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if store_url.startswith("postgres"):
        pytest.skip("PostgreSQL's typed columns refuse these edits")
    with RawStore(store_url).transaction() as run:
        run(edit)

    code, report = _verify(capsys)

    assert code == 1 and report["findings"], report


def test_verify_says_when_the_sealers_witness_file_is_not_there(
    sealed: DemoMembers, audit_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (audit_env / "witness.txt").unlink()

    code, report = _verify(capsys)

    assert code == 0  # nothing here shows the log changed; the note says what was not checked
    assert any("no witness file at" in note for note in report["notes"]), report["notes"]
