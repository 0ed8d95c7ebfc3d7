"""The append and the stream reads that bypass psycopg's cursors (store/fastpath.py).

Every other test goes through them too; these pin down what the shortcut itself
must keep: bytes stored exactly, the binary array format, and a session that lost
its prepared statements. What any append must keep (bytes, ids, receipts, all or
nothing) is checked on SQLite's recorder as well.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from domain.receipts import CommandReceipt, ReceiptAt
from domain.registry import Registry
from store import open_registry
from store.async_reads import AsyncReads
from store.fastpath import TEXT_OID, AsyncPreparedStatement, array
from tests.conftest import TODAY


def _events(stream: uuid.UUID, *states: bytes) -> list[StoredEvent]:
    return [
        StoredEvent(stream, version, "tests:党员.事件", state)
        for version, state in enumerate(states, start=1)
    ]


def test_a_text_array_in_binary_has_its_header_and_each_length() -> None:
    packed = array(TEXT_OID, ["甲".encode(), b""])

    assert packed == (
        b"\x00\x00\x00\x01"  # one dimension
        b"\x00\x00\x00\x00"  # no nulls
        b"\x00\x00\x00\x19"  # of text
        b"\x00\x00\x00\x02\x00\x00\x00\x01"  # two elements, from index 1
        b"\x00\x00\x00\x03\xe7\x94\xb2"  # 甲 in UTF-8
        b"\x00\x00\x00\x00"  # the empty string
    )


def test_what_is_appended_reads_back_byte_for_byte(registry: Registry) -> None:
    recorder = registry.recorder
    stream = uuid.uuid4()
    states = [b"", b"\x00\xff" * 5000, '{"名":"甲"}'.encode()]

    ids = recorder.insert_events(_events(stream, *states))
    read = recorder.select_events(stream)

    assert ids is not None and len(ids) == 3 and list(ids) == sorted(ids)
    assert [(e.originator_id, e.originator_version, e.topic, e.state) for e in read] == [
        (stream, n, "tests:党员.事件", state) for n, state in enumerate(states, start=1)
    ]
    assert recorder.select_streams([stream, uuid.uuid4()]) == {stream: list(read)}  # type: ignore[attr-defined]


def test_each_id_returned_is_its_events_and_each_receipt_gets_its_commands_last(
    registry: Registry,
) -> None:
    recorder = registry.recorder
    a, b = uuid.uuid4(), uuid.uuid4()
    events = [*_events(a, b"a1", b"a2"), *_events(b, b"b1")]  # two commands: a1+a2, b1
    receipts = [
        ReceiptAt(CommandReceipt("u", "key-a", "f-a", '{"n": "a"}'), last_event=1),
        ReceiptAt(CommandReceipt("u", "key-b", "f-b", '{"n": "b"}'), last_event=2),
    ]

    ids = recorder.insert_events(events, receipts=receipts)

    assert ids is not None
    stored = {n.id: (n.originator_id, n.originator_version)
              for n in recorder.select_notifications(min(ids), 10)}
    assert [stored[i] for i in ids] == [(a, 1), (a, 2), (b, 1)]
    kept_a = recorder.find_receipt("u", "key-a")  # type: ignore[attr-defined]
    kept_b = recorder.find_receipt("u", "key-b")  # type: ignore[attr-defined]
    assert (kept_a.position, kept_a.outcome_json) == (ids[1], '{"n": "a"}')
    assert (kept_b.position, kept_b.fingerprint) == (ids[2], "f-b")


def test_a_taken_stream_version_fails_the_whole_append(registry: Registry) -> None:
    recorder = registry.recorder
    taken, fresh = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events(_events(taken, b"first"))

    with pytest.raises(IntegrityError):
        recorder.insert_events([*_events(fresh, b"new"), *_events(taken, b"again")])

    assert recorder.select_events(fresh) == []
    assert [e.state for e in recorder.select_events(taken)] == [b"first"]


def test_a_session_that_lost_its_prepared_statements_prepares_them_again(pg_url: str) -> None:
    two = {"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "0"}
    registry = open_registry(pg_url, clock=lambda: TODAY, extra_env=two)
    recorder = registry.recorder
    pool = recorder.datastore.pool  # type: ignore[attr-defined]
    kept = pool.getconn()  # so that every call below runs on the other session
    try:
        first, second = uuid.uuid4(), uuid.uuid4()
        recorder.insert_events(_events(first, b"a"))  # prepared on the other session
        recorder.held.close()  # type: ignore[attr-defined]  # the session back to the pool
        session = pool.getconn()
        session.execute("DEALLOCATE ALL")  # as a pooler's DISCARD ALL would
        session.commit()
        pool.putconn(session)

        recorder.insert_events(_events(second, b"b"))

        assert recorder._append.reprepared == 1  # type: ignore[attr-defined]
        assert [e.state for e in recorder.select_events(second)] == [b"b"]
    finally:
        pool.putconn(kept)
        registry.close()


def test_the_loops_statement_numbers_psycopgs_placeholders() -> None:
    statement = AsyncPreparedStatement("s", "SELECT %s::int, %s FROM t WHERE a = %s")

    assert statement.sql == b"SELECT $1::int, $2 FROM t WHERE a = $3"


def test_a_tail_read_on_the_loop_gives_the_stored_bytes(pg_registry: Registry) -> None:
    recorder = pg_registry.recorder
    stream = uuid.uuid4()
    states = [b"\x00\xff\\x", '{"名":"甲"}'.encode(), b""]
    recorder.insert_events(_events(stream, *states))
    reads = AsyncReads(recorder.datastore, recorder.events_table_name)  # type: ignore[attr-defined]

    async def read() -> tuple[list[StoredEvent], list[tuple[object, ...]]]:
        await reads.open()
        try:
            return await reads.tail_and_rows(stream, 1, "SELECT %s::text AS t", ("甲",))
        finally:
            await reads.close()

    events, rows = asyncio.run(read())

    assert [(e.originator_version, e.topic, e.state) for e in events] == [
        (2, "tests:党员.事件", states[1]),
        (3, "tests:党员.事件", b""),
    ]
    assert rows == [("甲",)]


def test_the_loops_statement_is_prepared_again_when_the_session_lost_it(pg_url: str) -> None:
    statement = AsyncPreparedStatement("harbor_test_echo", "SELECT %s::int + 1")

    async def run() -> list[bytes | None]:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
            first = (await statement.run(conn, [b"41"])).get_value(0, 0)
            await conn.execute("DEALLOCATE ALL")  # as a pooler's DISCARD ALL would
            second = (await statement.run(conn, [b"1"])).get_value(0, 0)
            return [first, second]

    assert asyncio.run(run()) == [b"42", b"2"]
    assert statement.reprepared == 1
