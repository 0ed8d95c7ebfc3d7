"""Seeded transfer-season workloads, written fast through the domain (not row inserts).

Members move through realistic case shapes — inquiry, requirements, evidence,
referrals (warm or cold), letters, attachment, receipt, activity, dues — and
their events are interleaved across a window of members, the way many
centres work at once. Events are decided by the real aggregates and saved
many aggregates per transaction, so the log is exactly what commands write.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Callable, Iterator
from datetime import date, timedelta

from domain.member import Act, MemberRelationship
from domain.registry import Registry
from domain.unit import Unit
from domain.values import Basis, Channel, EvidenceKind, Handover, Standing, YearMonth

START = date(2020, 1, 6)
UNIT_COUNT = 60


def register_units(registry: Registry, count: int = UNIT_COUNT) -> list[Unit]:
    """A flat set of service centres and workplaces (idempotent)."""
    from domain.errors import Conflict
    from domain.registry import Actor

    codes = [f"unit-{i:03d}" for i in range(count)]
    for i, code in enumerate(codes):
        kind = "service_center" if i % 3 else "workplace"
        with contextlib.suppress(Conflict):
            registry.register_unit(
                Actor(code, "bench"),
                code=code,
                name=f"单位{i}",
                kind=kind,
                region=f"区{i % 7}",
                occurred_on=date(2019, 1, 1),
            )
    return [registry.unit(c) for c in codes]


def _zipf_choice(rng: random.Random, items: list[Unit], s: float = 1.1) -> Unit:
    weights = [1 / (k + 1) ** s for k in range(len(items))]
    return rng.choices(items, weights)[0]


def member_steps(
    member_no: int, units: list[Unit], rng: random.Random, today: date
) -> Iterator[Callable[[MemberRelationship | None], MemberRelationship]]:
    """The commands of one member's story, one callable per step."""
    home = _zipf_choice(rng, units)
    first = _zipf_choice(rng, units)
    target = _zipf_choice(rng, units)
    while target.code == home.code:
        target = rng.choice(units)
    day = START + timedelta(days=rng.randrange(0, 1500))

    def act(unit: Unit, days: int = 0) -> Act:
        nonlocal day
        day = min(day + timedelta(days=days), today)
        return Act(unit, "bench", day, today, holder=home)

    def enrol(_: MemberRelationship | None) -> MemberRelationship:
        from domain.identity import MemberIdentity

        digest = hashlib.sha256(f"bench-member-{member_no}".encode()).hexdigest()
        return MemberRelationship.enrol(
            act(home),
            member_id=MemberIdentity.member_id_from_digest(digest),
            name=f"党员{member_no}",
            id_digest=digest,
            standing=Standing.FULL,
            probation_started_on=None,
            developing_unit=None,
            household_region=home.region,
            holder=home,
        )

    def step(
        fn: Callable[[MemberRelationship], None],
    ) -> Callable[[MemberRelationship | None], MemberRelationship]:
        def run(m: MemberRelationship | None) -> MemberRelationship:
            assert m is not None
            fn(m)
            return m

        return run

    yield enrol
    yield step(
        lambda m: m.receive_inquiry(
            act(first, rng.randrange(1, 60)), channel=Channel.WALK_IN, summary="申请转接组织关系"
        )
    )
    if rng.random() < 0.3:
        other = rng.choice(units)
        if other.code != first.code:
            handover = Handover.WARM if rng.random() < 0.7 else Handover.COLD
            yield step(
                lambda m: m.refer(
                    act(first, 1), case_id=None, to_unit=other, handover=handover, reason="转介"
                )
            )
    yield step(
        lambda m: m.record_evidence(
            act(target, rng.randrange(1, 10)),
            case_id=None,
            kind=EvidenceKind.LEASE,
            reference=f"L{member_no}",
            valid_until=None,
        )
    )
    yield step(
        lambda m: m.issue_letter(
            act(home, rng.randrange(1, 10)),
            case_id=None,
            letter_no=f"B{member_no}",
            to_unit=target,
            valid_until=None,
            dues_paid_through=YearMonth(2019, 12),
            special_circumstances=None,
        )
    )
    yield step(
        lambda m: m.attach(
            act(target, rng.randrange(1, 20)),
            case_id=None,
            basis=Basis.RESIDENCE,
            letter_no=None,
            override_reason=None,
        )
    )
    yield step(
        lambda m: m.return_receipt(
            act(home, rng.randrange(1, 40)), case_id=None, letter_no=f"B{member_no}"
        )
    )
    yield step(lambda m: m.attend_activity(act(target, rng.randrange(1, 30)), kind="组织生活会"))


def write_workload(
    registry: Registry,
    events: int,
    *,
    seed: int = 7,
    window: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write about ``events`` events (whole member stories); returns how many were written."""
    rng = random.Random(seed)
    units = register_units(registry)
    today = registry.clock()
    written = 0
    member_no = 0
    while written < events:
        stories = []
        for _ in range(window):
            member_no += 1
            stories.append([None, member_steps(member_no, units, rng, today)])
        live = stories
        while live and written < events:
            batch = []
            still = []
            for story in live:
                step = next(story[1], None)  # type: ignore[call-overload]
                if step is None:
                    continue
                story[0] = step(story[0])
                batch.append(story[0])
                still.append(story)
            for i in range(0, len(batch), 500):
                chunk = batch[i : i + 500]
                recordings = registry.save(*chunk)
                written += len(recordings)
            live = still
            if progress:
                progress(written)
    return written
