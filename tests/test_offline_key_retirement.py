# ruff: noqa: F401, F811  (the tamper tests' fixtures are imported, then requested as parameters)
"""`verify-bundle` and `verify-proof` retire a rotated key as `harbor verify` does, offline:
given the folder `harbor keys export` wrote, a head the old key signed after the rotation fails;
without its keys.json, the output says that retirement was not checked."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import api.cli
from api.cli import main
from api.demo import DemoMembers
from audit.bundle import verify_bundle
from audit.config import AuditConfig
from audit.keyring import load_trusted_keys
from audit.keys import RETIREMENT_UNCHECKED, KeyProblem, Signer
from audit.log import AuditLog
from audit.proofs import verify_proof
from audit.storage import AuditStore
from audit.verify import verify_log
from domain.registry import Registry
from tests.test_audit_tamper import _contacts, audit_env, sealed

KINDS = ("bundle", "consistency", "inclusion")
UNCHECKED = "key retirement was not checked"


@dataclass(frozen=True)
class Rotated:
    """Files exported around a key rotation, and the auditor's copy of the keys."""

    keys: Path  # what `harbor keys export` wrote after the rotation, keys.json included
    old_key: str
    new_key: str
    before: dict[str, Path]  # against heads the old key signed before the rotation
    leaked: dict[str, Path]  # against a head the old key signed after it
    successor: dict[str, Path]  # against a head the new key signed


def _export_all(
    folder: Path, tag: str, member: str, old_size: int, position: int
) -> dict[str, Path]:
    """A bundle, a consistency proof from ``old_size`` and an inclusion proof: latest head."""
    files = {kind: folder / f"{tag}-{kind}.json" for kind in KINDS}
    assert main(["bundle", member, "-o", str(files["bundle"])]) == 0
    assert main(["proof", "consistency", str(old_size), "-o", str(files["consistency"])]) == 0
    assert main(["proof", "inclusion", str(position), "-o", str(files["inclusion"])]) == 0
    return files


@pytest.fixture
def rotated(sealed: DemoMembers, registry: Registry, audit_env: Path) -> Rotated:
    """Two heads by the first key; a rotation; a head the old key signs after it; a new-key seal."""
    config = AuditConfig.from_env()
    audit = AuditLog(registry.recorder)
    member = str(sealed.old_comrade)
    old_size = audit.store.heads()[0].tree_size
    position = audit.store.stream_rows(sealed.old_comrade)[0][0]
    before = _export_all(audit_env, "before", member, old_size, position)

    old = Signer.from_file(config.signing_key)
    assert main(["keys", "rotate"]) == 0
    _contacts(registry, sealed.old_comrade, 1)
    audit.catch_up()
    audit.store.add_head(old.sign_head(audit.size(), audit.root(audit.size())))
    leaked = _export_all(audit_env, "leaked", member, old_size, position)

    _contacts(registry, sealed.old_comrade, 1)
    assert main(["seal"]) == 0
    successor = _export_all(audit_env, "successor", member, old_size, position)

    assert main(["keys", "export", str(audit_env / "auditor")]) == 0
    new_key = Signer.from_file(config.signing_key).key_id
    assert json.loads(leaked["bundle"].read_text())["tree_head"]["key_id"] == old.key_id
    return Rotated(audit_env / "auditor", old.key_id, new_key, before, leaked, successor)


def _offline(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run a command with no database: any attempt to open the store fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{argv[0]} tried to open the store")

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as env:
        env.setattr(api.cli, "open_registry", refuse)
        env.setattr(AuditStore, "for_recorder", refuse)
        env.setenv("HARBOR_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nowhere")
        code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _check(
    capsys: pytest.CaptureFixture[str], kind: str, path: Path, keys: Path
) -> tuple[int, str]:
    command = "verify-bundle" if kind == "bundle" else "verify-proof"
    return _offline(capsys, command, str(path), "--key", str(keys))


def _copy_keys(rotated: Rotated, target: Path, *, index: bool, pems: set[str]) -> Path:
    target.mkdir()
    for kid in pems:
        shutil.copy(rotated.keys / f"{kid}.pem", target)
    if index:
        shutil.copy(rotated.keys / "keys.json", target)
    return target


# --- with the exported folder: the rule of `harbor verify` ---------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_head_the_retired_key_signed_after_the_rotation_fails_offline(
    kind: str, rotated: Rotated, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(capsys, kind, rotated.leaked[kind], rotated.keys)

    assert code == 1, out
    assert "NOT VERIFIED" in out and "RETIRED KEY" in out, out
    assert f"signed by key {rotated.old_key}" in out
    assert f"after key {rotated.new_key} replaced it" in out
    assert UNCHECKED not in out


@pytest.mark.parametrize("kind", KINDS)
def test_heads_signed_before_the_rotation_or_by_the_new_key_still_verify(
    kind: str, rotated: Rotated, capsys: pytest.CaptureFixture[str]
) -> None:
    before_code, before_out = _check(capsys, kind, rotated.before[kind], rotated.keys)
    new_code, new_out = _check(capsys, kind, rotated.successor[kind], rotated.keys)

    assert before_code == 0 and "verified" in before_out, before_out
    assert new_code == 0 and "verified" in new_out, new_out
    assert "note:" not in before_out + new_out


def test_offline_and_online_verification_reject_the_same_head_for_the_same_reason(
    rotated: Rotated, registry: Registry
) -> None:
    report = verify_log(AuditLog(registry.recorder))
    bundle = json.loads(rotated.leaked["bundle"].read_text(encoding="utf-8"))
    proof = json.loads(rotated.leaked["inclusion"].read_text(encoding="utf-8"))
    trusted = load_trusted_keys(rotated.keys)

    bundle_result = verify_bundle(bundle, trusted)
    proof_result = verify_proof(proof, trusted)

    (online,) = [f.message for f in report.findings if f.kind == "signature"]
    why = online.partition(": ")[2]  # the finding names the head first
    assert "replaced it" in why
    assert any(why in p for p in bundle_result.problems), bundle_result.problems
    assert any(why in p for p in proof_result.problems), proof_result.problems


# --- without the key history: said, not silently skipped ------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_without_keys_json_the_output_says_retirement_was_not_checked(
    kind: str, rotated: Rotated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy_keys(rotated, tmp_path / "pems", index=False, pems={rotated.old_key})
    one_file = folder / f"{rotated.old_key}.pem"

    folder_code, folder_out = _check(capsys, kind, rotated.leaked[kind], folder)
    file_code, file_out = _check(capsys, kind, rotated.leaked[kind], one_file)
    before_code, before_out = _check(capsys, kind, rotated.before[kind], one_file)

    # The signature itself holds: only the key history could tell, and its absence is said.
    for code, out in [(folder_code, folder_out), (file_code, file_out), (before_code, before_out)]:
        assert code == 0, out
        assert f"note: {UNCHECKED}" in out and "keys.json" in out, out


def test_the_json_output_carries_the_note(
    rotated: Rotated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = _copy_keys(rotated, tmp_path / "pems", index=False, pems={rotated.old_key})
    outputs = []
    for command, path in [
        ("verify-bundle", rotated.leaked["bundle"]),
        ("verify-proof", rotated.leaked["consistency"]),
    ]:
        code, out = _offline(capsys, "--json", command, str(path), "--key", str(pem))
        outputs.append((code, json.loads(out.strip().splitlines()[-1])))
    checked_code, checked = _offline(
        capsys, "--json", "verify-bundle", str(rotated.before["bundle"]), "--key", str(rotated.keys)
    )

    for code, report in outputs:
        assert code == 0 and report["ok"], report
        assert [n for n in report["notes"] if n.startswith(UNCHECKED)], report
    assert checked_code == 0 and json.loads(checked)["notes"] == []


def test_the_library_notes_unchecked_retirement_for_bare_keys(rotated: Rotated) -> None:
    bare = dict(load_trusted_keys(rotated.keys).keys)
    bundle = json.loads(rotated.leaked["bundle"].read_text(encoding="utf-8"))
    proof = json.loads(rotated.leaked["consistency"].read_text(encoding="utf-8"))

    assert verify_bundle(bundle, bare).notes == [RETIREMENT_UNCHECKED]
    assert verify_proof(proof, bare).notes == [RETIREMENT_UNCHECKED]


# --- a key history that does not hold together ----------------------------------------------------


def test_a_successor_missing_from_the_folder_is_noted(
    rotated: Rotated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy_keys(rotated, tmp_path / "partial", index=True, pems={rotated.old_key})

    code, out = _check(capsys, "bundle", rotated.leaked["bundle"], folder)

    assert code == 0, out
    assert f"{rotated.new_key}.pem is not beside it" in out
    assert f"the retirement of key {rotated.old_key} is not checked" in out


def test_a_key_history_whose_endorsement_was_removed_is_refused(
    rotated: Rotated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = {rotated.old_key, rotated.new_key}
    folder = _copy_keys(rotated, tmp_path / "edited", index=True, pems=both)
    index = json.loads((folder / "keys.json").read_text(encoding="utf-8"))
    for entry in index:
        entry["endorsement"] = None  # would leave the old key current
    (folder / "keys.json").write_text(json.dumps(index), encoding="utf-8")
    garbled = _copy_keys(rotated, tmp_path / "garbled", index=False, pems=both)
    (garbled / "keys.json").write_text('[{"key_id": "../../etc/passwd"}]', encoding="utf-8")

    code, out = _check(capsys, "inclusion", rotated.leaked["inclusion"], folder)
    garbled_code, garbled_out = _check(capsys, "bundle", rotated.leaked["bundle"], garbled)

    assert code == 2 and "endorsement of it does not verify" in out, out
    assert garbled_code == 2 and "not the key history" in garbled_out, garbled_out
    with pytest.raises(KeyProblem, match="does not verify"):
        load_trusted_keys(folder)
