"""`harbor db copy`: a store moved to the other backend is the same store.

From SQLite to PostgreSQL (a centre outgrowing the embedded file) and back (an auditor's
copy as one file): the same events at the same log positions (gaps included), the same
receipts, credentials and signed heads — so a retried command is still recognised, a
token still works and the audit log still verifies — and projections rebuilt to the same
rows. An interrupted copy goes on; a target holding another log is refused untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse
from uuid import UUID

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.demo import load_article_cases
from api.store_copy import CopyRefused, copy_store
from audit.keys import Signer, now_utc, public_pem
from audit.log import AuditLog
from audit.storage import KeyRecord
from audit.verify import verify_log
from domain.registry import Registry
from projections.queries import ReadModels
from projections.runner import Projector, rebuild
from store import open_registry
from store.sql import Db
from store.tokens import TokenStore
from tests.conftest import PG_ADMIN_URL, TODAY, fresh_pg_database, require_postgres
from tests.projection_support import assert_same_rows, live_rows
from tests.support import as_unit, event_count

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def other_store(store_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty store on the other backend: a fresh PostgreSQL database, or an SQLite file."""
    if store_url.startswith("postgres"):
        yield f"sqlite:///{tmp_path / 'copy.db'}"
        return
    with fresh_pg_database("harbor_copy") as url:
        yield url


@pytest.fixture
def target(other_store: str) -> Iterator[Registry]:
    """A Registry on the other store."""
    opened = open_registry(other_store, clock=lambda: TODAY)
    yield opened
    opened.close()


def _log(registry: Registry) -> list[tuple[Any, ...]]:
    """Every event as the log gives it: position, stream, version, topic, bytes."""
    return [
        (n.id, n.originator_id, n.originator_version, n.topic, bytes(n.state))
        for n in registry.recorder.select_notifications(1, 10_000)
    ]


def _rows(registry: Registry, table: str, order: str) -> list[tuple[Any, ...]]:
    """A table's rows in a fixed order, blobs as bytes."""
    return [
        tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
        for row in Db(registry.recorder.datastore).query(  # type: ignore[attr-defined]
            f"SELECT * FROM {table} ORDER BY {order}"
        )
    ]


def _a_sealed_store(registry: Registry) -> tuple[UUID, str]:
    """The article's cases, a credential, a sealed head; on PostgreSQL a gap in the log."""
    members = load_article_cases(registry)
    token = TokenStore(Db(registry.recorder.datastore)).issue(  # type: ignore[attr-defined]
        "daning-center", "unit", "clerk", today=TODAY
    )
    audit = AuditLog(registry.recorder)
    signer = Signer(Ed25519PrivateKey.generate())
    audit.keep_key(KeyRecord(signer.key_id, public_pem(signer.public_key), now_utc()))
    audit.seal(signer)
    recorder: Any = registry.recorder
    if Db(recorder.datastore).backend == "postgres":
        # The id of an append that rolled back is never used: the log has a gap here.
        table = f"{recorder.datastore.schema or 'public'}.{recorder.events_table_name}"
        with Db(recorder.datastore).transaction() as cur:
            cur.execute("SELECT nextval(pg_get_serial_sequence(?, 'notification_id'))", (table,))
    registry.make_contact(as_unit(_holder(registry, members.liu_yang)), members.liu_yang,
                          occurred_on=date(2026, 11, 20), channel="phone", note="电话联系上了",
                          idempotency_key="contact-1")
    audit.seal(signer)
    return members.liu_yang, token


def _holder(registry: Registry, member: UUID) -> str:
    """The unit holding the member now (its projections caught up first)."""
    Projector(registry).catch_up()
    return str(ReadModels(registry).member_status(member)["holder_unit_id"])


def test_a_store_copied_to_the_other_backend_is_the_same_store(
    registry: Registry, target: Registry
) -> None:
    """Log, receipts, credentials and heads copied as stored; projections rebuilt the same."""
    member, token = _a_sealed_store(registry)
    source_log = _log(registry)

    report = copy_store(registry, target, batch=7)  # several pages

    assert report.events == len(source_log) and report.head == source_log[-1][0]
    assert _log(target) == source_log  # same positions, gaps and bytes
    for table, order in (("harbor_command_receipts", "unit_id, key"),
                         ("harbor_tree_heads", "seq"), ("harbor_signing_keys", "key_id"),
                         ("harbor_merkle_leaves", "ordinal"), ("harbor_tokens", "token_id")):
        assert _rows(target, table, order) == _rows(registry, table, order), table
    verdict = verify_log(AuditLog(target.recorder))
    assert verdict.ok and verdict.heads == 2 and verdict.leaves == len(source_log)
    tokens = TokenStore(Db(target.recorder.datastore))  # type: ignore[attr-defined]
    credential = tokens.check(token, TODAY)
    assert credential is not None and credential.unit_id == "daning-center"
    Projector(registry).catch_up()
    assert_same_rows(rebuilt(target), live_rows(registry), "copy")

    # The retried command is recognised on the target; a new one goes after the head.
    holder = as_unit(_holder(target, member))
    again = target.make_contact(holder, member, occurred_on=date(2026, 11, 20), channel="phone",
                                note="电话联系上了", idempotency_key="contact-1")
    assert again.replayed and event_count(target) == len(source_log)
    new = target.make_contact(holder, member, occurred_on=date(2026, 11, 21), channel="phone",
                              note="又联系了", idempotency_key="contact-2")
    assert new.position is not None and new.position > report.head


def rebuilt(registry: Registry) -> dict[str, list[tuple[Any, ...]]]:
    """The live projection rows once a rebuild ran (the copy's own)."""
    rebuild(registry)
    return live_rows(registry)


def test_an_interrupted_copy_goes_on_and_a_foreign_target_is_refused(
    registry: Registry, target: Registry, tmp_path: Path
) -> None:
    """Stopped after its first page, the copy run again stores every event once."""
    load_article_cases(registry)
    pages = 0

    def stop_after_one_page(what: str, done: int, total: int) -> None:
        nonlocal pages
        if what == "events" and done:
            pages += 1
            if pages == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(registry, target, batch=5, progress=stop_after_one_page)
    assert [n[0] for n in _log(target)] == [n[0] for n in _log(registry)][:5]

    report = copy_store(registry, target, batch=5)

    assert report.already == 5 and report.events == len(_log(registry)) - 5
    assert _log(target) == _log(registry)

    other = open_registry(f"sqlite:///{tmp_path / 'other.db'}", clock=lambda: TODAY)
    try:
        load_article_cases(other, recorded_by="someone else")  # another store's log
        before = _log(other)
        with pytest.raises(CopyRefused, match="copy into an empty database"):
            copy_store(registry, other)
        assert _log(other) == before
        tables = Db(other.recorder.datastore).query(  # type: ignore[attr-defined]
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
        assert ("harbor_tokens",) not in tables  # not even an empty table was made there
    finally:
        other.close()


def test_harbor_db_copy_copies_rebuilds_verifies_and_refuses_its_own_store(
    tmp_path: Path,
) -> None:
    """The command line: a SQLite store into another file, then the mistakes it refuses."""
    source, copy = tmp_path / "harbor.db", tmp_path / "copy.db"
    env = {**os.environ, "HARBOR_DATABASE_URL": f"sqlite:///{source}",
           "HARBOR_SIGNING_KEY": str(tmp_path / "key.pem"), "HARBOR_WITNESS_FILE":
           str(tmp_path / "witness.txt"), "HARBOR_PUBLIC_KEYS_DIR": str(tmp_path / "keys")}
    harbor = str(ROOT / ".venv" / "bin" / "harbor")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([harbor, *args], env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    for step in (["demo"], ["keys", "init"], ["seal"]):
        assert run(*step).returncode == 0, step
    done = run("db", "copy", "--to", f"sqlite:///{copy}")
    assert done.returncode == 0, done.stderr
    assert "copied 26 events up to log position 26" in done.stdout
    assert "audit log verified on the target: 26 leaves, 1 signed tree heads" in done.stdout
    scripted = run("--json", "db", "copy", "--to", f"sqlite:///{tmp_path / 'second.db'}")
    assert scripted.returncode == 0, scripted.stderr
    said = json.loads(scripted.stdout)
    assert (said["copied_events"], said["head"], said["moved"], said["audit"]) == (
        26, 26, False, {"ok": True, "leaves": 26, "heads": 1}
    )
    assert said["rows"]["harbor_tree_heads"] == 1

    same = run("db", "copy", "--to", f"sqlite:///{tmp_path}/../{tmp_path.name}/harbor.db")
    assert same.returncode == 2 and "names the store being copied" in same.stderr
    bad = run("db", "copy", "--to", "mysql://nowhere/db")
    assert bad.returncode == 2 and "--to" in bad.stderr
    gone = run("db", "copy", "--to", "sqlite:///:memory:")  # copied, then lost at exit
    assert gone.returncode == 2 and "in-memory" in gone.stderr, gone.stdout


def test_a_copy_made_while_the_store_was_written_to_says_so_and_the_next_one_catches_up(
    registry: Registry, target: Registry
) -> None:
    """A command recorded mid-copy: the report says the store moved; run again, it is there."""
    members = load_article_cases(registry)
    holder = as_unit(_holder(registry, members.old_comrade))
    written = False

    def write_meanwhile(what: str, done: int, total: int) -> None:
        nonlocal written
        if what == "events" and done and not written:
            written = True
            registry.make_contact(holder, members.old_comrade, occurred_on=date(2026, 11, 20),
                                  channel="phone", note="复制时联系", idempotency_key="mid-copy")

    first = copy_store(registry, target, batch=5, progress=write_meanwhile)
    again = copy_store(registry, target, batch=5)

    assert first.moved and _log(target) == _log(registry)
    assert not again.moved and again.events == 1
    receipts = ("harbor_command_receipts", "unit_id, key")
    assert _rows(target, *receipts) == _rows(registry, *receipts)


def test_a_target_with_rows_of_its_own_is_refused_untouched(
    registry: Registry, target: Registry
) -> None:
    """A key registered on the empty target first: its own head would shadow the source's."""
    load_article_cases(registry)
    signer = Signer(Ed25519PrivateKey.generate())
    AuditLog(target.recorder).keep_key(
        KeyRecord(signer.key_id, public_pem(signer.public_key), now_utc())
    )

    with pytest.raises(CopyRefused, match="harbor_signing_keys"):
        copy_store(registry, target)
    assert _log(target) == []


def test_a_revocation_since_the_last_run_is_carried_and_a_changed_row_refused(
    registry: Registry, target: Registry
) -> None:
    """Run again after a token was revoked: revoked on the target too. A receipt edited on
    the target since: the next run refuses rather than keep either."""
    load_article_cases(registry)
    source_tokens = TokenStore(Db(registry.recorder.datastore))  # type: ignore[attr-defined]
    token = source_tokens.issue("daning-center", "unit", "clerk", today=TODAY)
    copy_store(registry, target)
    target_tokens = TokenStore(Db(target.recorder.datastore))  # type: ignore[attr-defined]
    assert target_tokens.check(token, TODAY) is not None

    token_id = _rows(registry, "harbor_tokens", "token_id")[0][1]
    assert source_tokens.revoke(token_id)
    again = copy_store(registry, target)

    assert again.moved is False and again.events == 0
    assert TokenStore(Db(target.recorder.datastore)).check(token, TODAY) is None  # type: ignore[attr-defined]
    with Db(target.recorder.datastore).transaction() as cur:  # type: ignore[attr-defined]
        cur.execute("UPDATE harbor_command_receipts SET outcome = '{}'")
    with pytest.raises(CopyRefused, match="harbor_command_receipts holds a row"):
        copy_store(registry, target)


def test_a_resumed_copy_whose_target_was_written_to_meanwhile_is_refused_before_writing(
    registry: Registry, target: Registry
) -> None:
    """A token issued on the half-copied target: refused, and the rest of the log is not
    written first (it used to be, and only then refused)."""
    load_article_cases(registry)

    def stop_after_one_page(what: str, done: int, total: int) -> None:
        if what == "events" and done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_store(registry, target, batch=5, progress=stop_after_one_page)
    TokenStore(Db(target.recorder.datastore)).issue(  # type: ignore[attr-defined]
        "daning-center", "unit", "clerk", today=TODAY
    )
    half = _log(target)

    with pytest.raises(CopyRefused, match="harbor_tokens holds a row"):
        copy_store(registry, target, batch=5)
    assert _log(target) == half


def test_the_store_itself_under_another_name_is_refused(store_url: str) -> None:
    """The same database by another spelling of its URL (PostgreSQL: localhost for
    127.0.0.1; SQLite: the file through a relative path) is not a target."""
    if store_url.startswith("postgres"):
        other = store_url.replace("127.0.0.1", "localhost")
    else:
        path = Path(store_url.removeprefix("sqlite:///"))
        other = f"sqlite:///{path.parent}/../{path.parent.name}/{path.name}"
    assert other != store_url
    source = open_registry(store_url, clock=lambda: TODAY)
    same = open_registry(other, clock=lambda: TODAY)
    try:
        load_article_cases(source)
        with pytest.raises(CopyRefused, match="is the store being copied"):
            copy_store(source, same)
    finally:
        same.close()
        source.close()


@pytest.fixture
def schema_database() -> Iterator[str]:
    """A PostgreSQL database whose Harbor store lives in the schema `centre`."""
    with fresh_pg_database("harbor_copy") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA centre")
        yield url


@pytest.mark.parametrize("direction", ["from the schema", "into the schema"])
def test_a_store_in_its_own_postgresql_schema_is_copied_whole(
    schema_database: str, tmp_path: Path, direction: str
) -> None:
    """POSTGRES_SCHEMA: receipts and the audit log are read from and written to that
    schema, not to public."""
    in_schema = open_registry(schema_database, clock=lambda: TODAY,
                              extra_env={"POSTGRES_SCHEMA": "centre"})
    file = open_registry(f"sqlite:///{tmp_path / 'file.db'}", clock=lambda: TODAY)
    source, target = (in_schema, file) if direction == "from the schema" else (file, in_schema)
    try:
        _a_sealed_store(source)
        copy_store(source, target)

        for table, order in (("harbor_command_receipts", "unit_id, key"),
                             ("harbor_tree_heads", "seq")):
            qualified = f"centre.{table}"
            assert _rows(in_schema, qualified, order) == _rows(file, table, order), table
            assert _rows(in_schema, qualified, order) != []
        assert verify_log(AuditLog(target.recorder)).heads == 2
    finally:
        file.close()
        in_schema.close()


def test_harbor_db_copy_names_a_target_database_that_does_not_exist(tmp_path: Path) -> None:
    """The command line says to create the database, and copies nothing."""
    require_postgres()
    missing = urlunparse(urlparse(PG_ADMIN_URL)._replace(path="/harbor_copy_not_there"))
    env = {**os.environ, "HARBOR_DATABASE_URL": f"sqlite:///{tmp_path / 'harbor.db'}"}
    harbor = str(ROOT / ".venv" / "bin" / "harbor")
    assert subprocess.run([harbor, "demo"], env=env, capture_output=True, check=False,
                          timeout=120).returncode == 0
    done = subprocess.run([harbor, "db", "copy", "--to", missing], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "does not exist; create it first (`createdb harbor_copy_not_there`" in done.stderr
