"""Real processes against one store: spawn-context workers released together by a barrier.

Workers are plain top-level functions so the "spawn" start method can import
them in a fresh interpreter; each one opens its own Registry on the URL it is
given (no state is shared with the test process except the database) and
reports back a ``Result`` through a queue: the Outcome, or the refusal code.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from domain.errors import HarborError
from domain.receipts import Outcome
from domain.registry import Actor, Registry
from store import open_registry

SPAWN = multiprocessing.get_context("spawn")
BARRIER_TIMEOUT = 60.0
RESULT_TIMEOUT = 120.0
OK = "ok"
CRASH = "CRASH"


@dataclass(frozen=True)
class Result:
    """What one worker saw: ``code`` is "ok", a refusal code, or "CRASH" (see ``detail``)."""

    index: int
    code: str
    outcome: Outcome | None = None
    detail: str = ""
    seen_version: int | None = None
    member_id: UUID | None = None


def race(target: Callable[..., Result], per_process: list[tuple[Any, ...]]) -> list[Result]:
    """Run ``target(index, barrier, *args)`` in one spawned process per args tuple.

    Returns the results in index order. A worker that crashes aborts the
    barrier so the others do not wait forever; every process must exit cleanly.
    """
    n = len(per_process)
    barrier = SPAWN.Barrier(n)
    results_queue = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=_run, args=(target, i, barrier, results_queue, args), daemon=True)
        for i, args in enumerate(per_process)
    ]
    for p in processes:
        p.start()
    results: list[Result] = []
    deadline = time.monotonic() + RESULT_TIMEOUT
    try:
        while len(results) < n:
            try:
                results.append(results_queue.get(timeout=0.2))
                continue
            except queue_module.Empty:
                pass
            gone = all(p.exitcode is not None for p in processes)
            if (gone and results_queue.empty()) or time.monotonic() > deadline:
                exits = [p.exitcode for p in processes]
                raise AssertionError(
                    f"only {len(results)} of {n} workers reported (exit codes {exits}): {results}"
                )
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    crashed = [r for r in results if r.code == CRASH]
    assert not crashed, "a worker crashed:\n" + "\n".join(r.detail for r in crashed)
    assert [p.exitcode for p in processes] == [0] * n
    return sorted(results, key=lambda r: r.index)


def in_fresh_process(target: Callable[..., Result], *args: Any) -> Result:
    """Run one worker in a brand-new interpreter (its own Registry, its own connections)."""
    return race(target, [args])[0]


def _run(
    target: Callable[..., Result],
    index: int,
    barrier: Any,
    results_queue: Any,
    args: tuple[Any, ...],
) -> None:
    try:
        result = target(index, barrier, *args)
    except BaseException:
        barrier.abort()
        result = Result(index, CRASH, detail=f"worker {index}:\n{traceback.format_exc()}")
    results_queue.put(result)


def _open(url: str, today: date) -> Registry:
    return open_registry(url, clock=lambda: today)


def id_number(n: int) -> str:
    """A well-formed resident ID number, distinct for each ``n`` (0–999)."""
    return f"310101199001010{n:03d}"


# --- workers -------------------------------------------------------------------


def attach(
    index: int,
    barrier: Any,
    url: str,
    today: date,
    member_id: UUID,
    unit: str,
    letter_no: str,
    pin_version: bool,
) -> Result:
    """Read the member, wait for the others, then try to attach it at ``unit``."""
    registry = _open(url, today)
    try:
        seen = registry.member(member_id).version
        barrier.wait(BARRIER_TIMEOUT)
        try:
            outcome = registry.attach_member(
                Actor(unit, f"clerk-{index}"),
                member_id,
                occurred_on=today,
                basis="residence",
                letter_no=letter_no,
                expected_version=seen if pin_version else None,
            )
        except HarborError as e:
            return Result(index, e.code, detail=str(e), seen_version=seen)
        return Result(index, OK, outcome, seen_version=seen)
    finally:
        registry.close()


def enrol_and_issue_letter(
    index: int,
    barrier: Any,
    url: str,
    today: date,
    issuer: str,
    to_unit: str,
    letter_no: str,
) -> Result:
    """Enrol member ``index`` and open a case; then, all together, issue ``letter_no``."""
    registry = _open(url, today)
    actor = Actor(issuer, f"clerk-{index}")
    try:
        barrier.wait(BARRIER_TIMEOUT)
        enrolled = registry.enrol_member(
            actor,
            name=f"党员{index}",
            id_number=id_number(index),
            standing="full",
            household_region="上海",
            occurred_on=today,
        )
        member_id = enrolled.member_id
        assert member_id is not None
        registry.receive_inquiry(
            actor, member_id, occurred_on=today, channel="walk_in", summary="申请转出组织关系"
        )
        barrier.wait(BARRIER_TIMEOUT)
        try:
            outcome = registry.issue_letter(
                actor,
                member_id,
                occurred_on=today,
                letter_no=letter_no,
                to_unit_id=to_unit,
                dues_paid_through="2026-10",
            )
        except HarborError as e:
            return Result(index, e.code, detail=str(e), member_id=member_id)
        return Result(index, OK, outcome, member_id=member_id)
    finally:
        registry.close()


def inquiry_with_key(
    index: int,
    barrier: Any,
    url: str,
    today: date,
    member_id: UUID,
    unit: str,
    summary: str,
    key: str,
) -> Result:
    """Record an inquiry under an idempotency key (all workers send the very same command)."""
    registry = _open(url, today)
    try:
        barrier.wait(BARRIER_TIMEOUT)
        try:
            outcome = registry.receive_inquiry(
                Actor(unit, "clerk"),
                member_id,
                occurred_on=today,
                channel="walk_in",
                summary=summary,
                idempotency_key=key,
            )
        except HarborError as e:
            return Result(index, e.code, detail=str(e))
        return Result(index, OK, outcome)
    finally:
        registry.close()


def open_and_register(index: int, barrier: Any, url: str, today: date) -> Result:
    """Open a Registry on a store nobody has created yet (all at once), then write to it."""
    barrier.wait(BARRIER_TIMEOUT)
    registry = _open(url, today)
    try:
        code = f"schema-unit-{index}"
        outcome = registry.register_unit(
            Actor(code, "clerk"),
            code=code,
            name=f"建表单位{index}",
            kind="workplace",
            region="上海",
            occurred_on=today,
        )
        return Result(index, OK, outcome)
    finally:
        registry.close()
