"""Harbor's write-path benchmark suite, each workload against a raw psycopg baseline.

    python bench/suite.py [--full] [--json PATH] [--only NAME,...] [--sqlite]
    make bench                       # = the default run, writes bench/results/latest.*

Workloads (see bench/README.md for what each does and how its baseline is defined):
  write_1, write_4, write_8  N writer threads, one shared Registry, group commit on
  import                     `api.importer.import_file` of a generated JSONL file vs COPY
  catchup                    a projection follower (its own process on PostgreSQL) while
                             write_4 load runs
  point_query                ReadModels.member_status latency on a populated store

Principles (after pyeventsourcing/eventstore-benchmarks): fixed seeds; many members,
Zipf activity per member and per unit, about 5 % of commands on a shared hot member;
p50/p95/p99/p99.9 beside the rates; durability settings and the machine in the output.
Every measured run is a child process on a fresh database cloned from a template;
Harbor and baseline runs alternate and the medians of the rounds are reported. After
each Harbor write run the acknowledged commands are compared with what is stored.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import pickle
import platform
import queue as queue_module
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

ADMIN_URL = os.environ.get(
    "HARBOR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
WORKLOADS = ("write_1", "write_4", "write_8", "import", "catchup", "point_query")
TODAY = date(2026, 11, 26)  # every run's clock: commands dated "today" are reproducible
SEED = 20261126
EVENTS_TABLE = "harbor_events"
RAW_TABLE = "bench_raw_events"
HOT_SHARE = 0.05  # share of commands aimed at the hot member of the moment
HOT_POOL = 8  # hot members, each hot for HOT_WINDOW commands of every thread
HOT_WINDOW = 25
MEMBER_ZIPF = 1.0  # activity per member: weight 1/(rank + MEMBER_ZIPF_OFFSET)^s
MEMBER_ZIPF_OFFSET = 10  # Zipf–Mandelbrot: a heavy tail without one giant stream
UNIT_ZIPF = 1.1  # activity per unit (the acting and receiving units)
SAMPLE_SECONDS = 0.05  # catchup: how often the log head is sampled
WATCH_SECONDS = 0.01  # catchup: how often a follower process's position is read
PERCENTILES = (50.0, 95.0, 99.0, 99.9)
CURVE = (1, 10, 25, 50, 75, 90, 95, 98, 99, 99.5, 99.8, 99.9, 99.95, 99.99)

RAW_INSERT = (
    f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state)"
    " SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])"
    " RETURNING notification_id"
)
RAW_LOCK = f"LOCK TABLE {RAW_TABLE} IN EXCLUSIVE MODE"


@dataclass(frozen=True)
class Sizes:
    """How much each workload does."""

    members: int  # members enrolled (with an open case) in the template
    history: int  # events of earlier transfer cases in the template (bench.workload)
    commands: int  # commands per write run, all threads together
    import_members: int  # members in the import file (enrol + several actions each)
    catchup_commands: int  # commands of the write_4 load during catchup
    queries: int  # point queries per run
    rounds: int  # alternating Harbor/baseline rounds (medians reported)


# Sized for the 2-core machine of BASELINES.md: the default run takes about 2 minutes. Write
# runs of 3,000 commands and five rounds: with 1,500 commands (under a second at today's
# pace) and three rounds, the write_1 ratio moved between 0.53 and 0.65 from run to run.
DEFAULT = Sizes(
    members=4000,
    history=20_000,
    commands=3000,
    import_members=500,
    catchup_commands=4000,
    queries=2000,
    rounds=5,
)
FULL = Sizes(
    members=20_000,
    history=100_000,
    commands=10_000,
    import_members=4000,
    catchup_commands=10_000,
    queries=20_000,
    rounds=5,
)
TINY = Sizes(
    members=200,
    history=600,
    commands=120,
    import_members=40,
    catchup_commands=160,
    queries=200,
    rounds=2,
)


# --- the workload shapes (pure, seeded; parent and children derive the same) ------------


def _unit_codes() -> list[str]:
    from bench.workload import UNIT_COUNT

    return [f"unit-{i:03d}" for i in range(UNIT_COUNT)]


def _region(code: str) -> str:
    return f"区{int(code.rsplit('-', 1)[1]) % 7}"  # as bench.workload.register_units names it


class Zipf:
    """Seeded draws from ranked items with weight 1/(rank + offset)^s."""

    def __init__(self, items: list[Any], s: float, offset: float = 0.0):
        self.items = items
        total = 0.0
        self.cumulative = []
        for rank in range(1, len(items) + 1):
            total += 1.0 / (rank + offset) ** s
            self.cumulative.append(total)

    def draw(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])]


def bench_member_id(n: int) -> uuid.UUID:
    """The id of the ``n``-th pre-enrolled member of the template."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"harbor-bench-member-{n}")


def member_homes(members: int, seed: int) -> list[tuple[str, str]]:
    """(holding unit, unit the member moves to) of each pre-enrolled member (Zipf over units)."""
    rng = random.Random(f"{seed}-homes")
    units = Zipf(_unit_codes(), UNIT_ZIPF)
    homes = [units.draw(rng) for _ in range(members)]
    return [(home, _other(rng, units, home)) for home in homes]


# Where the template leaves the n-th member's case, by n % 3: an inquiry only, evidence
# recorded too, or also a letter out (numbered TEMPLATE_LETTER % n) to the receiving unit.
STAGES = ("open", "evidence", "letter")
TEMPLATE_LETTER = "T%d"


# A command: (Registry method, acting unit, member id, keyword arguments, token, events).
# The token is unique to the command and readable back from its stored event, so what
# was acknowledged can be compared with what is stored.
Cmd = tuple[str, str, uuid.UUID, dict[str, Any], str, int]


def write_plan(members: int, threads: int, commands: int, seed: int) -> list[list[Cmd]]:
    """Each thread's commands: rule-checked flows on its own members, plus the hot member.

    Members (all but the hot pool) are ranked in a seeded shuffle and dealt to the
    threads by rank, so every thread owns a share of the busy ones; each member's
    flows stay on one thread and are therefore issued in order. About 5 % of every
    thread's commands go to the hot member of the moment (the same member for all
    threads during a window of commands): these contend.
    """
    homes = member_homes(members, seed)
    units = Zipf(_unit_codes(), UNIT_ZIPF)
    regular = list(range(members - HOT_POOL))
    random.Random(f"{seed}-ranks").shuffle(regular)
    hot = [bench_member_id(n) for n in range(members - HOT_POOL, members)]
    plans: list[list[Cmd]] = []
    for t in range(threads):
        rng = random.Random(f"{seed}-plan-{threads}-{t}")
        mine = Zipf(regular[t::threads], MEMBER_ZIPF, MEMBER_ZIPF_OFFSET)
        flows: dict[int, _Flow] = {}
        plan: list[Cmd] = []
        for i in range(commands // threads):
            tid = f"{t}.{i}"
            if rng.random() < HOT_SHARE:
                member, note = hot[(i // HOT_WINDOW) % len(hot)], f"热点联系 {tid}"
                contact = {"channel": "phone", "note": note}
                unit = units.draw(rng)
                plan.append(("make_contact", unit, member, contact, f"contact:{note}", 1))
                continue
            n = mine.draw(rng)
            if n not in flows:
                home, target = homes[n]
                flows[n] = _Flow(STAGES[n % 3], home, target, letter_no=TEMPLATE_LETTER % n)
            plan.append(_next_command(rng, units, bench_member_id(n), flows[n], tid))
        plans.append(plan)
    return plans


def _other(rng: random.Random, units: Zipf, code: str) -> str:
    while True:
        other = units.draw(rng)
        if other != code:
            return str(other)


@dataclass
class _Flow:
    """Where one member's story stands, as the plan generator follows it."""

    phase: str  # open → evidence → letter → attached → closed → open …
    holder: str
    target: str
    dues_months: int = 0
    letter_no: str = ""


def _next_command(rng: random.Random, units: Zipf, member: uuid.UUID, flow: _Flow, tid: str) -> Cmd:
    """The member's next command; each one passes the rules given the ones before it."""
    roll = rng.random()
    if flow.phase != "attached" and roll < 0.25:
        note = f"联系 {tid}"
        channel = {"channel": "phone", "note": note}
        return ("make_contact", units.draw(rng), member, channel, f"contact:{note}", 1)
    if flow.phase != "attached" and roll < 0.5:
        flow.dues_months += 1
        year, month = divmod(2020 * 12 + flow.dues_months - 1, 12)
        ym = f"{year}-{month + 1:02d}"
        dues = {"months_from": ym, "months_to": ym, "amount": "12.50"}
        return ("receive_dues", flow.holder, member, dues, f"dues:{member}:{ym}", 1)
    if flow.phase == "open":
        flow.phase = "evidence"
        ref = f"L-{tid}"
        evidence = {"kind": "lease", "reference": ref}
        return ("record_evidence", flow.target, member, evidence, f"evidence:{ref}", 1)
    if flow.phase == "evidence":
        flow.phase = "letter"
        flow.letter_no = f"W{tid}"
        letter = {
            "letter_no": flow.letter_no,
            "to_unit_id": flow.target,
            "dues_paid_through": "2026-10",
        }
        # two events: LetterIssued and the letter number's own LetterNumberTaken
        return ("issue_letter", flow.holder, member, letter, f"letter:{flow.letter_no}", 2)
    if flow.phase == "letter":
        flow.phase = "attached"
        flow.holder = flow.target
        attach = {"basis": "residence", "letter_no": flow.letter_no}
        return ("attach_member", flow.target, member, attach, f"attach:{flow.letter_no}", 1)
    if flow.phase == "attached":  # an activity at the new holder closes the case (R9)
        flow.phase = "closed"
        kind = f"组织生活会 {tid}"
        return ("attend_activity", flow.holder, member, {"kind": kind}, f"activity:{kind}", 1)
    flow.phase = "open"  # closed: a new inquiry opens the next case, towards a new unit
    flow.target = _other(rng, units, flow.holder)
    summary = f"申请转接组织关系 {tid}"
    inquiry = {"channel": "walk_in", "summary": summary}
    return ("receive_inquiry", flow.holder, member, inquiry, f"inquiry:{summary}", 1)


def import_plan(members: int, seed: int) -> list[tuple[dict[str, Any], str]]:
    """Paper records as import lines (with each line's token): enrol, a case, then more.

    Each member: enrol, inquiry, evidence, letter, attachment at the new unit, an
    activity there, then a heavy-tailed number (Pareto) of dues and contact lines.
    A member's lines are consecutive and dated a few days apart.
    """
    rng = random.Random(f"{seed}-import")
    units = Zipf(_unit_codes(), UNIT_ZIPF)
    lines: list[tuple[dict[str, Any], str]] = []
    for n in range(members):
        id_number = f"3101{n:013d}X"
        home = units.draw(rng)
        target = _other(rng, units, home)
        name, letter = f"导入党员{n}", f"I{n}"
        summary, ref, kind = f"补录转接 {n}", f"IL-{n}", f"组织生活会 导入{n}"
        steps: list[tuple[str, str, str, dict[str, Any]]] = [
            ("enrol", home, f"enrol:{name}", {
                "name": name, "id_number": id_number, "standing": "full",
                "household_region": _region(home),
            }),
            ("inquiry", home, f"inquiry:{summary}", {"channel": "walk_in", "summary": summary}),
            ("evidence", target, f"evidence:{ref}", {"kind": "lease", "reference": ref}),
            ("letter", home, f"letter:{letter}", {
                "letter_no": letter, "to_unit_id": target, "dues_paid_through": "2022-12",
            }),
            ("attach", target, f"attach:{letter}", {"basis": "residence", "letter_no": letter}),
            ("activity", target, f"activity:{kind}", {"kind": kind}),
        ]  # fmt: skip
        for k in range(min(60, int(rng.paretovariate(1.2)) - 1)):
            if k % 2 == 0:
                year, month = divmod(2023 * 12 + k // 2, 12)
                ym = f"{year}-{month + 1:02d}"
                dues = {"months_from": ym, "months_to": ym, "amount": "12.50"}
                steps.append(("dues", target, f"dues:@{id_number}:{ym}", dues))
            else:
                note = f"补录联系 {n}.{k}"
                contact = {"channel": "phone", "note": note}
                steps.append(("contact", units.draw(rng), f"contact:{note}", contact))
        day = date(2023, 1, 1) + timedelta(days=rng.randrange(0, 600))
        for action, unit, token, fields in steps:
            day += timedelta(days=rng.randrange(0, 4))
            record: dict[str, Any] = {
                "action": action, "unit": unit, "by": "档案室", "on": day.isoformat()
            }  # fmt: skip
            if action != "enrol":
                record["member"] = id_number
            lines.append(({**record, **fields}, token))
    return lines


def token_of(event: Any) -> str | None:
    """The token a stored event carries (see write_plan/import_plan), if it is a command's."""
    from domain.member_events import (
        ActivityAttended,
        Attached,
        ContactMade,
        DuesReceived,
        EvidenceRecorded,
        InquiryReceived,
        LetterIssued,
        MemberEnrolled,
    )

    if isinstance(event, ContactMade):
        return f"contact:{event.note}"
    if isinstance(event, DuesReceived):
        return f"dues:{event.originator_id}:{event.months_from}"
    if isinstance(event, EvidenceRecorded):
        return f"evidence:{event.reference}"
    if isinstance(event, LetterIssued):
        return f"letter:{event.letter_no}"
    if isinstance(event, Attached):
        return f"attach:{event.letter_no}"
    if isinstance(event, ActivityAttended):
        return f"activity:{event.kind}"
    if isinstance(event, InquiryReceived):
        return f"inquiry:{event.summary}"
    if isinstance(event, MemberEnrolled):
        return f"enrol:{event.name}"
    return None  # a letter number's event, or an event of the template's history


def stored_since(registry: Any, after: int) -> Iterator[Any]:
    """The notifications after log position ``after`` (either backend)."""
    start = after + 1
    while True:
        page = registry.recorder.select_notifications(start, 5000)
        yield from page
        if len(page) < 5000:
            return
        start = page[-1].id + 1


def reconcile(registry: Any, after: int, acked: list[str]) -> dict[str, Any]:
    """Acknowledged commands against what is stored after ``after``: lost and duplicated."""
    stored: Counter[str] = Counter()
    events = 0
    for note in stored_since(registry, after):
        events += 1
        token = token_of(registry.mapper.to_domain_event(note))
        if token is not None:
            stored[token] += 1
    wanted = set(acked)
    return {
        "acked": len(acked),
        "stored_events": events,
        "lost": len(wanted - set(stored)),
        "duplicated": sum(c - 1 for c in stored.values() if c > 1),
        "stored_unacked": len(set(stored) - wanted),
    }


# --- statistics ------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of ``values`` (sorted or not); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


def latency_summary(ms: list[float]) -> dict[str, Any]:
    """p50/p95/p99/p99.9 and a percentile curve (for the plot), in milliseconds."""
    ordered = sorted(ms)
    out: dict[str, Any] = {
        f"p{str(p).rstrip('0').rstrip('.').replace('.', '')}_ms": _r(percentile(ordered, p))
        for p in PERCENTILES
    }
    out["curve"] = [[p, _r(percentile(ordered, p))] for p in CURVE] if ordered else []
    out["samples"] = len(ordered)
    return out


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def median(values: list[float | None]) -> float | None:
    """Median of the values that are not None."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


# --- databases and child processes --------------------------------------------------------


def _pg_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@dataclass(frozen=True)
class Store:
    """A database a run uses: PostgreSQL (url) or a SQLite file (url of the file)."""

    backend: str
    url: str
    base: int  # the log position the template ends at


class Databases:
    """Creates databases (fresh, or cloned from a template) and drops them all at the end."""

    def __init__(self, keep: bool = False):
        self.keep = keep
        self.prefix = f"harbor_bench_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="harbor-bench-"))
        self.count = 0

    def _name(self, label: str) -> str:
        self.count += 1
        return f"{self.prefix}_{self.count:03d}_{label}"

    def fresh(self, backend: str, label: str) -> str:
        """A new empty database; returns its URL."""
        name = self._name(label)
        if backend == "sqlite":
            return f"sqlite:///{self.tmp / name}.db"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return _pg_url(name)

    def clone(self, template: Store, label: str) -> Store:
        """A fresh copy of ``template``, after a CHECKPOINT (PostgreSQL)."""
        name = self._name(label)
        if template.backend == "sqlite":
            source = Path(template.url[len("sqlite:///") :])
            target = self.tmp / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{source}{suffix}").exists():
                    shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
            return replace(template, url=f"sqlite:///{target}")
        source_name = template.url.rpartition("/")[2]
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source_name}"')
            self.created.append(name)
            conn.execute("CHECKPOINT")
        return replace(template, url=_pg_url(name))

    def drop(self, store: Store) -> None:
        """Drop one database now (runs do, to keep the disk small)."""
        if self.keep:
            return
        if store.backend == "sqlite":
            path = store.url[len("sqlite:///") :]
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f"{path}{suffix}")
            return
        name = store.url.rpartition("/")[2]
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def close(self) -> None:
        """Drop every database still there, and the temporary files."""
        if self.keep:
            print(f"kept databases {self.created} and files in {self.tmp}", file=sys.stderr)
            return
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in reversed(self.created):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def child(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``target(*args)`` in a fresh (spawned) process and return its result."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(target, args, results))
    proc.start()
    while True:
        try:
            result: dict[str, Any] = results.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{target.__name__} died (exit code {proc.exitcode})") from None
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{target.__name__} failed:\n{result['error']}")
    return result


def _child_main(target: Callable[..., dict[str, Any]], args: tuple[Any, ...], results: Any) -> None:
    logging.basicConfig(level=logging.WARNING)
    try:
        results.put(target(*args))
    except BaseException:
        results.put({"error": traceback.format_exc()})


def _open(url: str, **env: str) -> Any:
    from store import open_registry

    return open_registry(url, clock=lambda: TODAY, extra_env=env or None)


def _group_commit_env() -> dict[str, str]:
    env = {"HARBOR_GROUP_COMMIT": "on"}
    for name in ("HARBOR_GROUP_COMMIT_MAX_BATCH", "HARBOR_GROUP_COMMIT_MAX_WAIT_MS"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def _durability(registry: Any) -> dict[str, str]:
    """The settings this run's own connection sees (never changed by the suite)."""
    from eventsourcing.postgres import PostgresDatastore

    datastore = registry.recorder.datastore
    if isinstance(datastore, PostgresDatastore):
        with datastore.get_connection() as conn:
            return {
                name: str(conn.execute(f"SHOW {name}").fetchone()[name])
                for name in ("fsync", "synchronous_commit")
            }
    with datastore.transaction(commit=False) as c:
        c.execute("PRAGMA synchronous")
        return {"sqlite_synchronous": str(c.fetchone()[0])}


def _raw_durability(conn: Any) -> dict[str, str]:
    names = ("fsync", "synchronous_commit")
    return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}


# --- templates ----------------------------------------------------------------------------


def build_template(backend: str, url: str, sizes: Sizes, seed: int) -> dict[str, Any]:
    """(child) Units, a seeded history of transfer cases, and the members the writes use.

    The bench members are enrolled at their home unit with an open case (an inquiry);
    a third also have evidence recorded, a third a letter out as well (see STAGES), so
    the writes find cases at every stage. On PostgreSQL the raw baseline's
    table is created beside Harbor's, with the same definition, holding the same rows.
    """
    from bench.workload import register_units, write_workload
    from domain.letter_number import LetterNumber
    from domain.member import Act, MemberRelationship
    from domain.values import Channel, EvidenceKind, Standing, YearMonth

    started = time.perf_counter()
    registry = _open(url)
    units = {u.code: u for u in register_units(registry)}
    if sizes.history:
        write_workload(registry, sizes.history, seed=seed)
    chunk: list[Any] = []
    for n, (code, target_code) in enumerate(member_homes(sizes.members, seed)):
        home, target = units[code], units[target_code]
        on = date(2025, 1, 1) + timedelta(days=n % 300)
        act = Act(home, "bench", on, TODAY, holder=home)
        member = MemberRelationship.enrol(
            act,
            member_id=bench_member_id(n),
            name=f"党员{n}",
            id_digest=uuid.uuid5(uuid.NAMESPACE_OID, str(n)).hex * 2,
            standing=Standing.FULL,
            probation_started_on=None,
            developing_unit=None,
            household_region=home.region,
            holder=home,
        )
        member.receive_inquiry(act, channel=Channel.WALK_IN, summary="申请转接组织关系")
        chunk.append(member)
        if STAGES[n % 3] != "open":
            member.record_evidence(
                Act(target, "bench", on, TODAY, holder=home),
                case_id=None,
                kind=EvidenceKind.LEASE,
                reference=f"TL-{n}",
                valid_until=None,
            )
        if STAGES[n % 3] == "letter":
            member.issue_letter(
                act,
                case_id=None,
                letter_no=TEMPLATE_LETTER % n,
                to_unit=target,
                valid_until=date(2027, 6, 30),
                dues_paid_through=YearMonth(2024, 12),
                special_circumstances=None,
            )
            chunk.append(LetterNumber.take(code, on.year, TEMPLATE_LETTER % n, member.id))
        if len(chunk) >= 500:
            registry.save(*chunk)
            chunk = []
    if chunk:
        registry.save(*chunk)
    base = registry.position()
    table = getattr(registry.recorder, "events_table_name", None)
    registry.close()
    if backend == "postgres":
        if table != EVENTS_TABLE:
            raise RuntimeError(f"Harbor's events table is {table!r}, not {EVENTS_TABLE!r}")
        with psycopg.connect(url, autocommit=True) as conn:
            _create_raw_table(conn)
            conn.execute("VACUUM ANALYZE")
    return {"base": base, "seconds": time.perf_counter() - started}


def _create_raw_table(conn: Any) -> None:
    """``bench_raw_events``: Harbor's table definition (columns, keys, index, storage) and rows."""
    conn.execute(
        f"CREATE TABLE {RAW_TABLE} ("
        " originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text,"
        " state bytea, notification_id bigserial,"
        " PRIMARY KEY (originator_id, originator_version))"
        " WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000,"
        " autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000,"
        " autovacuum_analyze_scale_factor = 0.01)"
    )
    conn.execute(
        f"CREATE UNIQUE INDEX {RAW_TABLE}_notification_id_idx ON {RAW_TABLE}"
        " (notification_id ASC)"
    )
    conn.execute(
        f"INSERT INTO {RAW_TABLE} SELECT originator_id, originator_version, topic, state,"
        f" notification_id FROM {EVENTS_TABLE} ORDER BY notification_id"
    )
    conn.execute(
        f"SELECT setval(pg_get_serial_sequence('{RAW_TABLE}', 'notification_id'),"
        f" (SELECT max(notification_id) FROM {RAW_TABLE}))"
    )

    def shape(table: str) -> Any:
        columns = conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes"
            " WHERE tablename = %s ORDER BY 1",
            (table,),
        ).fetchall()
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = %s", (table,)
        ).fetchone()
        return columns, indexes, options

    if shape(RAW_TABLE) != shape(EVENTS_TABLE):
        raise RuntimeError(
            f"{RAW_TABLE} is not defined like {EVENTS_TABLE}: "
            f"{shape(RAW_TABLE)} vs {shape(EVENTS_TABLE)}"
        )


def build_projections(url: str) -> dict[str, Any]:
    """(child) Fold the whole log into the read models (for point queries)."""
    from projections.runner import Projector

    registry = _open(url)
    started = time.perf_counter()
    folded = Projector(registry).catch_up()
    registry.close()
    return {"events": folded, "seconds": time.perf_counter() - started}


# --- write runs -----------------------------------------------------------------------------


class _RaceCounter(logging.Handler):
    """Counts the Registry's 'lost a race; deciding again' retries."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "lost a race" in record.getMessage():
            self.count += 1


def _drive(
    registry: Any, plans: list[list[Cmd]], on_ack: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Issue each plan on its own thread through ``registry``; latencies, acks, refusals."""
    from domain.errors import HarborError
    from domain.registry import Actor

    barrier = threading.Barrier(len(plans) + 1)
    latencies: list[list[float]] = [[] for _ in plans]
    acked: list[list[tuple[int, int, int]]] = [[] for _ in plans]  # (index, position, events)
    refused: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    finished = [0.0] * len(plans)

    def work(t: int) -> None:
        plan = plans[t]
        barrier.wait()
        for i, (method, unit, member, kwargs, _token, events) in enumerate(plan):
            call = getattr(registry, method)
            started = time.perf_counter()
            try:
                outcome = call(Actor(unit, "bench"), member, **kwargs)
            except HarborError as e:
                refused[e.code] += 1
                continue
            except Exception as e:
                errors[type(e).__name__] += 1
                continue
            done = time.perf_counter()
            latencies[t].append((done - started) * 1000)
            acked[t].append((i, outcome.position, events))
            if on_ack is not None:
                on_ack(outcome.position, int(done * 1e9))
        finished[t] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(len(plans))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = max(finished) - started
    return {
        "seconds": seconds,
        "started": started,
        "latencies": [x for ls in latencies for x in ls],
        "acked": acked,
        "refused": dict(refused),
        "errors": dict(errors),
    }


def harbor_writes(
    store: Store, plans: list[list[Cmd]], rows_path: str | None, warm: bool = True
) -> dict[str, Any]:
    """(child) Harbor: the plans through one shared Registry with group commit on.

    With ``warm`` the registry first loads the most recently active members into its
    cache, as `harbor serve` does when it starts: the steady state of a running
    server. Without it, every first command on a member reads its stream (a cold start).
    """
    races = _RaceCounter()
    logger = logging.getLogger("domain.registry")
    logger.addHandler(races)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    registry = _open(store.url, **_group_commit_env())
    settings = _durability(registry)
    committer = registry.committer
    if committer is None:
        raise RuntimeError("group commit did not switch on (HARBOR_GROUP_COMMIT=on)")
    warming = time.perf_counter()
    warmed = 0
    if warm:  # as `harbor serve` does at start (api/http/app.py)
        from store.collection import freeze_long_lived

        warmed = registry.warm_member_cache()
        freeze_long_lived()
    warming = time.perf_counter() - warming
    run = _drive(registry, plans)
    group = {
        "max_batch": committer.max_batch,
        "max_wait_ms": committer.max_wait * 1000,
        "batches": committer.batches,
        "commands": committer.commands,
    }
    acked_tokens = [plans[t][i][4] for t, acks in enumerate(run["acked"]) for i, _, _ in acks]
    check = reconcile(registry, store.base, acked_tokens)
    if rows_path is not None:
        _save_rows(registry, store.base, plans, run["acked"], rows_path)
    registry.close()
    acks = len(acked_tokens)
    return {
        "commands_per_s": acks / run["seconds"],
        "events_per_s": check["stored_events"] / run["seconds"],
        "seconds": run["seconds"],
        **latency_summary(run["latencies"]),
        **check,
        "refused": run["refused"],
        "errors": run["errors"],
        "race_retries": races.count,
        "group_commit": group,
        "warmed_members": warmed,
        "warm_seconds": round(warming, 2),
        "cache": {"hits": registry.members.hits, "misses": registry.members.misses},
        "durability": settings,
    }


def _save_rows(
    registry: Any,
    base: int,
    plans: list[list[Cmd]],
    acked: list[list[tuple[int, int, int]]],
    path: str,
) -> None:
    """Each thread's acknowledged commands as the rows Harbor stored for them, in order."""
    rows = {
        n.id: (n.originator_id, n.originator_version, n.topic, n.state)
        for n in stored_since(registry, base)
    }
    per_thread = []
    for acks in acked:
        commands = []
        for _i, position, events in acks:
            ids = range(position - events + 1, position + 1)
            if not all(i in rows for i in ids):
                raise RuntimeError(f"the events of the command at {position} are not contiguous")
            commands.append([rows[i] for i in ids])
        per_thread.append(commands)
    with open(path, "wb") as f:
        pickle.dump(per_thread, f)


def raw_writes(url: str, rows_path: str, lock: bool) -> dict[str, Any]:
    """(child) Raw psycopg: the same rows, one INSERT (one transaction) per command."""
    with open(rows_path, "rb") as f:
        per_thread: list[list[list[tuple[Any, ...]]]] = pickle.load(f)
    conns = [psycopg.connect(url, autocommit=True) for _ in per_thread]
    settings = _raw_durability(conns[0])
    with conns[0].cursor() as cur:
        cur.execute(f"SELECT max(notification_id) FROM {RAW_TABLE}")
        base = cur.fetchone()[0]
    barrier = threading.Barrier(len(per_thread) + 1)
    latencies: list[list[float]] = [[] for _ in per_thread]
    finished = [0.0] * len(per_thread)

    def work(t: int) -> None:
        conn = conns[t]
        cur = conn.cursor()
        commands = [[list(column) for column in zip(*rows, strict=True)] for rows in per_thread[t]]
        barrier.wait()
        for params in commands:
            started = time.perf_counter()
            if lock:
                with conn.pipeline(), conn.transaction():
                    cur.execute(RAW_LOCK, prepare=True)
                    cur.execute(RAW_INSERT, params, prepare=True)
            else:
                cur.execute(RAW_INSERT, params, prepare=True)
            cur.fetchall()
            latencies[t].append((time.perf_counter() - started) * 1000)
        finished[t] = time.perf_counter()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(len(per_thread))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = max(finished) - started
    commands = sum(len(c) for c in per_thread)
    events = sum(len(rows) for c in per_thread for rows in c)
    stored = conns[0].execute(
        f"SELECT count(*) FROM {RAW_TABLE} WHERE notification_id > %s", (base,)
    ).fetchone()[0]
    for conn in conns:
        conn.close()
    return {
        "commands_per_s": commands / seconds,
        "events_per_s": events / seconds,
        "seconds": seconds,
        **latency_summary([x for ls in latencies for x in ls]),
        "stored_ok": stored == events,
        "durability": settings,
    }


# --- import -----------------------------------------------------------------------------------


def harbor_import(store: Store, path: str, rows_path: str | None) -> dict[str, Any]:
    """(child) Harbor: `import_file` of the JSONL file; events/s and batch commit times."""
    from api.importer import import_file

    registry = _open(store.url)
    settings = _durability(registry)
    commits: list[float] = []
    inner = registry.commit_batch

    def timed_commit(batch: Any) -> Any:
        started = time.perf_counter()
        try:
            return inner(batch)
        finally:
            commits.append((time.perf_counter() - started) * 1000)

    registry.commit_batch = timed_commit
    started = time.perf_counter()
    report = import_file(registry, Path(path))
    seconds = time.perf_counter() - started
    with open(f"{path}.tokens", "rb") as f:
        tokens: list[str] = pickle.load(f)
    refused = {p.line for p in report.problems}
    acked = [
        _resolve(registry, token) for number, token in enumerate(tokens, 1) if number not in refused
    ]
    check = reconcile(registry, store.base, acked)
    if rows_path is not None:
        rows = [
            (n.originator_id, n.originator_version, n.topic, n.state)
            for n in stored_since(registry, store.base)
        ]
        with open(rows_path, "wb") as f:
            pickle.dump(rows, f)
    registry.close()
    return {
        "events_per_s": check["stored_events"] / seconds,
        "lines_per_s": report.lines / seconds,
        "seconds": seconds,
        "lines": report.lines,
        "problems": len(report.problems),
        "first_problems": [str(p) for p in report.problems[:3]],
        **latency_summary(commits),
        **check,
        "durability": settings,
    }


def _resolve(registry: Any, token: str) -> str:
    """Import dues tokens name the member by ID number: turn it into the member id."""
    if token.startswith("dues:@"):
        _, id_number, month = token.split(":", 2)
        return f"dues:{registry.member_id_for(id_number[1:])}:{month}"
    return token


def raw_copy(url: str, rows_path: str) -> dict[str, Any]:
    """(child) Raw psycopg: COPY (binary) of the same rows into the raw table, one transaction."""
    with open(rows_path, "rb") as f:
        rows: list[tuple[Any, ...]] = pickle.load(f)
    with psycopg.connect(url) as conn:
        settings = _raw_durability(conn)
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
            f"COPY {RAW_TABLE} (originator_id, originator_version, topic, state)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - started
    return {"events_per_s": len(rows) / seconds, "seconds": seconds, "durability": settings}


# --- catchup --------------------------------------------------------------------------------


def _lags(
    samples: list[tuple[float, int]], marks: list[tuple[float, int]], since: float
) -> list[float]:
    """Seconds from each sampled head (taken at or after ``since``) until the follower had it."""
    positions = [p for _, p in marks]
    lags = []
    for at, head in samples:
        if at < since:
            continue
        k = bisect.bisect_left(positions, head)
        if k == len(marks):
            continue  # never reached (reported as unresolved)
        lags.append(max(0.0, marks[k][0] - at))
    return lags


def _follow_figures(
    t0: float,
    backlog: int,
    marks: list[tuple[float, int, int]],
    samples: list[tuple[float, int]],
    acks: list[tuple[int, int]],
) -> dict[str, Any]:
    """Catch-up rate over the backlog, and lag after the follower first caught up."""
    folded = 0
    caught_up = None
    for at, position, events in marks:
        folded += events
        if position >= backlog:
            caught_up = (at, folded)
            break
    if caught_up is None:
        raise RuntimeError("the follower never caught up with the backlog")
    points = [(at, position) for at, position, _ in marks]
    lag = _lags(samples, points, caught_up[0])
    ack_lag = _lags([(ns / 1e9, p) for p, ns in acks], points, caught_up[0])
    unresolved = sum(1 for _, head in samples if head > points[-1][1])
    return {
        "events_per_s": caught_up[1] / (caught_up[0] - t0),
        "backlog_events": caught_up[1],
        "backlog_seconds": caught_up[0] - t0,
        **latency_summary([x * 1000 for x in lag]),
        "lag_p99_s": _r(percentile(lag, 99)),
        "ack_lag_p99_s": _r(percentile(ack_lag, 99)),
        "lag_samples": len(lag),
        "unresolved": unresolved,
        "total_folded": sum(e for _, _, e in marks),
    }


def _sampler(head: Callable[[], int], stop: threading.Event, out: list[tuple[float, int]]) -> None:
    while not stop.is_set():
        out.append((time.perf_counter(), head()))
        stop.wait(SAMPLE_SECONDS)


def harbor_catchup(store: Store, plans: list[list[Cmd]], rows_path: str | None) -> dict[str, Any]:
    """(child) A projection follower following from position 0 while the plans are written.

    On PostgreSQL the follower runs as `harbor serve` runs it there, in a process of its
    own (projections/follower_process.py), started (and its interpreter loaded) before the
    clock starts; its progress is watched through the tracking table every WATCH_SECONDS.
    On SQLite it is a thread of this process, as in `harbor serve`, and every batch's
    commit is timed on the projector's writer thread.
    """
    from projections.follower_process import FollowerProcess
    from projections.runner import Projector, live_position

    writer = _open(store.url, **_group_commit_env())
    reader = _open(store.url)
    settings = _durability(writer)
    marks: list[tuple[float, int, int]] = []  # (folded by then, position, events since)
    stop_sampling, stop_following = threading.Event(), threading.Event()
    if store.backend == "postgres":
        process = FollowerProcess.of(reader, poll_seconds=0.05)

        def watch() -> None:
            last = 0
            while not stop_following.is_set():
                position = live_position(reader)
                if position > last:
                    marks.append((time.perf_counter(), position, position - last))
                    last = position
                stop_following.wait(WATCH_SECONDS)

        follower = threading.Thread(target=watch)
        process.start(wait=True)  # its interpreter's start-up is not catching up
        start_following: Callable[[], None] = follower.start
    else:
        process = None
        projector = Projector(reader)
        inner = projector._commit

        def timed_commit(changes: Any, last: int | None) -> None:
            # Taken on the projector's writer thread the moment a batch commits; every
            # position up to `last` is folded by then, so the batch held last - previous.
            inner(changes, last)
            if last is not None:
                marks.append((time.perf_counter(), last, last - (marks[-1][1] if marks else 0)))

        projector._commit = timed_commit  # type: ignore[method-assign]
        follower = threading.Thread(
            target=projector.follow, args=(stop_following,), kwargs={"poll_seconds": 0.05}
        )
        start_following = follower.start
    backlog = writer.position()
    samples: list[tuple[float, int]] = []
    acks: list[tuple[int, int]] = []
    sampler = threading.Thread(target=_sampler, args=(writer.position, stop_sampling, samples))
    t0 = time.perf_counter()
    start_following()
    sampler.start()
    run = _drive(writer, plans, on_ack=lambda position, ns: acks.append((position, ns)))
    stop_sampling.set()
    sampler.join()
    head = writer.position()
    deadline = time.perf_counter() + 120
    while (not marks or marks[-1][1] < head) and time.perf_counter() < deadline:
        time.sleep(0.01)
    stop_following.set()
    follower.join()
    if process is not None:
        process.stop()
    figures = _follow_figures(t0, backlog, marks, samples, acks)
    acked = [plans[t][i][4] for t, a in enumerate(run["acked"]) for i, _, _ in a]
    check = reconcile(writer, store.base, acked)
    if rows_path is not None:
        _save_rows(writer, store.base, plans, run["acked"], rows_path)
    reader.close()
    writer.close()
    return {
        **figures,
        "write_commands_per_s": len(acked) / run["seconds"],
        "write_events_per_s": check["stored_events"] / run["seconds"],
        "caught_up_with_head": bool(marks) and marks[-1][1] >= head,
        **check,
        "refused": run["refused"],
        "errors": run["errors"],
        "durability": settings,
    }


def raw_catchup(url: str, rows_path: str) -> dict[str, Any]:
    """(child) Raw: the same rows written by 4 threads (table lock, so ids commit in order)
    while a raw follower reads pages of 1000 by notification id, decodes each event with
    Harbor's mapper and folds member → holder in memory (no read-model rows written)."""
    from eventsourcing.persistence import StoredEvent

    from domain.member_events import Attached, MemberEnrolled

    registry = _open(url)
    mapper = registry.mapper
    registry.close()
    with open(rows_path, "rb") as f:
        per_thread: list[list[list[tuple[Any, ...]]]] = pickle.load(f)
    conns = [psycopg.connect(url, autocommit=True) for _ in range(len(per_thread) + 2)]
    settings = _raw_durability(conns[0])
    head_sql = f"SELECT max(notification_id) FROM {RAW_TABLE}"
    page_sql = (
        f"SELECT notification_id, originator_id, originator_version, topic, state FROM {RAW_TABLE}"
        " WHERE notification_id > %s ORDER BY notification_id LIMIT 1000"
    )
    backlog = conns[0].execute(head_sql).fetchone()[0]
    marks: list[tuple[float, int, int]] = []
    samples: list[tuple[float, int]] = []
    acks: list[tuple[int, int]] = []
    stop_sampling, stop_following = threading.Event(), threading.Event()
    holders: dict[Any, str] = {}

    def follow() -> None:
        cur = conns[-1].cursor()
        position = 0
        while not stop_following.is_set():
            cur.execute(page_sql, (position,), prepare=True)
            page = cur.fetchall()
            for _nid, oid, version, topic, state in page:
                event = mapper.to_domain_event(StoredEvent(oid, version, topic, bytes(state)))
                if isinstance(event, MemberEnrolled):
                    holders[event.originator_id] = event.holder_unit_id
                elif isinstance(event, Attached):
                    holders[event.originator_id] = event.unit_id
            if page:
                position = page[-1][0]
            marks.append((time.perf_counter(), position, len(page)))
            if not page:
                stop_following.wait(0.05)

    def head() -> int:
        return int(conns[-2].execute(head_sql).fetchone()[0])

    def write(t: int) -> None:
        conn = conns[t]
        cur = conn.cursor()
        for rows in per_thread[t]:
            params = [list(column) for column in zip(*rows, strict=True)]
            with conn.pipeline(), conn.transaction():
                cur.execute(RAW_LOCK, prepare=True)
                cur.execute(RAW_INSERT, params, prepare=True)
            position = max(r[0] for r in cur.fetchall())
            acks.append((position, int(time.perf_counter() * 1e9)))

    follower = threading.Thread(target=follow)
    sampler = threading.Thread(target=_sampler, args=(head, stop_sampling, samples))
    writers = [threading.Thread(target=write, args=(t,)) for t in range(len(per_thread))]
    t0 = time.perf_counter()
    follower.start()
    sampler.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    written = time.perf_counter() - t0
    stop_sampling.set()
    sampler.join()
    final = head()
    deadline = time.perf_counter() + 120
    while (not marks or marks[-1][1] < final) and time.perf_counter() < deadline:
        time.sleep(0.01)
    stop_following.set()
    follower.join()
    for conn in conns:
        conn.close()
    events = sum(len(rows) for c in per_thread for rows in c)
    return {
        **_follow_figures(t0, backlog, marks, samples, acks),
        "write_events_per_s": events / written,
        "durability": settings,
    }


# --- point queries ----------------------------------------------------------------------------


def query_plan(members: int, queries: int, seed: int) -> list[str]:
    """Member ids to ask about (Zipf over members), warm-up first."""
    rng = random.Random(f"{seed}-queries")
    order = list(range(members))
    rng.shuffle(order)
    pick = Zipf(order, MEMBER_ZIPF, MEMBER_ZIPF_OFFSET)
    return [str(bench_member_id(pick.draw(rng))) for _ in range(queries)]


def harbor_queries(store: Store, ids: list[str], warmup: int) -> dict[str, Any]:
    """(child) ReadModels.member_status, in process, one after another."""
    from projections.queries import ReadModels

    registry = _open(store.url)
    models = ReadModels(registry)
    for member in ids[:warmup]:
        models.member_status(member)
    latencies = []
    started = time.perf_counter()
    for member in ids[warmup:]:
        t = time.perf_counter()
        models.member_status(member)
        latencies.append((time.perf_counter() - t) * 1000)
    seconds = time.perf_counter() - started
    registry.close()
    return {"queries_per_s": len(latencies) / seconds, **latency_summary(latencies)}


def raw_queries(url: str, ids: list[str], warmup: int) -> dict[str, Any]:
    """(child) Raw psycopg: the SELECT member_status makes, prepared, autocommit."""
    from projections.queries import MEMBER_STATUS_SQL

    sql = MEMBER_STATUS_SQL.replace("?", "%s")
    latencies = []
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:

        def status(member: str) -> None:
            cur.execute(sql, (member,), prepare=True)
            cur.fetchone()

        for member in ids[:warmup]:
            status(member)
        started = time.perf_counter()
        for member in ids[warmup:]:
            t = time.perf_counter()
            status(member)
            latencies.append((time.perf_counter() - t) * 1000)
        seconds = time.perf_counter() - started
    return {"queries_per_s": len(latencies) / seconds, **latency_summary(latencies)}


# --- the suite ------------------------------------------------------------------------------

BASELINES = {
    "write": (
        "raw psycopg 3, same thread count in one process, one connection per thread: each"
        " command's rows exactly as Harbor stored them in the same round (same originator ids,"
        " versions, topics, state bytes) in one prepared INSERT … SELECT unnest(…) RETURNING"
        " notification_id, autocommit (one statement = one transaction), into bench_raw_events"
        " (Harbor's table definition: PK, unique notification_id index, storage options, and"
        " the template's rows)"
    ),
    "import": (
        "COPY … FROM STDIN (FORMAT BINARY) of the rows Harbor's import stored in the same round,"
        " in one transaction, into bench_raw_events (no command receipts)"
    ),
    "catchup": (
        "the same rows written by 4 raw threads (LOCK TABLE … IN EXCLUSIVE MODE per transaction,"
        " so ids commit in order as a follower needs) while a raw follower pages 1000 rows by"
        " notification id, decodes each with Harbor's mapper and folds member → holder in memory"
    ),
    "point_query": (
        "the SELECT member_status makes (member row joined with its holder unit and open case,"
        " projections.queries.MEMBER_STATUS_SQL) as a prepared statement on one autocommit"
        " psycopg connection, the row left as a tuple"
    ),
}
RAW_LOCK_CHOICE = {
    False: (
        "no table lock in the write baselines: the raw writers then do not keep notification"
        " ids committing in order (Harbor does); this is the fastest the server takes these"
        " rows, the bound Harbor is measured against (as in BASELINES.md B1)"
    ),
    True: (
        "LOCK TABLE … IN EXCLUSIVE MODE in every baseline write transaction (--raw-lock): the"
        " same ordering guarantee as Harbor"
    ),
}


@dataclass
class Suite:
    """One run of the suite: sizes, databases, templates and the entries produced."""

    sizes: Sizes
    seed: int
    dbs: Databases
    raw_lock: bool
    templates: dict[str, Store]

    def template(self, backend: str) -> Store:
        """The backend's template database, built on first use."""
        if backend not in self.templates:
            url = self.dbs.fresh(backend, "template")
            print(f"[{backend}] building the template …", file=sys.stderr, flush=True)
            built = child(build_template, backend, url, self.sizes, self.seed)
            print(
                f"[{backend}] template: {built['base']:,} events in {built['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            self.templates[backend] = Store(backend, url, built["base"])
        return self.templates[backend]

    def rows_path(self, label: str) -> str:
        return str(self.dbs.tmp / f"{label}.rows.pkl")

    def writes(self, backend: str, threads: int) -> dict[str, Any]:
        plans = write_plan(self.sizes.members, threads, self.sizes.commands, self.seed)
        harbor, raw = [], []
        for round_no in range(self.sizes.rounds):
            rows = self.rows_path(f"write{threads}") if backend == "postgres" else None
            store = self.dbs.clone(self.template(backend), f"w{threads}")
            harbor.append(child(harbor_writes, store, plans, rows))
            self.dbs.drop(store)
            if rows is not None:
                store = self.dbs.clone(self.template(backend), f"w{threads}raw")
                raw.append(child(raw_writes, store.url, rows, self.raw_lock))
                self.dbs.drop(store)
            _progress(backend, f"write_{threads}", round_no, harbor, raw, "commands_per_s")
        # One more Harbor round from a cold cache: what the first minutes after a restart
        # look like, before the cache holds the active members.
        store = self.dbs.clone(self.template(backend), f"w{threads}cold")
        cold = child(harbor_writes, store, plans, None, False)
        self.dbs.drop(store)
        baseline = median([b["commands_per_s"] for b in raw])
        result = entry(
            f"write_{threads}",
            backend,
            "commands/s",
            "command",
            harbor,
            raw,
            "commands_per_s",
            extras={
                "threads": threads,
                "harbor_events_per_s": _r(median([h["events_per_s"] for h in harbor]), 1),
                "baseline_events_per_s": _r(median([b["events_per_s"] for b in raw]), 1),
                "commands": sum(len(p) for p in plans),
                "hot_commands": sum(1 for p in plans for c in p if c[4].startswith("contact:热点")),
                "race_retries": [h["race_retries"] for h in harbor],
                "refused": [h["refused"] for h in harbor],
                "errors": [h["errors"] for h in harbor],
                "group_commit": harbor[-1]["group_commit"],
                "warmed_members": harbor[-1]["warmed_members"],
                "warm_seconds": [h["warm_seconds"] for h in harbor],
                "cache": [h["cache"] for h in harbor],
                "cold_start": {
                    "commands_per_s": _r(cold["commands_per_s"], 1),
                    "ratio": _r(cold["commands_per_s"] / baseline) if baseline else None,
                    "p50_ms": cold["p50_ms"],
                    "p99_ms": cold["p99_ms"],
                    "cache": cold["cache"],
                    "lost": cold["lost"],
                    "duplicated": cold["duplicated"],
                },
            },
        )
        if result["lost"] is not None:  # the cold round's losses count like any other's
            result["lost"] += cold["lost"]
            result["duplicated"] += cold["duplicated"]
        return result

    def import_(self, backend: str) -> dict[str, Any]:
        path = self.dbs.tmp / "import.jsonl"
        if not path.exists():
            lines = import_plan(self.sizes.import_members, self.seed)
            with path.open("w", encoding="utf-8") as f:
                for record, _ in lines:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
            with open(f"{path}.tokens", "wb") as tf:
                pickle.dump([token for _, token in lines], tf)
        harbor, raw = [], []
        for round_no in range(self.sizes.rounds):
            rows = self.rows_path("import") if backend == "postgres" else None
            store = self.dbs.clone(self.template(backend), "imp")
            harbor.append(child(harbor_import, store, str(path), rows))
            self.dbs.drop(store)
            if rows is not None:
                store = self.dbs.clone(self.template(backend), "impraw")
                raw.append(child(raw_copy, store.url, rows))
                self.dbs.drop(store)
            _progress(backend, "import", round_no, harbor, raw, "events_per_s")
        return entry(
            "import",
            backend,
            "events/s",
            "batch commit",
            harbor,
            raw,
            "events_per_s",
            extras={
                "lines": harbor[-1]["lines"],
                "events": harbor[-1]["stored_events"],
                "harbor_lines_per_s": _r(median([h["lines_per_s"] for h in harbor]), 1),
                "problems": [h["problems"] for h in harbor],
                "first_problems": harbor[-1]["first_problems"],
            },
        )

    def catchup(self, backend: str) -> dict[str, Any]:
        plans = write_plan(self.sizes.members, 4, self.sizes.catchup_commands, self.seed)
        harbor, raw = [], []
        for round_no in range(self.sizes.rounds):
            rows = self.rows_path("catchup") if backend == "postgres" else None
            store = self.dbs.clone(self.template(backend), "cu")
            harbor.append(child(harbor_catchup, store, plans, rows))
            self.dbs.drop(store)
            if rows is not None:
                store = self.dbs.clone(self.template(backend), "curaw")
                raw.append(child(raw_catchup, store.url, rows))
                self.dbs.drop(store)
            _progress(backend, "catchup", round_no, harbor, raw, "events_per_s")
        return entry(
            "catchup",
            backend,
            "events/s",
            "lag",
            harbor,
            raw,
            "events_per_s",
            extras={
                "lag_p99_s": _r(median([h["lag_p99_s"] for h in harbor])),
                "baseline_lag_p99_s": _r(median([b["lag_p99_s"] for b in raw])),
                "ack_lag_p99_s": _r(median([h["ack_lag_p99_s"] for h in harbor])),
                "backlog_events": harbor[-1]["backlog_events"],
                "backlog_seconds": [_r(h["backlog_seconds"]) for h in harbor],
                "write_commands_per_s": _r(
                    median([h["write_commands_per_s"] for h in harbor]), 1
                ),
                "write_events_per_s": _r(median([h["write_events_per_s"] for h in harbor]), 1),
                "baseline_write_events_per_s": _r(
                    median([b["write_events_per_s"] for b in raw]), 1
                ),
                "unresolved_samples": [h["unresolved"] for h in harbor],
                "refused": [h["refused"] for h in harbor],
                "errors": [h["errors"] for h in harbor],
                "caught_up_with_head": all(h["caught_up_with_head"] for h in harbor),
                "lag_method": (
                    f"the log head is sampled every {SAMPLE_SECONDS * 1000:.0f} ms; the lag of"
                    " a sample is the time until the follower's first batch ending at or past"
                    " that head (batch completion times are exact); samples start once the"
                    " backlog present at the start is folded"
                ),
            },
        )

    def point_query(self, backend: str) -> dict[str, Any]:
        store = self.dbs.clone(self.template(backend), "pq")
        built = child(build_projections, store.url)
        print(
            f"[{backend}] projections: {built['events']:,} events in {built['seconds']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        ids = query_plan(self.sizes.members, self.sizes.queries, self.seed)
        warmup = min(200, len(ids) // 10)
        harbor, raw = [], []
        for round_no in range(self.sizes.rounds):
            harbor.append(child(harbor_queries, store, ids, warmup))
            if backend == "postgres":
                raw.append(child(raw_queries, store.url, ids, warmup))
            _progress(backend, "point_query", round_no, harbor, raw, "queries_per_s")
        self.dbs.drop(store)
        return entry(
            "point_query",
            backend,
            "queries/s",
            "query",
            harbor,
            raw,
            "queries_per_s",
            extras={"queries": len(ids) - warmup, "warmup": warmup, "same_database": True},
        )


def _progress(
    backend: str, name: str, round_no: int, harbor: list[Any], raw: list[Any], key: str
) -> None:
    line = f"[{backend}] {name} round {round_no + 1}: harbor {harbor[-1][key]:,.0f}"
    if raw:
        line += f", baseline {raw[-1][key]:,.0f} ({harbor[-1][key] / raw[-1][key]:.2f})"
    if "lost" in harbor[-1]:
        line += f"; lost {harbor[-1]['lost']}, duplicated {harbor[-1]['duplicated']}"
    print(line, file=sys.stderr, flush=True)


def entry(
    name: str,
    backend: str,
    unit: str,
    latency_of: str,
    harbor: list[dict[str, Any]],
    raw: list[dict[str, Any]],
    key: str,
    extras: dict[str, Any],
) -> dict[str, Any]:
    """One result: medians over the rounds, lost/duplicated summed over them."""
    h = median([run[key] for run in harbor])
    b = median([run[key] for run in raw]) if raw else None
    middle = min(harbor, key=lambda run: abs(run[key] - (h or 0)))
    base_middle = min(raw, key=lambda run: abs(run[key] - (b or 0))) if raw else None
    result: dict[str, Any] = {
        "name": name if backend == "postgres" else f"sqlite:{name}",
        "harbor": _r(h, 1),
        "baseline": _r(b, 1),
        "ratio": _r(h / b if h and b else None),
        "unit": unit,
        "p50_ms": _r(median([run["p50_ms"] for run in harbor])),
        "p99_ms": _r(median([run["p99_ms"] for run in harbor])),
        "lost": sum(run["lost"] for run in harbor) if "lost" in harbor[0] else None,
        "duplicated": sum(run["duplicated"] for run in harbor) if "lost" in harbor[0] else None,
        "backend": backend,
        "latency_of": latency_of,
        "p95_ms": _r(median([run["p95_ms"] for run in harbor])),
        "p999_ms": _r(median([run["p999_ms"] for run in harbor])),
        "baseline_p50_ms": _r(median([run.get("p50_ms") for run in raw])),
        "baseline_p99_ms": _r(median([run.get("p99_ms") for run in raw])),
        "baseline_p999_ms": _r(median([run.get("p999_ms") for run in raw])),
        "rounds": len(harbor),
        "harbor_rounds": [_r(run[key], 1) for run in harbor],
        "baseline_rounds": [_r(run[key], 1) for run in raw],
        "curve": middle.get("curve", []),
        "baseline_curve": base_middle.get("curve", []) if base_middle else [],
        "stored_unacked": sum(run.get("stored_unacked", 0) for run in harbor),
        "durability_seen": harbor[0].get("durability"),
        "baseline_durability_seen": raw[0].get("durability") if raw else None,
        "baseline_definition": (
            BASELINES["write" if name.startswith("write") else name] if raw else None
        ),
        **extras,
    }
    return result


# --- conditions and output ------------------------------------------------------------------


def conditions(sizes: Sizes, seed: int, raw_lock: bool, sqlite: bool) -> dict[str, Any]:
    """The machine, PostgreSQL's durability settings, versions and the suite's settings."""
    from importlib.metadata import version

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in read("/proc/cpuinfo").splitlines()
         if ln.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    mem_kb = next(
        (int(ln.split()[1]) for ln in read("/proc/meminfo").splitlines()
         if ln.startswith("MemTotal")),
        0,
    )  # fmt: skip
    settings = (
        "server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes",
        "shared_buffers", "commit_delay", "max_wal_size", "wal_level",
    )  # fmt: skip
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        postgres = {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in settings}
        postgres["version"] = str(conn.execute("SELECT version()").fetchone()[0])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", False
    import sqlite3

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu,
            "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "postgres": {**postgres, "PGOPTIONS": os.environ.get("PGOPTIONS", "")},
        "sqlite": {"version": sqlite3.sqlite_version} if sqlite else None,
        "versions": {
            "harbor_commit": commit + ("+dirty" if dirty else ""),
            "eventsourcing": version("eventsourcing"),
            "psycopg": version("psycopg"),
        },
        "suite": {
            "seed": seed,
            "sizes": asdict(sizes),
            "today": TODAY.isoformat(),
            "group_commit": _group_commit_env(),
            "hot_share": HOT_SHARE,
            "hot_pool": HOT_POOL,
            "hot_window": HOT_WINDOW,
            "member_zipf": {"s": MEMBER_ZIPF, "offset": MEMBER_ZIPF_OFFSET},
            "unit_zipf": UNIT_ZIPF,
            "raw_lock": RAW_LOCK_CHOICE[raw_lock],
        },
    }


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(results: list[dict[str, Any]], cond: dict[str, Any]) -> str:
    """The results as a markdown table, with the conditions they were taken under."""
    m, pg, suite = cond["machine"], cond["postgres"], cond["suite"]
    out = [
        f"# Harbor benchmark suite — {cond['date']}",
        "",
        *(["**TINY RUN: a smoke test of the suite, not a measurement.**", ""] * cond["tiny"]),
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel"
        f" {m['kernel']}, Python {m['python']}; load average at start"
        f" {', '.join(map(str, m['load_average_at_start']))}",
        f"- PostgreSQL {pg['server_version']}: fsync={pg['fsync']},"
        f" synchronous_commit={pg['synchronous_commit']},"
        f" wal_sync_method={pg['wal_sync_method']}, full_page_writes={pg['full_page_writes']},"
        f" shared_buffers={pg['shared_buffers']}, commit_delay={pg['commit_delay']}"
        " (as found; the suite changes none)",
        f"- Harbor {cond['versions']['harbor_commit']}, eventsourcing"
        f" {cond['versions']['eventsourcing']}, psycopg {cond['versions']['psycopg']};"
        f" group commit {suite['group_commit']}",
        f"- Seed {suite['seed']}; sizes {suite['sizes']}; medians of {suite['sizes']['rounds']}"
        " alternating rounds (Harbor, baseline, Harbor, …), each on a fresh clone of the template",
        f"- Baseline writes: {suite['raw_lock']}",
    ]
    if cond.get("sqlite"):
        out.append(f"- SQLite {cond['sqlite']['version']} (Harbor only, no baseline)")
    if cond.get("failed"):
        out.append(f"- **Failed, not in the table:** {', '.join(cond['failed'])}")
    out += [
        "",
        "| workload | Harbor | baseline | ratio | unit | latency of | p50 ms | p95 ms | p99 ms"
        " | p99.9 ms | baseline p50 / p99 ms | lost | duplicated |",
        "|---|--:|--:|--:|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        out.append(
            f"| {r['name']} | {_fmt(r['harbor'])} | {_fmt(r['baseline'])} |"
            f" {_fmt(r['ratio'], 2)} | {r['unit']} | {r['latency_of']} | {_fmt(r['p50_ms'], 3)}"
            f" | {_fmt(r['p95_ms'], 3)} | {_fmt(r['p99_ms'], 3)} | {_fmt(r['p999_ms'], 3)} |"
            f" {_fmt(r['baseline_p50_ms'], 3)} / {_fmt(r['baseline_p99_ms'], 3)} |"
            f" {_fmt(r['lost'])} | {_fmt(r['duplicated'])} |"
        )
    out += ["", "Per round (Harbor / baseline):", ""]
    for r in results:
        line = f"- {r['name']}: {r['harbor_rounds']} / {r['baseline_rounds'] or '–'}"
        if r["name"].endswith("catchup"):
            line += (
                f"; lag p99 {r['lag_p99_s']} s (baseline {r['baseline_lag_p99_s']} s),"
                f" ack→projected lag p99 {r['ack_lag_p99_s']} s; backlog"
                f" {r['backlog_events']:,} events; writes {r['write_events_per_s']} events/s"
                f" (baseline {r['baseline_write_events_per_s']})"
            )
        if "race_retries" in r:
            line += f"; race retries {r['race_retries']}; refused {r['refused']}"
        if r.get("cold_start"):
            cold = r["cold_start"]
            line += (
                f"; cache warmed with {r['warmed_members']:,} members first; from a cold cache"
                f" {_fmt(cold['commands_per_s'])}/s (ratio {_fmt(cold['ratio'], 2)},"
                f" p99 {_fmt(cold['p99_ms'], 3)} ms)"
            )
        if r.get("errors") and any(r["errors"]):
            line += f"; errors {r['errors']}"
        out.append(line)
    out += ["", "Baselines:", ""]
    for name, text in BASELINES.items():
        out.append(f"- {name}: {text}")
    return "\n".join(out) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    """Latency percentile curves, Harbor against baseline, one panel per workload."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    shown = [r for r in results if r["curve"]]
    if not shown:
        return False
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)

    def x(p: float) -> float:
        return -math.log10(max(1 - p / 100, 1e-5))

    ticks = [50, 90, 99, 99.9, 99.99]
    for ax, r in zip(axes.flat, shown, strict=False):
        for curve, label, style in (
            (r["curve"], "Harbor", "-o"),
            (r["baseline_curve"], "baseline", "--s"),
        ):
            points = [(x(p), v) for p, v in curve if v is not None and v > 0]
            if points:
                ax.plot(*zip(*points, strict=True), style, markersize=3, label=label)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xticks([x(p) for p in ticks], [f"{p:g}" for p in ticks])
        ax.set_title(f"{r['name']} ({r['latency_of']})", fontsize=10)
        ax.set_xlabel("percentile")
        ax.set_ylabel("ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> int:
    """Run the selected workloads and write JSON, markdown and a latency plot."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="longer: more commands and rounds")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "bench" / "results" / "latest.json",
        help="where to write the results (the .md and .png go beside it)",
    )  # fmt: skip
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(WORKLOADS)}")
    parser.add_argument("--sqlite", action="store_true", help="also run Harbor on SQLite")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--seed", type=int, default=SEED, help="the workloads' seed")
    parser.add_argument(
        "--raw-lock", action="store_true",
        help="write baselines take Harbor's table lock too (same ordering guarantee)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args()

    sizes = TINY if args.tiny else FULL if args.full else DEFAULT
    if args.rounds:
        sizes = replace(sizes, rounds=args.rounds)
    selected = [w.strip() for w in args.only.split(",")] if args.only else list(WORKLOADS)
    unknown = sorted(set(selected) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {WORKLOADS}")
    try:
        cond = conditions(sizes, args.seed, args.raw_lock, args.sqlite)
    except psycopg.OperationalError as e:
        print(f"PostgreSQL is not reachable at {ADMIN_URL} ({e}); set HARBOR_BENCH_POSTGRES_URL")
        return 2
    pg = cond["postgres"]
    if pg["fsync"] != "on" or pg["synchronous_commit"] != "on":
        print(
            "WARNING: fsync/synchronous_commit are not both on: these figures are not comparable"
            " with BASELINES.md (the suite never changes them)",
            file=sys.stderr,
        )
    print(
        f"PostgreSQL {pg['server_version']}: fsync={pg['fsync']},"
        f" synchronous_commit={pg['synchronous_commit']}; {cond['machine']['nproc']} CPUs,"
        f" load {cond['machine']['load_average_at_start']}",
        file=sys.stderr,
    )
    started = time.perf_counter()
    dbs = Databases(keep=args.keep)
    suite = Suite(sizes, args.seed, dbs, args.raw_lock, {})
    results, failed = [], []
    try:
        for backend in ("postgres", "sqlite") if args.sqlite else ("postgres",):
            for name in WORKLOADS:
                if name not in selected:
                    continue
                try:
                    if name.startswith("write_"):
                        results.append(suite.writes(backend, int(name.split("_")[1])))
                    elif name == "import":
                        results.append(suite.import_(backend))
                    else:
                        results.append(getattr(suite, name)(backend))
                except RuntimeError as e:  # a run failed: report it, go on with the others
                    print(f"[{backend}] {name} FAILED: {e}", file=sys.stderr, flush=True)
                    failed.append(f"{backend}:{name}")
    finally:
        dbs.close()
    cond["seconds"] = round(time.perf_counter() - started, 1)
    cond["tiny"] = args.tiny
    cond["failed"] = failed
    cond["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    for r in results:
        r["conditions"] = cond
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    text = markdown(results, cond)
    args.json.with_suffix(".md").write_text(text)
    plotted = plot(results, args.json.with_suffix(".png"))
    print(text)
    written = [args.json, args.json.with_suffix(".md")]
    if plotted:
        written.append(args.json.with_suffix(".png"))
    print(
        f"wrote {', '.join(str(p) for p in written)} in {cond['seconds']:.0f} s", file=sys.stderr
    )
    bad = [r["name"] for r in results if r["lost"] or r["duplicated"]]
    if bad:
        print(f"LOST OR DUPLICATED COMMANDS in {', '.join(bad)}", file=sys.stderr)
    if failed:
        print(f"FAILED: {', '.join(failed)} (not in the results)", file=sys.stderr)
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
