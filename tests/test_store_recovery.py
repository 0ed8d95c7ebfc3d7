"""Reads after PostgreSQL lost its sessions (a restart), and with the server out of reach.

A restart breaks every connection the process holds, and a broken one is only found
out by using it: reads retry once on a connection that works, so none fails for it.
A store still out of reach is a 503 STORE_UNAVAILABLE with Retry-After, never a 500.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from eventsourcing.postgres import PostgresDatastore
from fastapi.testclient import TestClient

from api.demo import DemoMembers, load_article_cases
from api.http.app import create_app
from domain.errors import Unavailable
from domain.registry import Registry
from projections.queries import ReadModels
from projections.runner import Projector
from store import open_registry
from store.sql import Db
from tests.conftest import TODAY
from tests.support import as_unit, register_article_units

UNIT = "daning-center"


@pytest.fixture
def registry(pg_url: str) -> Iterator[Registry]:
    """A PostgreSQL store with the article's cases, projected.

    A fresh tracking table, as tests/test_http_api.py's fixture explains.
    """
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS harbor_tracking, bkup1_harbor_tracking")
    opened = open_registry(pg_url, clock=lambda: TODAY)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def members(registry: Registry) -> DemoMembers:
    """The article's two members, their cases projected."""
    loaded = load_article_cases(registry)
    Projector(registry).catch_up()
    return loaded


def _terminate_sessions(url: str) -> int:
    """End every session on the store's database from outside, as a restart would."""
    dbname = urlparse(url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_read_models_answer_right_after_the_sessions_are_terminated(
    pg_url: str, registry: Registry, members: DemoMembers
) -> None:
    models = ReadModels(registry)
    expected = models.unit_queue(UNIT)
    # Several threads at once: connections parked for reads and idle in the pool.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: models.unit_queue(UNIT), range(40)))
    assert _terminate_sessions(pg_url) >= 2
    for _ in range(10):  # not one of them fails on a connection the restart broke
        assert models.unit_queue(UNIT) == expected
        assert models.member_status(members.liu_yang)["member_id"] == str(members.liu_yang)


def test_http_reads_answer_right_after_the_sessions_are_terminated(
    pg_url: str, registry: Registry, members: DemoMembers
) -> None:
    app = create_app(registry, follow=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        unit = {"Authorization": f"Bearer {app.state.tokens.issue(UNIT, 'unit', 'clerk')}"}
        auditor = app.state.tokens.issue("sh-org-dept", "auditor", "auditor")
        paths = [
            (f"/units/{UNIT}/queue", unit),
            (f"/members/{members.old_comrade}", unit),  # on the event loop (store/async_reads)
            (f"/members/{members.old_comrade}", {"Authorization": f"Bearer {auditor}"}),
        ]
        expected = []
        for path, headers in paths:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            expected.append(response.json())
        assert _terminate_sessions(pg_url) >= 2
        for _ in range(5):
            for (path, headers), before in zip(paths, expected, strict=True):
                response = client.get(path, headers=headers)
                assert response.status_code == 200, (path, response.text)
                assert response.json() == before


def test_a_read_with_the_store_out_of_reach_is_503_store_unavailable(
    registry: Registry, members: DemoMembers
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = PostgresDatastore(
        "harbor", "127.0.0.1", str(port), "postgres", "", connect_timeout=1.0
    )
    app = create_app(registry, follow=False)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            token = app.state.tokens.issue(UNIT, "unit", "clerk")
            app.state.models.db = Db(nowhere)
            response = client.get(
                f"/units/{UNIT}/queue", headers={"Authorization": f"Bearer {token}"}
            )
    finally:
        nowhere.close()
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["code"] == "STORE_UNAVAILABLE" and body["status"] == 503, body
    assert "retry" in body["detail"]


def test_a_sqlite_store_locked_by_another_writer_is_named_as_locked(tmp_path: Path) -> None:
    """Not 'could not be reached': the file is there, another process holds its lock."""
    path = tmp_path / "locked.db"
    registry = open_registry(f"sqlite:///{path}", extra_env={"SQLITE_LOCK_TIMEOUT": "1"})
    register_article_units(registry)
    other = sqlite3.connect(path)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(Unavailable, match="locked by another process"):
            registry.enrol_member(
                as_unit("daning-center"), name="甲", id_number="310109195001019901",
                standing="full", household_region="上海",
            )  # fmt: skip
    finally:
        other.close()
        registry.close()


def _answer_lost_once(registry: Registry, monkeypatch: pytest.MonkeyPatch, *,
                      committed: bool) -> list[int]:
    """Make the next append lose its connection — after its commit (``committed``: only
    the answer is lost, as when the network or the server goes at that moment) or before
    it. Returns a list that counts the appends attempted."""
    recorder = registry.recorder
    held = recorder.held  # type: ignore[attr-defined]
    real = held.run
    tries: list[int] = []

    def flaky(statement: object, params: object) -> object:
        if statement is not recorder._append:  # type: ignore[attr-defined]
            return real(statement, params)
        tries.append(1)
        if len(tries) == 1:
            if committed:
                real(statement, params)
            raise OperationalError("server closed the connection unexpectedly")
        return real(statement, params)

    monkeypatch.setattr(held, "run", flaky)
    return tries


@pytest.mark.parametrize("committed", [True, False], ids=["answer lost", "append lost"])
@pytest.mark.parametrize("group_commit", ["off", "on"])
def test_a_keyless_command_whose_append_lost_its_connection_is_stored_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, committed: bool, group_commit: str
) -> None:
    """The commit's outcome is unknown when the connection goes: the store is asked
    before appending again, so a command stored just before is neither stored twice nor
    refused as a race it lost (DUPLICATE_MEMBER for its own enrolment)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS harbor_tracking")
    registry = open_registry(pg_url, clock=lambda: TODAY,
                             extra_env={"HARBOR_GROUP_COMMIT": group_commit})
    try:
        register_article_units(registry)
        before = registry.position() or 0

        tries = _answer_lost_once(registry, monkeypatch, committed=committed)
        enrolled = registry.enrol_member(
            as_unit(UNIT), name="王五", id_number="310101199001010077", standing="full",
            household_region="上海", occurred_on=TODAY,
        )  # fmt: skip
        # Found stored, the append is not sent again; not stored, it is.
        assert enrolled.member_id is not None and len(tries) == (1 if committed else 2)
        tries = _answer_lost_once(registry, monkeypatch, committed=committed)
        contact = registry.make_contact(as_unit(UNIT), enrolled.member_id, occurred_on=TODAY,
                                        channel="phone", note="回访")

        assert len(tries) == (1 if committed else 2)
        stored = list(registry.member(enrolled.member_id).history)
        assert [type(e).__name__ for e in stored] == ["MemberEnrolled", "ContactMade"]
        assert (enrolled.version, contact.version) == (1, 2)
        assert (enrolled.position, contact.position) == (before + 1, before + 2)
        assert registry.position() == before + 2
    finally:
        registry.close()


@pytest.mark.parametrize("group_commit", ["off", "on"])
def test_an_append_still_running_when_its_connection_went_is_not_stored_twice(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, group_commit: str
) -> None:
    """The server still runs the first append (it waits for the table lock) when the client
    loses it: the check before appending again finds nothing, the second append queues
    behind the first, and fails on its rows once the first commits — which the recorder
    then finds stored, instead of the command deciding again on a lost race."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS harbor_tracking")
    registry = open_registry(pg_url, clock=lambda: TODAY,
                             extra_env={"HARBOR_GROUP_COMMIT": group_commit})
    blocker = psycopg.connect(pg_url)
    try:
        register_article_units(registry)
        member = registry.enrol_member(
            as_unit(UNIT), name="王五", id_number="310101199001010077", standing="full",
            household_region="上海", occurred_on=TODAY,
        ).member_id  # fmt: skip
        assert member is not None
        recorder = registry.recorder
        held = recorder.held  # type: ignore[attr-defined]
        real = held.run
        first: list[threading.Thread] = []

        def lost_while_running(statement: object, params: object) -> object:
            if statement is not recorder._append or first:  # type: ignore[attr-defined]
                return real(statement, params)
            running = threading.Thread(target=real, args=(statement, params), daemon=True)
            first.append(running)
            running.start()
            time.sleep(0.5)  # it waits for the table lock on the server
            raise OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(held, "run", lost_while_running)
        blocker.execute("LOCK TABLE harbor_events IN EXCLUSIVE MODE")
        threading.Timer(1.2, blocker.commit).start()  # after the second append queued

        contact = registry.make_contact(as_unit(UNIT), member, occurred_on=TODAY,
                                        channel="phone", note="回访")

        first[0].join(timeout=10)
        history = [type(e).__name__ for e in registry.member(member).history]
        assert history == ["MemberEnrolled", "ContactMade"]
        assert contact.version == 2 and contact.position == registry.position()
    finally:
        blocker.close()
        registry.close()
