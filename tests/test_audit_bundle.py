"""Proof bundles: exported from the store, checked offline with only a public key."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import api.cli
from api.cli import main
from api.demo import LIU_YANG_ID_NUMBER, DemoMembers, load_article_cases
from audit.keys import Signer, public_pem
from domain.registry import Actor, Registry
from store import open_registry
from tests.conftest import TODAY, reset_postgres


def _export(url: str, folder: Path) -> DemoMembers:
    """Both article cases sealed, each member's bundle written, public keys exported."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HARBOR_DATABASE_URL", url)
        env.setenv("HARBOR_SIGNING_KEY", str(folder / "signing.pem"))
        registry = open_registry(url, clock=lambda: TODAY)
        try:
            members = load_article_cases(registry)
        finally:
            registry.close()
        assert main(["keys", "init"]) == 0
        assert main(["seal"]) == 0
        assert main(["bundle", str(members.old_comrade), "-o", str(folder / "old.json")]) == 0
        assert main(["bundle", LIU_YANG_ID_NUMBER, "-o", str(folder / "liu.json")]) == 0
        assert main(["keys", "export", str(folder / "public")]) == 0
    return members


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[DemoMembers, Path]:
    """Bundles made once per backend (checking them needs no database); (members, folder)."""
    folder = tmp_path_factory.mktemp(f"bundles-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'harbor.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        reset_postgres(url)
    return _export(url, folder), folder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No database from here on: any attempt to open the store fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("verify-bundle tried to open the store")

    monkeypatch.setattr(api.cli, "open_registry", refuse)
    monkeypatch.setenv("HARBOR_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nowhere")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _save(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _check(path: Path, key: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["verify-bundle", str(path), "--key", str(key)])
    return code, capsys.readouterr().out


def test_a_bundle_verifies_offline_and_prints_the_members_trail(
    exported: tuple[DemoMembers, Path], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = exported

    code, out = _check(folder / "old.json", folder / "public", capsys)

    assert code == 0, out
    assert "verified: member dbbc208f" in out and "11 events" in out
    assert "2006-05-08 daning-center" in out and "InquiryReceived" in out
    assert "Attached" in out and "basis=other" in out and "letter_no=2006-001" in out


def test_the_trail_gives_each_event_its_log_position_as_history_and_void_do(
    exported: tuple[DemoMembers, Path], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = exported
    events = _load(folder / "old.json")["events"]

    code, out = _check(folder / "old.json", folder / "public", capsys)

    assert code == 0, out
    trail = [line for line in out.splitlines() if re.match(r"v\d", line)]
    assert len(trail) == len(events)
    for line, event in zip(trail, events, strict=True):
        # The position is the notification id (`harbor history --json`, `void --position`);
        # the leaf is the event's zero-based index in the Merkle tree.
        assert event["notification_id"] != event["ordinal"]
        where = f"position {event['notification_id']}, leaf {event['ordinal']}"
        assert line.endswith(f", {where})"), line


def test_a_bundle_holds_only_its_members_events(exported: tuple[DemoMembers, Path]) -> None:
    members, folder = exported
    text = (folder / "old.json").read_text(encoding="utf-8")
    data = _load(folder / "old.json")

    assert data["member_id"] == str(members.old_comrade)
    assert [e["version"] for e in data["events"]] == list(range(1, 12))
    assert "刘洋" not in text and str(members.liu_yang) not in text
    assert members.liu_yang.hex not in text
    assert "UnitRegistered" not in text and "LetterNumberTaken" not in text


def test_one_altered_event_fails_with_a_clear_message(
    exported: tuple[DemoMembers, Path], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = exported
    data = _load(folder / "old.json")
    attached = next(e for e in data["events"] if e["topic"].endswith(":Attached"))
    attached["state"] = attached["state"].replace('"other"', '"workplace"')

    code, out = _check(_save(folder / "altered.json", data), folder / "public", capsys)

    assert code == 1
    assert "NOT VERIFIED" in out
    where = f"position {attached['notification_id']}, leaf {attached['ordinal']}"
    assert f"ALTERED: event #9 (version 9, {where}) (Attached)" in out


def test_a_proof_taken_from_another_member_fails(
    exported: tuple[DemoMembers, Path], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = exported
    old, liu = _load(folder / "old.json"), _load(folder / "liu.json")
    old["events"][2]["inclusion_proof"] = liu["events"][2]["inclusion_proof"]

    code, out = _check(_save(folder / "borrowed.json", old), folder / "public", capsys)

    assert code == 1
    assert "NOT PROVED: event #3 (version 3" in out
    assert "taken from another member" in out


def test_another_members_event_slipped_into_a_bundle_fails(
    exported: tuple[DemoMembers, Path], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = exported
    old, liu = _load(folder / "old.json"), _load(folder / "liu.json")
    foreign = dict(liu["events"][4], version=12)  # liu's event, with its own valid proof
    old["events"].append(foreign)

    code, out = _check(_save(folder / "slipped.json", old), folder / "public", capsys)

    assert code == 1
    assert "event #12" in out and "another member's event" in out


def test_a_forged_signature_fails(
    exported: tuple[DemoMembers, Path], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = exported
    data = _load(folder / "old.json")
    signature = bytearray(base64.b64decode(data["tree_head"]["signature"]))
    signature[0] ^= 1
    data["tree_head"]["signature"] = base64.b64encode(bytes(signature)).decode()

    code, out = _check(_save(folder / "forged.json", data), folder / "public", capsys)

    assert code == 1
    assert "FORGED SIGNATURE" in out and "does not verify" in out


def test_a_head_resigned_by_another_key_or_a_wrong_key_given_fails(
    exported: tuple[DemoMembers, Path], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = exported
    data = _load(folder / "old.json")
    impostor = Signer(Ed25519PrivateKey.generate())
    head = data["tree_head"]
    resigned = impostor.sign_head(head["tree_size"], bytes.fromhex(head["root_hash"]))
    data["tree_head"] = dict(resigned.to_json(), key_id=head["key_id"])
    (folder / "impostor.pem").write_text(public_pem(impostor.public_key))
    resigned_file = _save(folder / "resigned.json", data)

    forged_code, forged_out = _check(resigned_file, folder / "public", capsys)
    wrong_code, wrong_out = _check(folder / "old.json", folder / "impostor.pem", capsys)

    assert forged_code == 1 and "FORGED SIGNATURE" in forged_out
    assert wrong_code == 1 and "not among the trusted public keys" in wrong_out


def test_events_recorded_after_the_last_seal_are_left_out_and_counted(
    registry: Registry, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members = _export(store_url, tmp_path)
    registry.make_contact(
        Actor("daning-center", "clerk"), members.old_comrade, occurred_on=TODAY,
        channel="phone", note="回访",
    )

    with pytest.MonkeyPatch.context() as env:
        env.setenv("HARBOR_DATABASE_URL", store_url)
        assert main(["bundle", str(members.old_comrade), "-o", str(tmp_path / "later.json")]) == 0
    data = _load(tmp_path / "later.json")
    code, out = _check(tmp_path / "later.json", tmp_path / "public", capsys)

    assert len(data["events"]) == 11 and data["unsealed_events"] == 1
    assert code == 0 and "1 later events were not sealed" in out


def test_a_file_that_is_no_bundle_is_refused_with_a_reason(
    exported: tuple[DemoMembers, Path],
    offline: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, folder = exported
    for content, reason in [
        (b"\xff\xfe\x00binary", "not UTF-8 text"),
        (b"garbage", "invalid JSON"),
        (b"[1, 2]", "expected format"),
    ]:
        path = tmp_path / "not-a-bundle.json"
        path.write_bytes(content)
        capsys.readouterr()
        code = main(["verify-bundle", str(path), "--key", str(folder / "public")])
        err = capsys.readouterr().err
        assert code == 2 and "not a proof bundle" in err and reason in err, err


def test_a_bundle_file_that_is_not_there_is_named_with_the_reason(
    exported: tuple[DemoMembers, Path], offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, folder = exported
    missing = folder / "nowhere.json"

    assert main(["verify-bundle", str(missing), "--key", str(folder / "public")]) == 2

    said = capsys.readouterr().err
    assert f"{missing}: no such file or directory" in said and "Errno" not in said
