"""Sealing under load, the sealer's cadence, and signing keys (creation, rotation, export)."""

from __future__ import annotations

import itertools
import json
import stat
import threading
import time
from datetime import date
from pathlib import Path
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli import main
from api.demo import load_units
from audit import merkle
from audit.keys import KeyProblem, Signer, TreeHead, now_utc, public_pem, write_private_key
from audit.log import AuditError, AuditLog
from audit.sealer import BackgroundSealer, Sealer
from audit.storage import KeyRecord
from audit.verify import verify_log
from domain.registry import Actor, Registry
from tests.conftest import TODAY
from tests.support import event_count

CLERK = Actor("daning-center", "clerk")


def _enrol(registry: Registry, n: int) -> UUID:
    member = registry.enrol_member(
        CLERK, name=f"党员{n}", id_number=f"31010919500101{n:03d}X", standing="full",
        household_region="上海·虹口", occurred_on=date(2001, 1, 1),
    ).member_id
    assert member is not None
    return member


def _signer(audit: AuditLog) -> Signer:
    signer = Signer(Ed25519PrivateKey.generate())
    audit.keep_key(KeyRecord(signer.key_id, public_pem(signer.public_key), now_utc()))
    return signer


def test_sealing_while_commands_are_written_yields_heads_that_verify_and_agree(
    registry: Registry, tmp_path: Path
) -> None:
    load_units(registry, "test")
    members = [_enrol(registry, n) for n in range(4)]
    audit = AuditLog(registry.recorder)
    signer = _signer(audit)
    witness = tmp_path / "witness.txt"
    done = threading.Event()
    heads: list[TreeHead] = []
    errors: list[BaseException] = []

    def a_new_head_since(seen: int) -> None:
        # Commands are fast enough to finish between two seals: each writer waits for a
        # head before it starts and again half-way, so the sealers see the log grow.
        deadline = time.monotonic() + 10
        while len(heads) <= seen and time.monotonic() < deadline and not errors:
            time.sleep(0.001)

    def write(member: UUID) -> None:
        try:
            a_new_head_since(0)
            for i in range(12):
                if i == 6:
                    a_new_head_since(len(heads))
                registry.make_contact(CLERK, member, occurred_on=TODAY, channel="phone",
                                      note=f"第{i}次")
        except BaseException as e:
            errors.append(e)

    def seal() -> None:  # two sealers race, each with its own view of the tree
        mine = AuditLog(registry.recorder)
        try:
            while not done.is_set():
                heads.append(mine.seal(signer, witness))
        except BaseException as e:
            errors.append(e)

    sealers = [threading.Thread(target=seal) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(m,)) for m in members]
    for t in sealers + writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in sealers:
        t.join()
    heads.append(audit.seal(signer, witness))

    assert errors == []
    assert heads[-1].tree_size == registry.position() == 8 + 4 + 4 * 12
    assert len({h.tree_size for h in heads}) >= 3
    report = verify_log(audit, witness_files=[witness])
    assert report.ok, report.findings
    assert report.heads == report.witness_heads == len(heads)
    for older, newer in itertools.combinations(sorted(heads, key=lambda h: h.tree_size), 2):
        proof = audit.consistency_proof(older.tree_size, newer.tree_size)
        assert merkle.verify_consistency(
            older.tree_size, newer.tree_size, older.root_hash, newer.root_hash, proof
        )


def test_the_sealer_seals_every_n_events_or_after_m_minutes(registry: Registry) -> None:
    now = [0.0]
    audit = AuditLog(registry.recorder)
    sealer = Sealer(audit, _signer(audit), every_events=5, every_minutes=10, clock=lambda: now[0])
    load_units(registry, "test")  # 8 events

    first = sealer.maybe_seal()
    _enrol(registry, 1)
    _enrol(registry, 2)
    not_yet = sealer.maybe_seal()
    now[0] += 600
    by_time = sealer.maybe_seal()
    now[0] += 600
    nothing_new = sealer.maybe_seal()

    assert first is not None and first.tree_size == 8
    assert not_yet is None
    assert by_time is not None and by_time.tree_size == 10
    assert nothing_new is None


def test_a_background_sealer_seals_what_is_written_while_it_runs(registry: Registry) -> None:
    audit = AuditLog(registry.recorder)
    sealer = Sealer(audit, _signer(audit), every_events=1, every_minutes=0)

    with BackgroundSealer(sealer, poll_seconds=0.01) as background:
        load_units(registry, "test")
    background.stop(final_seal=True)

    assert background.errors == []
    assert background.heads[-1].tree_size == 8
    assert verify_log(audit).ok


def test_keys_rotate_while_heads_signed_by_the_old_key_still_verify(
    registry: Registry, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = tmp_path / "keys" / "signing.pem"
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    monkeypatch.setenv("HARBOR_SIGNING_KEY", str(key))
    load_units(registry, "test")

    assert main(["keys", "init"]) == 0
    assert main(["seal"]) == 0
    assert main(["keys", "rotate"]) == 0
    _enrol(registry, 1)
    assert main(["seal"]) == 0
    assert main(["keys", "export", str(tmp_path / "auditor")]) == 0
    capsys.readouterr()

    assert main(["--json", "verify", "--keys", str(tmp_path / "auditor"), "--progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["heads"] == 2 and report["witness_heads"] == 2
    (retired,) = key.parent.glob("signing.pem.*.retired")
    assert stat.S_IMODE(key.stat().st_mode) == stat.S_IMODE(retired.stat().st_mode) == 0o600
    index = json.loads((tmp_path / "auditor" / "keys.json").read_text())
    assert [k["endorsed_by"] for k in index] == [None, index[0]["key_id"]]

    assert main(["verify", "--keys", str(tmp_path / "auditor" / f"{index[1]['key_id']}.pem")]) == 1
    assert f"signed by key {index[0]['key_id']}, which is not among" in capsys.readouterr().out


def test_the_keys_commands_print_json_when_asked(
    registry: Registry, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = tmp_path / "keys" / "signing.pem"
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    monkeypatch.setenv("HARBOR_SIGNING_KEY", str(key))
    capsys.readouterr()

    assert main(["--json", "keys", "init"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["created"] is True and made["signing_key"] == str(key)
    assert Path(made["public_key"]).is_file()
    assert main(["--json", "keys", "init"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["created"] is False and again["key_id"] == made["key_id"]
    assert main(["--json", "keys", "rotate"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["endorsed_by"] == made["key_id"] != rotated["key_id"]
    assert Path(rotated["retired_private_key"]).is_file()
    assert main(["--json", "keys", "export", str(tmp_path / "auditor")]) == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert sorted(Path(p).name for p in written) == sorted(
        [f"{made['key_id']}.pem", f"{rotated['key_id']}.pem", "keys.json"]
    )


def test_a_signing_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    write_private_key(path, Ed25519PrivateKey.generate())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)

    with pytest.raises(KeyProblem, match="chmod 600"):
        Signer.from_file(path)


def test_a_witness_line_that_is_not_utf8_is_reported_not_fatal(tmp_path: Path) -> None:
    from audit.log import read_witness_file

    witness = tmp_path / "witness.txt"
    witness.write_bytes(b"# copied by hand\n\xff\xfe not a head\n")

    ((number, why),) = read_witness_file(witness)

    assert number == 2 and isinstance(why, str) and why


def test_a_final_seal_that_cannot_be_made_is_logged_not_raised(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditLog(registry.recorder)
    sealer = Sealer(audit, _signer(audit), every_events=1000, every_minutes=0)
    load_units(registry, "test")

    def refuse() -> None:
        raise AuditError("not an extension of the witnessed head; run `harbor verify`")

    sealer.seal = refuse  # type: ignore[method-assign,assignment]
    background = BackgroundSealer(sealer, poll_seconds=0.01).start()

    background.stop(final_seal=True)  # a server stopping: one line in the log, no traceback

    assert [str(e) for e in background.errors] == [
        "not an extension of the witnessed head; run `harbor verify`"
    ]
    assert "the final seal was not made" in caplog.text


def test_a_head_the_database_did_not_store_leaves_no_witness_line(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_units(registry, "test")
    audit = AuditLog(registry.recorder)
    signer = _signer(audit)
    witness = tmp_path / "witness.txt"
    audit.seal(signer, witness)
    before = witness.read_bytes()
    _enrol(registry, 1)

    def lost(head: TreeHead) -> None:
        raise OSError("the database went away while storing the head")

    with monkeypatch.context() as patched:
        patched.setattr(audit.store, "add_head", lost)
        with pytest.raises(OSError):
            audit.seal(signer, witness)

    assert witness.read_bytes() == before  # no line for a head nobody stored
    audit.seal(signer, witness)  # the next seal is not refused
    report = verify_log(audit, sealer_witness=witness)
    assert report.ok, report.findings


def test_a_verify_meeting_a_seal_half_way_waits_for_it(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_units(registry, "test")
    audit = AuditLog(registry.recorder)
    signer = _signer(audit)
    witness = tmp_path / "witness.txt"
    audit.seal(signer, witness)
    _enrol(registry, 2)
    store_head = audit.store.add_head
    half_way = threading.Event()

    def slowly(head: TreeHead) -> None:
        half_way.set()  # the witness line is written, the head not stored yet
        time.sleep(0.3)
        store_head(head)

    monkeypatch.setattr(audit.store, "add_head", slowly)
    sealed: list[TreeHead] = []
    failures: list[BaseException] = []

    def seal() -> None:
        try:
            sealed.append(audit.seal(signer, witness))
        except BaseException as e:
            failures.append(e)

    sealing = threading.Thread(target=seal)
    sealing.start()
    try:
        assert half_way.wait(5)
        report = verify_log(AuditLog(registry.recorder), sealer_witness=witness)
    finally:
        sealing.join(timeout=30)

    assert not sealing.is_alive(), "the seal hung"
    assert failures == []
    (head,) = sealed
    assert head.tree_size == event_count(registry)  # the head covers the whole log
    assert report.ok, report.findings
    assert report.heads == 2  # the verify waited and checked the head sealed meanwhile
