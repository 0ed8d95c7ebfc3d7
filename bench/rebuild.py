"""Benchmark: a full projection rebuild against a raw fold of the same events table.

    python bench/rebuild.py --events 100000 --json bench/results/rebuild-100k.json

Writes N events of transfer cases (seeded) into a fresh PostgreSQL database,
then, each in a child process of its own (so peak RSS is the run's own):
  - harbor: `projections.runner.rebuild` from position zero (all five read models);
  - raw: a server-side cursor over Harbor's events table, the same decoder
    (the application's mapper), folded into a plain dict member -> holder.
Runs alternate (raw, harbor, raw, harbor, ...) and medians are reported.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from projections.runner import REBUILD_BATCH

ADMIN_URL = os.environ.get(
    "HARBOR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def _open(url: str) -> Any:
    from datetime import date

    from store import open_registry

    return open_registry(url, clock=lambda: date(2026, 11, 26))


def _harbor(url: str, batch: int, workers: int, queue: Any) -> None:
    from projections.runner import rebuild

    registry = _open(url)
    total = registry.position()
    started = time.perf_counter()
    rebuild(registry, batch_size=batch, workers=workers)
    elapsed = time.perf_counter() - started
    # Peak RSS of this process and of any worker processes it started.
    rss = (
        max(
            resource.getrusage(who).ru_maxrss
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        / 1024
    )
    queue.put({"events": total, "seconds": elapsed, "rss_mb": rss})


def _raw(url: str, queue: Any) -> None:
    from eventsourcing.persistence import StoredEvent

    from domain.member_events import Attached, MemberEnrolled

    registry = _open(url)
    mapper = registry.mapper
    holders: dict[uuid.UUID, str] = {}
    started = time.perf_counter()
    count = 0
    with psycopg.connect(url) as conn, conn.cursor(name="raw_fold") as cur:
        cur.itersize = 5000
        cur.execute(
            "SELECT originator_id, originator_version, topic, state FROM harbor_events"
            " ORDER BY notification_id"
        )
        for oid, version, topic, state in cur:
            event = mapper.to_domain_event(StoredEvent(oid, version, topic, bytes(state)))
            count += 1
            if isinstance(event, MemberEnrolled):
                holders[event.originator_id] = event.holder_unit_id
            elif isinstance(event, Attached):
                holders[event.originator_id] = event.unit_id
    elapsed = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"events": count, "seconds": elapsed, "rss_mb": rss})


def _child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result: dict[str, Any] = queue.get()
    proc.join()
    return result


def main() -> int:
    """Run the benchmark and print/write its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="events to generate")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument(
        "--batch", type=int, default=REBUILD_BATCH, help=f"rebuild batch size ({REBUILD_BATCH})"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="rebuild worker processes (harbor rebuild's default)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    name = f"harbor_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _db_url(name)
    try:
        from bench.workload import write_workload

        registry = _open(url)
        started = time.perf_counter()
        written = write_workload(
            registry,
            args.events,
            progress=lambda n: print(f"\rwritten {n:,}", end="", file=sys.stderr),
        )
        print(
            f"\rwrote {written:,} events in {time.perf_counter() - started:.0f} s", file=sys.stderr
        )
        registry.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE harbor_events")
        raws, harbors = [], []
        for round_no in range(args.rounds):
            raws.append(_child(_raw, url))
            harbors.append(_child(_harbor, url, args.batch, args.workers))
            print(
                f"round {round_no + 1}: raw {raws[-1]['events'] / raws[-1]['seconds']:,.0f}"
                f" ev/s, harbor {harbors[-1]['events'] / harbors[-1]['seconds']:,.0f} ev/s,"
                f" harbor peak RSS {harbors[-1]['rss_mb']:.0f} MB",
                file=sys.stderr,
            )
        raw_rate = statistics.median(r["events"] / r["seconds"] for r in raws)
        harbor_rate = statistics.median(h["events"] / h["seconds"] for h in harbors)
        figures = {
            "events": written,
            "rebuild_events_per_s": round(harbor_rate),
            "raw_events_per_s": round(raw_rate),
            "ratio": round(harbor_rate / raw_rate, 3),
            "peak_rss_mb": round(statistics.median(h["rss_mb"] for h in harbors), 1),
            "raw_peak_rss_mb": round(statistics.median(r["rss_mb"] for r in raws), 1),
            "rounds": args.rounds,
            "batch": args.batch,
            "workers": args.workers,
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
