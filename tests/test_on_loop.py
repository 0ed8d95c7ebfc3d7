"""Commands on the event loop: rules run on the loop, every blocking call elsewhere."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from api.http.on_loop import offload, on_loop
from domain.committer import Commit, GroupCommitter


def _put(stored: list[Any], *, refuse: str | None = None) -> Any:
    def put(events: list[Any], receipts: list[Any]) -> list[Any]:
        if refuse in events:
            raise IntegrityError(f"{refuse} conflicts")
        stored.append((threading.get_ident(), list(events)))
        return [("recorded", e) for e in events]

    return put


def test_a_command_decides_on_the_loop_and_waits_for_its_reads_and_commit_elsewhere() -> None:
    stored: list[Any] = []
    committer = GroupCommitter(_put(stored), max_leaders=2)
    threads: dict[str, int] = {}

    def command() -> Any:
        threads["rules"] = threading.get_ident()
        read = offload(lambda: threads.setdefault("read", threading.get_ident()) and "row")
        return read, offload(Commit(committer, ["e1", "e2"], []))

    async def main() -> Any:
        threads["loop"] = threading.get_ident()
        return await on_loop(command)

    assert asyncio.run(main()) == ("row", [("recorded", "e1"), ("recorded", "e2")])
    assert threads["rules"] == threads["loop"]  # the rules ran on the loop's thread
    assert threads["read"] != threads["loop"]  # the read did not block it
    assert stored[0][0] != threads["loop"]  # nor did the commit: a pump led it
    assert stored[0][1] == ["e1", "e2"]


def test_a_failed_blocking_call_is_raised_inside_the_command_where_it_was_made() -> None:
    committer = GroupCommitter(_put([], refuse="bad"))

    def command() -> str:
        try:
            offload(Commit(committer, ["bad"], []))
        except IntegrityError as e:
            return f"refused: {e}"
        return "stored"

    async def main() -> str:
        return await on_loop(command)

    assert asyncio.run(main()) == "refused: bad conflicts"


def test_many_commands_interleave_on_one_loop_and_share_commits() -> None:
    stored: list[Any] = []
    committer = GroupCommitter(_put(stored), max_leaders=1)

    def command(n: int) -> Any:
        first = offload(Commit(committer, [f"{n}a"], []))
        second = offload(Commit(committer, [f"{n}b"], []))
        return first + second

    async def main() -> list[Any]:
        return await asyncio.gather(*(on_loop(lambda n=n: command(n)) for n in range(50)))

    results = asyncio.run(main())
    assert results == [[("recorded", f"{n}a"), ("recorded", f"{n}b")] for n in range(50)]
    assert sorted(e for _, events in stored for e in events) == sorted(
        f"{n}{x}" for n in range(50) for x in "ab"
    )
    assert len(stored) < 100  # commands waiting behind a commit shared the next one


def test_offload_outside_a_command_simply_calls() -> None:
    here = threading.get_ident()
    assert offload(threading.get_ident) == here


@pytest.mark.parametrize("leaders", [1, 2])
def test_called_back_and_waiting_jobs_mixed_each_get_their_own_outcome(leaders: int) -> None:
    stored: list[Any] = []
    committer = GroupCommitter(_put(stored, refuse="poison"), max_batch=3, max_leaders=leaders)
    outcomes: dict[str, Any] = {}
    called_back = threading.Semaphore(0)

    def later(name: str) -> None:
        def done(job: Any) -> None:
            try:
                outcomes[name] = job.outcome()
            except IntegrityError:
                outcomes[name] = "refused"
            called_back.release()

        committer.submit_later([name], [], done)

    def waiting(name: str) -> None:
        outcomes[name] = committer.submit([name], [])

    names = [f"n{i}" for i in range(200)]
    threads = [threading.Thread(target=waiting, args=(n,), daemon=True) for n in names[::4]]
    for thread in threads:
        thread.start()
    callbacks = [n for n in names if n not in names[::4]] + ["poison"]
    for name in callbacks:
        later(name)
    for _ in callbacks:
        assert called_back.acquire(timeout=10), "a called-back job was never committed"
    for thread in threads:
        thread.join(timeout=10)
    assert outcomes.pop("poison") == "refused"
    assert outcomes == {n: [("recorded", n)] for n in names}


def test_a_called_back_job_after_a_quiet_spell_still_finds_a_pump() -> None:
    committer = GroupCommitter(_put([]), max_leaders=2)
    for n in range(3):
        done = threading.Event()
        committer.submit_later([n], [], lambda job, done=done: done.set())
        assert done.wait(timeout=5), f"job {n} was never committed"
        threading.Event().wait(0.05)  # the pumps go back to waiting


def test_closing_the_committer_ends_its_pumps_once_the_queue_is_done() -> None:
    committer = GroupCommitter(_put([]), max_leaders=2)
    done = threading.Event()
    committer.submit_later(["last"], [], lambda job: done.set())
    assert done.wait(timeout=5)
    pumps = list(committer._pumps)
    assert pumps and all(p.is_alive() for p in pumps)
    committer.close()
    for pump in pumps:
        pump.join(timeout=5)
    assert not any(p.is_alive() for p in pumps)
