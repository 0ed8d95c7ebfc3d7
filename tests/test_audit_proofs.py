"""Consistency and inclusion proofs: exported from the store, checked offline with a public key."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import api.cli
from api.cli import build_parser, main
from api.demo import DemoMembers, load_article_cases
from audit.keys import Signer, public_pem
from audit.log import AuditLog
from audit.proofs import (
    CONSISTENCY_FORMAT,
    ProofUnavailable,
    load_proof,
    make_consistency_proof,
    make_inclusion_proof,
    verify_proof,
)
from audit.storage import AuditStore, KeyRecord
from domain.registry import Actor, Registry
from store import open_registry
from tests.conftest import TODAY, reset_postgres

VECTORS_PATH = Path(
    os.environ.get("HARBOR_RFC6962_VECTORS")
    or Path(__file__).resolve().parents[2] / "shared" / "vectors" / "rfc6962.json"
)
GAP = 7  # PostgreSQL positions burnt before the late events, so positions and ordinals part


@dataclass(frozen=True)
class Sealed:
    """A log sealed three times (sizes a < b < c) plus one unsealed event, and its files."""

    url: str
    folder: Path
    backend: str
    members: DemoMembers
    a: int
    b: int
    c: int
    unit_event: int  # log positions
    letter_event: int
    member_event: int
    late_event: int  # recorded after head a, sealed in head b
    unsealed_event: int

    @property
    def public(self) -> Path:
        """The exported public keys."""
        return self.folder / "public"

    @property
    def witness(self) -> Path:
        """The sealers' witness file (a third party's copy would be identical)."""
        return self.folder / "harbor-witness.txt"


def _contact(registry: Registry, member: UUID, note: str) -> None:
    registry.make_contact(
        Actor("daning-center", "clerk"), member, occurred_on=TODAY, channel="phone", note=note
    )


def _burn_positions(registry: Registry) -> None:
    """Consume PostgreSQL notification ids the way rolled-back inserts do (a gap in positions)."""
    datastore: Any = registry.recorder.datastore  # type: ignore[attr-defined]
    table = f'"{datastore.schema or "public"}"."{registry.recorder.events_table_name}"'  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        conn.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'notification_id'))"
            " FROM generate_series(1, %s)",
            (table, GAP),
        )


def _positions(url: str) -> list[tuple[int, str, UUID | str | bytes]]:
    """(log position, topic, originator) of every stored event, in log order."""
    registry = open_registry(url, clock=lambda: TODAY)
    try:
        store = AuditStore.for_recorder(registry.recorder)
        return [(r[0], r[3], r[1]) for page in store.event_pages(None) for r in page]
    finally:
        registry.close()


def _build(url: str, folder: Path, backend: str) -> Sealed:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HARBOR_DATABASE_URL", url)
        env.setenv("HARBOR_SIGNING_KEY", str(folder / "signing.pem"))
        registry = open_registry(url, clock=lambda: TODAY)
        try:
            members = load_article_cases(registry)
            assert main(["keys", "init"]) == 0
            assert main(["seal"]) == 0
            if backend == "postgres":
                _burn_positions(registry)
            _contact(registry, members.old_comrade, "回访一")
            assert main(["seal"]) == 0
            _contact(registry, members.old_comrade, "回访二")
            _contact(registry, members.liu_yang, "回访三")
            assert main(["seal"]) == 0
            _contact(registry, members.old_comrade, "未封存")
        finally:
            registry.close()
        assert main(["keys", "export", str(folder / "public")]) == 0
    rows = _positions(url)
    sizes = [
        int(line.split()[1])
        for line in (folder / "harbor-witness.txt").read_text().split("\n")
        if line
    ]
    a, b, c = sizes
    old_comrade = _rows_of(rows, members.old_comrade)
    return Sealed(
        url=url,
        folder=folder,
        backend=backend,
        members=members,
        a=a,
        b=b,
        c=c,
        unit_event=next(p for p, topic, _ in rows if topic.endswith(":Unit.UnitRegistered")),
        letter_event=next(p for p, topic, _ in rows if topic.endswith("LetterNumberTaken")),
        member_event=next(p for p, topic in old_comrade if topic.endswith("Attached")),
        late_event=rows[a][0],
        unsealed_event=rows[-1][0],
    )


def _rows_of(
    rows: list[tuple[int, str, UUID | str | bytes]], member: UUID
) -> list[tuple[int, str]]:
    """(position, topic) of one aggregate's events, whichever way the backend keeps its id."""
    ids = {member.hex, member.bytes, member, str(member)}
    return [(p, topic) for p, topic, oid in rows if oid in ids]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sealed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    """The log, built once per backend (checking proofs needs no database)."""
    folder = tmp_path_factory.mktemp(f"proofs-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'harbor.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        reset_postgres(url)
    return _build(url, folder, request.param)


@pytest.fixture
def online(sealed: Sealed, monkeypatch: pytest.MonkeyPatch) -> Sealed:
    """Commands run against the sealed store."""
    monkeypatch.setenv("HARBOR_DATABASE_URL", sealed.url)
    monkeypatch.setenv("HARBOR_SIGNING_KEY", str(sealed.folder / "signing.pem"))
    return sealed


def _export(sealed: Sealed, name: str, *argv: str) -> Path:
    """Run `harbor proof ...` against the store, writing ``name`` in the test's folder."""
    target = sealed.folder / name
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HARBOR_DATABASE_URL", sealed.url)
        assert main(["proof", *argv, "-o", str(target)]) == 0
    return target


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _save(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _check(
    path: Path, key: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    """Run `harbor verify-proof` with no database: any attempt to open the store fails."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("verify-proof tried to open the store")

    capsys.readouterr()
    with pytest.MonkeyPatch.context() as env:
        env.setattr(api.cli, "open_registry", refuse)
        env.setattr(AuditStore, "for_recorder", refuse)
        env.setenv("HARBOR_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nowhere")
        code = main(["verify-proof", str(path), "--key", str(key), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _flip_hex(text: str) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[0] ^= 1
    return bytes(raw).hex()


# --- consistency ---------------------------------------------------------------------------------


def test_a_consistency_proof_between_two_seals_verifies_offline(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    first_to_latest = _export(sealed, "a-c.json", "consistency", str(sealed.a))
    first_to_second = _export(sealed, "a-b.json", "consistency", str(sealed.a), str(sealed.b))

    code, out = _check(first_to_latest, sealed.public, capsys)
    code_ab, out_ab = _check(first_to_second, sealed.public, capsys)

    assert code == 0, out
    assert f"verified: the log of {sealed.c} events" in out
    assert f"extends the log of {sealed.a} events" in out and "unchanged" in out
    assert len(out.strip().splitlines()) == 1
    assert code_ab == 0 and f"log of {sealed.b} events" in out_ab, out_ab
    data = _load(first_to_latest)
    assert data["format"] == CONSISTENCY_FORMAT
    assert (data["old_head"]["tree_size"], data["new_head"]["tree_size"]) == (sealed.a, sealed.c)
    assert data["consistency_proof"]


def test_a_tampered_consistency_proof_fails(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _load(_export(sealed, "a-c.json", "consistency", str(sealed.a)))
    for i in range(len(data["consistency_proof"])):
        tampered = json.loads(json.dumps(data))
        tampered["consistency_proof"][i] = _flip_hex(tampered["consistency_proof"][i])

        code, out = _check(_save(sealed.folder / "bad.json", tampered), sealed.public, capsys)

        assert code == 1, out
        assert "NOT VERIFIED" in out and "NOT CONSISTENT" in out
        assert f"extends the log of {sealed.a} events" in out
    dropped = dict(data, consistency_proof=data["consistency_proof"][:-1])
    code, out = _check(_save(sealed.folder / "short.json", dropped), sealed.public, capsys)
    assert code == 1 and "NOT CONSISTENT" in out


def test_a_swapped_head_fails(sealed: Sealed, capsys: pytest.CaptureFixture[str]) -> None:
    a_to_c = _load(_export(sealed, "a-c.json", "consistency", str(sealed.a)))
    a_to_b = _load(_export(sealed, "a-b.json", "consistency", str(sealed.a), str(sealed.b)))
    swapped = dict(a_to_c, new_head=a_to_b["new_head"])  # a genuine head, not this proof's

    code, out = _check(_save(sealed.folder / "swapped.json", swapped), sealed.public, capsys)

    assert code == 1, out
    assert "NOT CONSISTENT" in out and "a head was swapped" in out


def test_a_head_from_another_key_or_the_wrong_key_fails(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _export(sealed, "a-c.json", "consistency", str(sealed.a))
    data = _load(path)
    impostor = Signer(Ed25519PrivateKey.generate())
    new = data["new_head"]
    resigned = impostor.sign_head(new["tree_size"], bytes.fromhex(new["root_hash"]))
    (sealed.folder / "impostor.pem").write_text(public_pem(impostor.public_key))

    own_id_code, own_id_out = _check(
        _save(
            sealed.folder / "resigned.json",
            dict(data, new_head=dict(resigned.to_json(), key_id=new["key_id"])),
        ),
        sealed.public,
        capsys,
    )
    other_code, other_out = _check(
        _save(sealed.folder / "other-key.json", dict(data, new_head=resigned.to_json())),
        sealed.public,
        capsys,
    )
    wrong_code, wrong_out = _check(path, sealed.folder / "impostor.pem", capsys)

    assert own_id_code == 1 and "FORGED SIGNATURE: the new tree head" in own_id_out
    assert "does not verify" in own_id_out
    assert other_code == 1 and "not among the trusted public keys" in other_out
    assert wrong_code == 1 and "the old tree head" in wrong_out and "the new tree head" in wrong_out


def test_a_forged_signature_fails(sealed: Sealed, capsys: pytest.CaptureFixture[str]) -> None:
    data = _load(_export(sealed, "a-c.json", "consistency", str(sealed.a)))
    signature = bytearray(base64.b64decode(data["old_head"]["signature"]))
    signature[5] ^= 1
    data["old_head"]["signature"] = base64.b64encode(bytes(signature)).decode()

    code, out = _check(_save(sealed.folder / "forged.json", data), sealed.public, capsys)

    assert code == 1 and "FORGED SIGNATURE: the old tree head" in out


def test_sizes_reversed_fail(sealed: Sealed, capsys: pytest.CaptureFixture[str]) -> None:
    data = _load(_export(sealed, "a-c.json", "consistency", str(sealed.a)))
    reversed_ = dict(data, old_head=data["new_head"], new_head=data["old_head"])

    code, out = _check(_save(sealed.folder / "reversed.json", reversed_), sealed.public, capsys)

    assert code == 1, out
    assert f"REVERSED: the old head (size {sealed.c}) is larger than the new head" in out


def test_export_refuses_reversed_sizes_and_sizes_without_a_head(
    online: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = online
    capsys.readouterr()

    reversed_code = main(["proof", "consistency", str(sealed.c), str(sealed.a)])
    reversed_err = capsys.readouterr().err
    missing_code = main(["proof", "consistency", str(sealed.b + 1)])  # b + 1 < c
    missing_err = capsys.readouterr().err
    beyond_code = main(["proof", "consistency", str(sealed.a), str(sealed.c + 100)])
    beyond_err = capsys.readouterr().err

    assert reversed_code == 2 and f"the old size {sealed.c} is larger" in reversed_err
    assert missing_code == 2
    assert f"no tree head of size {sealed.b + 1} is stored" in missing_err
    assert f"nearest stored sizes are {sealed.b} and {sealed.c}" in missing_err
    assert beyond_code == 2 and f"the nearest stored size is {sealed.c}" in beyond_err


def test_a_third_party_checks_the_heads_against_its_witness_file(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    a_to_c = _export(sealed, "a-c.json", "consistency", str(sealed.a))
    a_to_b = _export(sealed, "a-b.json", "consistency", str(sealed.a), str(sealed.b))
    a_line, b_line, c_line = sealed.witness.read_text().splitlines()
    lagging = sealed.folder / "lagging-witness.txt"
    lagging.write_text(a_line + "\n")
    gapped = sealed.folder / "gapped-witness.txt"
    gapped.write_text(a_line + "\n" + c_line + "\n")
    without_old = sealed.folder / "without-old-witness.txt"
    without_old.write_text(b_line + "\n")
    # The operator's own key signing a different log of the same size: a rewrite (or split view).
    forged_head = Signer.from_file(sealed.folder / "signing.pem").sign_head(sealed.c, bytes(32))
    forked = sealed.folder / "forked-witness.txt"
    forked.write_text(a_line + "\n" + forged_head.witness_line() + "\n")

    code, out = _check(a_to_c, sealed.public, capsys, "--witness", str(sealed.witness))
    lag_code, lag_out = _check(a_to_c, sealed.public, capsys, "--witness", str(lagging))
    gap_code, gap_out = _check(a_to_b, sealed.public, capsys, "--witness", str(gapped))
    old_code, old_out = _check(a_to_c, sealed.public, capsys, "--witness", str(without_old))
    fork_code, fork_out = _check(a_to_c, sealed.public, capsys, "--witness", str(forked))

    assert code == 0 and "both heads are in the witness file" in out, out
    assert lag_code == 0 and "the new one is newer than every head there" in lag_out, lag_out
    assert c_line in lag_out  # the verified line the third party appends
    assert gap_code == 1 and "NOT WITNESSED: the new tree head" in gap_out, gap_out
    assert old_code == 1 and "NOT WITNESSED: the old tree head" in old_out, old_out
    assert fork_code == 1 and "FORK: the new tree head" in fork_out, fork_out


def test_an_inclusion_proof_against_a_head_not_witnessed_fails(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _export(sealed, "event.json", "inclusion", str(sealed.unit_event))
    lagging = sealed.folder / "lagging-witness.txt"
    lagging.write_text(sealed.witness.read_text().splitlines()[0] + "\n")

    code, out = _check(path, sealed.public, capsys, "--witness", str(lagging))

    assert code == 1 and "NOT WITNESSED: the tree head" in out, out


# --- inclusion -----------------------------------------------------------------------------------


def test_inclusion_proofs_for_unit_letter_and_member_events_verify(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    for position, kind in [
        (sealed.unit_event, "Unit.UnitRegistered"),
        (sealed.letter_event, "LetterNumberTaken"),
        (sealed.member_event, "Attached"),
    ]:
        path = _export(sealed, f"event-{position}.json", "inclusion", str(position))

        code, out = _check(path, sealed.public, capsys, "--witness", str(sealed.witness))

        assert code == 0, out
        first, *rest = out.strip().splitlines()
        assert f"verified: the event at log position {position} (leaf" in first
        assert kind in first and f"log of {sealed.c} events" in first
        assert len(rest) == 1 and kind.rpartition(".")[2] in rest[0]
        event = _load(path)["event"]
        assert event["notification_id"] == position
        assert set(event) >= {"originator_id", "state", "state_encoding", "leaf_hash"}


def test_an_inclusion_proof_against_an_older_head_verifies(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _export(
        sealed, "old-head.json", "inclusion", str(sealed.member_event), "--size", str(sealed.a)
    )
    late = _export(
        sealed, "late.json", "inclusion", str(sealed.late_event), "--size", str(sealed.b)
    )

    code, out = _check(path, sealed.public, capsys)
    late_code, late_out = _check(late, sealed.public, capsys)

    assert code == 0 and f"log of {sealed.a} events" in out, out
    assert _load(path)["tree_head"]["tree_size"] == sealed.a
    assert late_code == 0 and f"log of {sealed.b} events" in late_out, late_out
    ordinal = _load(late)["event"]["ordinal"]
    assert ordinal == sealed.a
    # PostgreSQL positions can skip numbers; the leaf is found by position all the same.
    assert sealed.late_event == ordinal + 1 + (GAP if sealed.backend == "postgres" else 0)


def test_an_altered_event_or_proof_fails(
    sealed: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _load(_export(sealed, "member.json", "inclusion", str(sealed.member_event)))
    edited = json.loads(json.dumps(data))
    edited["event"]["state"] = edited["event"]["state"].replace('"other"', '"workplace"')
    assert edited != data
    moved = json.loads(json.dumps(data))
    moved["event"]["ordinal"] += 1
    bad_path = json.loads(json.dumps(data))
    bad_path["event"]["inclusion_proof"][0] = _flip_hex(bad_path["event"]["inclusion_proof"][0])

    edited_code, edited_out = _check(_save(sealed.folder / "e.json", edited), sealed.public, capsys)
    moved_code, moved_out = _check(_save(sealed.folder / "m.json", moved), sealed.public, capsys)
    path_code, path_out = _check(_save(sealed.folder / "p.json", bad_path), sealed.public, capsys)

    assert edited_code == 1 and "ALTERED: the event at log position" in edited_out
    assert "changed after it was sealed" in edited_out
    assert moved_code == 1 and "NOT PROVED" in moved_out
    assert path_code == 1 and "NOT PROVED" in path_out


def test_export_refuses_positions_the_head_does_not_cover(
    online: Sealed, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = online
    capsys.readouterr()

    late_code = main(["proof", "inclusion", str(sealed.late_event), "--size", str(sealed.a)])
    late_err = capsys.readouterr().err
    unsealed_code = main(["proof", "inclusion", str(sealed.unsealed_event)])
    unsealed_err = capsys.readouterr().err
    nowhere_code = main(["proof", "inclusion", str(sealed.unsealed_event + 1000)])
    nowhere_err = capsys.readouterr().err
    no_head_code = main(["proof", "inclusion", str(sealed.unit_event), "--size", "1"])
    no_head_err = capsys.readouterr().err

    assert late_code == 2
    assert (
        f"the tree head of size {sealed.a} does not cover log position {sealed.late_event}"
        in late_err
    )
    assert f"heads that cover it have sizes {sealed.b}, {sealed.c}" in late_err
    assert unsealed_code == 2 and "is not sealed yet: run `harbor seal`" in unsealed_err
    assert nowhere_code == 2 and "no event is stored at log position" in nowhere_err
    assert no_head_code == 2 and "no tree head of size 1 is stored" in no_head_err


# --- files that are not proofs, help, and the functions a route will call -------------------------


def test_a_file_that_is_no_proof_is_refused_with_a_reason(
    sealed: Sealed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _load(_export(sealed, "a-c.json", "consistency", str(sealed.a)))
    for content, reason in [
        (b"\xff\xfe\x00binary", "not UTF-8 text"),
        (b"garbage", "invalid JSON"),
        (b"[1, 2]", "expected format"),
        (json.dumps(dict(good, format="harbor-consistency-proof/2")).encode(), "/2"),
        (json.dumps({"format": "harbor-proof-bundle/1"}).encode(), "harbor verify-bundle"),
        (json.dumps(dict(good, old_head={"tree_size": 1})).encode(), "MALFORMED"),
        (json.dumps(dict(good, consistency_proof=["zz"])).encode(), "MALFORMED"),
    ]:
        path = tmp_path / "not-a-proof.json"
        path.write_bytes(content)

        code, out = _check(path, sealed.public, capsys)

        assert code == 2 and reason in out, out


@pytest.mark.parametrize(
    "command", [["proof"], ["proof", "consistency"], ["proof", "inclusion"], ["verify-proof"]]
)
def test_help_pages_describe_the_command_and_show_an_example(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])

    assert done.value.code == 0
    page = capsys.readouterr().out
    description = page.split("\n\n")[1]
    assert not description.startswith(("options:", "positional arguments:"))
    assert "\nexample:\n  harbor " in page


def test_the_proof_functions_return_json_a_route_can_serve(registry: Registry) -> None:
    audit = AuditLog(registry.recorder)
    signer = Signer(Ed25519PrivateKey.generate())
    audit.keep_key(KeyRecord(signer.key_id, public_pem(signer.public_key), "2006-01-01T00:00:00Z"))
    keys = {signer.key_id: signer.public_key}
    members = load_article_cases(registry)
    first = audit.seal(signer)
    _contact(registry, members.liu_yang, "回访")
    latest = audit.seal(signer)
    position = audit.store.stream_rows(members.liu_yang)[-1][0]

    consistency = json.loads(json.dumps(make_consistency_proof(audit, first.tree_size)))
    inclusion = json.loads(json.dumps(make_inclusion_proof(audit, position)))

    assert verify_proof(load_proof(json.dumps(consistency)), keys).ok
    assert verify_proof(inclusion, keys).ok
    assert consistency["new_head"] == latest.to_json()
    with pytest.raises(ProofUnavailable, match="not cover log position"):
        make_inclusion_proof(audit, position, first.tree_size)
    with pytest.raises(ProofUnavailable, match="larger than the new size"):
        make_consistency_proof(audit, latest.tree_size, first.tree_size)


def test_consistency_proofs_of_the_rfc6962_vectors_verify_and_tampered_ones_fail() -> None:
    vectors = json.loads(VECTORS_PATH.read_text())
    roots = [bytes.fromhex(r) for r in vectors["root_by_tree_size_hex"]]
    signer = Signer(Ed25519PrivateKey.generate())
    keys = {signer.key_id: signer.public_key}
    for vector in vectors["consistency_proofs"]:
        old, new = int(vector["old_size"]), int(vector["new_size"])
        proof: list[str] = list(vector["proof_hex"])
        data: dict[str, Any] = {
            "format": CONSISTENCY_FORMAT,
            "old_head": signer.sign_head(old, roots[old]).to_json(),
            "new_head": signer.sign_head(new, roots[new]).to_json(),
            "consistency_proof": proof,
        }

        result = verify_proof(data, keys)

        assert result.ok, (old, new, result.problems)
        for i in range(len(proof)):
            tampered = dict(
                data, consistency_proof=[*proof[:i], _flip_hex(proof[i]), *proof[i + 1 :]]
            )
            assert not verify_proof(tampered, keys).ok, (old, new, i)
        if 0 < old < new:  # anything extends the empty tree
            wrong_root = dict(data, new_head=signer.sign_head(new, roots[new - 1]).to_json())
            assert not verify_proof(wrong_root, keys).ok, (old, new)
