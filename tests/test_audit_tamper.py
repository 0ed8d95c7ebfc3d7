"""`harbor verify` on a populated store tampered with directly in SQL, on both backends."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from api.cli import main
from api.demo import DemoMembers, load_article_cases
from audit.config import AuditConfig
from audit.keyring import init_key
from audit.keys import Signer
from audit.leaf import event_leaf_hash
from audit.log import AuditError, AuditLog
from audit.status import audit_status
from audit.storage import AuditStore
from audit.verify import verify_log
from domain.registry import Actor, Registry
from tests.conftest import TODAY


@pytest.fixture
def audit_env(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CLI configuration: the test store, and a key and witness file in a temporary folder."""
    monkeypatch.setenv("HARBOR_DATABASE_URL", store_url)
    monkeypatch.setenv("HARBOR_SIGNING_KEY", str(tmp_path / "keys" / "signing.pem"))
    monkeypatch.setenv("HARBOR_WITNESS_FILE", str(tmp_path / "witness.txt"))
    return tmp_path


def _contacts(registry: Registry, member: UUID, count: int) -> None:
    for i in range(count):
        registry.make_contact(
            Actor("daning-center", "clerk"), member, occurred_on=TODAY, channel="phone",
            note=f"回访 {i}",
        )


@pytest.fixture
def sealed(registry: Registry, audit_env: Path) -> DemoMembers:
    """The article's cases plus more events, sealed twice (so there are two tree heads)."""
    members = load_article_cases(registry)
    audit, config = AuditLog(registry.recorder), AuditConfig.from_env()
    init_key(audit, config)
    signer = Signer.from_file(config.signing_key)
    audit.seal(signer, config.witness_file)
    _contacts(registry, members.old_comrade, 6)
    audit.seal(signer, config.witness_file)
    return members


def _verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["--json", "verify"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


class RawStore:
    """The events table reached around Harbor, as an attacker with database access would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith("postgres")
        self.table = "harbor_events" if self.postgres else "stored_events"
        self.nid = "notification_id" if self.postgres else "rowid"

    @contextmanager
    def transaction(self) -> Iterator[Callable[..., list[Any]]]:
        """A function running SQL (``?`` placeholders) inside one committed transaction."""
        if self.postgres:
            with psycopg.connect(self.url) as conn:
                def run(sql: str, *params: Any) -> list[Any]:
                    cur = conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
                    return cur.fetchall() if cur.description else []
                yield run
        else:
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                with conn:
                    yield lambda sql, *params: conn.execute(sql, params).fetchall()
            finally:
                conn.close()

    def ids(self) -> list[int]:
        with self.transaction() as run:
            return [r[0] for r in run(f"SELECT {self.nid} FROM {self.table} ORDER BY {self.nid}")]


def _ordinal(registry: Registry, nid: int) -> int:
    return AuditStore.for_recorder(registry.recorder).leaves_for([nid])[nid][0]


def _flip_one_byte(raw: RawStore, nid: int) -> None:
    with raw.transaction() as run:
        (state,) = run(f"SELECT state FROM {raw.table} WHERE {raw.nid} = ?", nid)[0]
        changed = bytearray(state)
        changed[len(changed) // 2] ^= 0x01
        run(f"UPDATE {raw.table} SET state = ? WHERE {raw.nid} = ?", bytes(changed), nid)


def _delete(raw: RawStore, nid: int) -> None:
    with raw.transaction() as run:
        run(f"DELETE FROM {raw.table} WHERE {raw.nid} = ?", nid)


def _swap(raw: RawStore, a: int, b: int) -> None:
    with raw.transaction() as run:
        run(f"UPDATE {raw.table} SET {raw.nid} = -1 WHERE {raw.nid} = ?", a)
        run(f"UPDATE {raw.table} SET {raw.nid} = ? WHERE {raw.nid} = ?", a, b)
        run(f"UPDATE {raw.table} SET {raw.nid} = ? WHERE {raw.nid} = -1", b)


def _insert_forged(raw: RawStore, at: int, member: UUID) -> None:
    """Make room at log position ``at`` (renumber everything after it) and put a forgery there."""
    oid = str(member) if raw.postgres else member.hex
    with raw.transaction() as run:
        topic, state = run(f"SELECT topic, state FROM {raw.table} WHERE {raw.nid} = ?", at)[0]
        run(f"UPDATE {raw.table} SET {raw.nid} = -({raw.nid} + 1) WHERE {raw.nid} >= ?", at)
        run(f"UPDATE {raw.table} SET {raw.nid} = -{raw.nid} WHERE {raw.nid} < 0")
        run(
            f"INSERT INTO {raw.table} (originator_id, originator_version, topic, state, {raw.nid})"
            " VALUES (?, 99, ?, ?, ?)",
            oid, topic, state, at,
        )


def test_an_untouched_log_verifies(sealed: DemoMembers, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _verify(capsys)

    assert code == 0, report
    assert report["ok"] and report["heads"] == 2 and report["witness_heads"] == 2
    assert report["events_checked"] == report["leaves"] > 30


def test_one_byte_changed_in_one_event_is_named_edited_at_its_position(
    sealed: DemoMembers, registry: Registry, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = RawStore(store_url)
    target = raw.ids()[12]
    position = _ordinal(registry, target)

    _flip_one_byte(raw, target)
    code, report = _verify(capsys)

    assert code == 1
    first = report["findings"][0]
    assert (first["kind"], first["position"]) == ("edited", position)
    assert f"leaf {position}: edited" in first["message"]
    # No head holds over the events as they now are; sealing again is not the advice.
    assert not any("harbor seal" in note for note in report["notes"]), report["notes"]


def test_a_deleted_event_is_named_missing_at_its_position(
    sealed: DemoMembers, registry: Registry, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = RawStore(store_url)
    target = raw.ids()[7]
    position = _ordinal(registry, target)

    _delete(raw, target)
    code, report = _verify(capsys)

    assert code == 1
    first = report["findings"][0]
    assert (first["kind"], first["position"]) == ("missing", position)
    assert f"notification id {target}" in first["message"]


def test_two_swapped_events_are_named_reordered_at_the_first_of_them(
    sealed: DemoMembers, registry: Registry, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = RawStore(store_url)
    ids = raw.ids()
    a, b = ids[5], ids[20]
    position, other = _ordinal(registry, a), _ordinal(registry, b)

    _swap(raw, a, b)
    code, report = _verify(capsys)

    assert code == 1
    first = report["findings"][0]
    assert (first["kind"], first["position"]) == ("reordered", position)
    assert f"now at position {other}" in first["message"]


def test_a_forged_event_inserted_among_sealed_ones_is_named_extra_at_its_position(
    sealed: DemoMembers, registry: Registry, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = RawStore(store_url)
    at = raw.ids()[10]
    position = _ordinal(registry, at)

    _insert_forged(raw, at, sealed.liu_yang)
    code, report = _verify(capsys)

    assert code == 1
    first = report["findings"][0]
    assert (first["kind"], first["position"]) == ("extra", position)
    assert "version 99" in first["message"]


def test_an_event_hidden_behind_its_id_as_a_blob_is_named_edited(
    sealed: DemoMembers, registry: Registry, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite finds a stream by its id's text: the same 16 bytes stored as a blob hide the
    event from every read while hashing like it, so a forged copy could take its place."""
    if store_url.startswith("postgres"):
        pytest.skip("PostgreSQL's uuid column holds nothing but a uuid")
    raw = RawStore(store_url)
    target = raw.ids()[-1]
    position = _ordinal(registry, target)
    with raw.transaction() as run:
        oid, version, topic, state = run(
            f"SELECT originator_id, originator_version, topic, state FROM {raw.table}"
            f" WHERE {raw.nid} = ?",
            target,
        )[0]
        hide = f"UPDATE {raw.table} SET originator_id = ? WHERE {raw.nid} = ?"
        run(hide, bytes.fromhex(oid), target)
        run(
            f"INSERT INTO {raw.table} (originator_id, originator_version, topic, state)"
            " VALUES (?, ?, ?, ?)",
            oid, version, topic, state.replace("回访".encode(), "伪造".encode()),
        )

    code, report = _verify(capsys)

    assert code == 1
    first = report["findings"][0]
    assert (first["kind"], first["position"]) == ("edited", position)
    assert "originator_id is stored as blob" in first["message"]


def test_a_rewritten_leaf_hash_is_blamed_on_the_leaf_table_not_the_events(
    sealed: DemoMembers, registry: Registry, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with RawStore(store_url).transaction() as run:
        run("UPDATE harbor_merkle_leaves SET leaf_hash = ? WHERE ordinal = 3", b"\x00" * 32)

    code, report = _verify(capsys)

    assert code == 1
    assert (report["findings"][0]["kind"], report["findings"][0]["position"]) == ("leaf-table", 3)


def test_events_rewritten_with_their_leaves_are_caught_by_nodes_heads_and_witness(
    sealed: DemoMembers, registry: Registry, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = RawStore(store_url)
    target = raw.ids()[4]
    position = _ordinal(registry, target)
    _flip_one_byte(raw, target)
    (row,) = AuditStore.for_recorder(registry.recorder).events_at([target]).values()
    with raw.transaction() as run:  # the attacker recomputes the event's leaf hash too
        run(
            "UPDATE harbor_merkle_leaves SET leaf_hash = ? WHERE ordinal = ?",
            event_leaf_hash(*row[1:]),
            position,
        )

    code, report = _verify(capsys)

    assert code == 1
    first = report["findings"][0]
    assert first["kind"] == "node-table"
    assert first["position"] <= position < first["position"] + 2
    assert {"tree-head", "witness"} <= {f["kind"] for f in report["findings"]}


def test_sealing_refuses_to_sign_a_log_that_no_longer_extends_the_last_head(
    sealed: DemoMembers, registry: Registry, store_url: str, audit_env: Path
) -> None:
    raw = RawStore(store_url)
    _delete(raw, raw.ids()[-1])
    with raw.transaction() as run:
        run("DELETE FROM harbor_merkle_leaves WHERE ordinal = (SELECT MAX(ordinal) FROM"
            " harbor_merkle_leaves)")
    audit = AuditLog(registry.recorder)

    with pytest.raises(AuditError, match="not an extension"):
        audit.seal(Signer.from_file(audit_env / "keys" / "signing.pem"))


def test_a_node_planted_beyond_the_tree_is_reported(
    sealed: DemoMembers, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with RawStore(store_url).transaction() as run:
        run("INSERT INTO harbor_merkle_nodes (level, idx, hash) VALUES (10, 0, ?)", b"\x01" * 32)

    code, report = _verify(capsys)

    assert code == 1
    assert [f["kind"] for f in report["findings"]] == ["node-table"]
    assert "level 10, index 0" in report["findings"][0]["message"]


def test_a_leaf_planted_where_the_next_seal_must_write_stops_sealing_with_a_clear_error(
    sealed: DemoMembers,
    registry: Registry,
    store_url: str,
    audit_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _contacts(registry, sealed.old_comrade, 1)
    with RawStore(store_url).transaction() as run:  # the coming event's id, at ordinal -1
        run(
            "INSERT INTO harbor_merkle_leaves (ordinal, notification_id, leaf_hash)"
            " VALUES (-1, ?, ?)",
            RawStore(store_url).ids()[-1], b"\x02" * 32,
        )  # fmt: skip

    with pytest.raises(AuditError, match="run `harbor verify` to find it"):
        AuditLog(registry.recorder).seal(Signer.from_file(audit_env / "keys" / "signing.pem"))
    code, report = _verify(capsys)
    assert code == 1
    assert "negative ordinals (first -1)" in report["findings"][0]["message"]


def test_events_whose_seal_failed_after_adding_their_leaves_are_still_counted_unsealed(
    sealed: DemoMembers,
    registry: Registry,
    audit_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _contacts(registry, sealed.old_comrade, 3)
    (audit_env / "not-a-file").mkdir()
    with pytest.raises(AuditError, match="nothing was signed"):  # the leaves went in first
        AuditLog(registry.recorder).seal(
            Signer.from_file(audit_env / "keys" / "signing.pem"), audit_env / "not-a-file"
        )
    assert AuditLog(registry.recorder).without_leaves() == 0

    code, report = _verify(capsys)

    assert code == 0 and report["unsealed"] == 3
    assert audit_status(registry)["unsealed_events"] == 3


def test_a_seal_between_reading_the_heads_and_a_witness_file_is_not_called_deleted_heads(
    sealed: DemoMembers, registry: Registry, audit_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A third party's copy of the sealers' file synced while verify runs may hold a head
    stored after verify read the heads: heads are only added, so that is no deletion."""
    _contacts(registry, sealed.old_comrade, 1)
    audit = AuditLog(registry.recorder)
    signer = Signer.from_file(audit_env / "keys" / "signing.pem")
    witness = audit_env / "witness.txt"
    read_heads = audit.store.head_rows

    def heads_then_a_seal() -> Any:
        rows = read_heads()
        AuditLog(registry.recorder).seal(signer, witness)
        return rows

    with monkeypatch.context() as patch:
        patch.setattr(audit.store, "head_rows", heads_then_a_seal)
        report = verify_log(audit, witness_files=[witness])

    assert report.ok, [f.message for f in report.findings]
    assert report.witness_heads == 3


def test_a_witness_line_cut_short_by_a_failed_write_is_taken_back(
    sealed: DemoMembers, registry: Registry, audit_env: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import audit.log

    witness = audit_env / "witness.txt"
    before = witness.read_bytes()

    def disk_full(path: Path, head: object) -> None:
        with path.open("ab") as f:
            f.write(b"harbor-tree-head/1 99 ab")
        raise OSError(28, "No space left on device")

    _contacts(registry, sealed.old_comrade, 1)
    with monkeypatch.context() as patch, pytest.raises(AuditError, match="no head was stored"):
        patch.setattr(audit.log, "append_witness_line", disk_full)
        AuditLog(registry.recorder).seal(
            Signer.from_file(audit_env / "keys" / "signing.pem"), witness
        )

    assert witness.read_bytes() == before
    assert _verify(capsys)[0] == 0
