"""Benchmark: `harbor db copy` between the backends, against a raw copy of the same rows.

    python bench/dbcopy.py [--full] [--rounds 3] [--json PATH]

On the write suite's template (built on PostgreSQL as `bench/suite.py` builds it: 60 units,
a seeded history, 4,000 members with open cases; `--full`: 20,000), in alternating rounds,
each into a fresh target, each in a fresh process:

- PostgreSQL → SQLite: `api.store_copy.copy_store` (the log at its positions, the side
  tables, every check); baseline: the same rows read by psycopg in pages of the same size
  and inserted by `executemany` into a table of the SQLite recorder's shape, one
  transaction per page.
- SQLite → PostgreSQL (the copy just made, copied back): `copy_store`; baseline: the same
  rows read from the SQLite file and sent by `COPY … FROM STDIN` into a table of Harbor's
  PostgreSQL shape, one transaction per page.

Rebuilding the target's projections (which `harbor db copy` does next) is measured apart:
it is `harbor rebuild`'s own cost (`bench/rebuild.py`). Prints events/s, medians of the
rounds, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.suite import DEFAULT, FULL, Databases, build_template, child  # noqa: E402

PAGE = 5000


def harbor_copy(source: str, target: str) -> dict[str, Any]:
    """(child) copy_store from one URL to another; events/s of the copy alone."""
    from api.store_copy import copy_store
    from projections.runner import rebuild
    from store import open_registry

    src, dst = open_registry(source), open_registry(target)
    try:
        started = time.perf_counter()
        report = copy_store(src, dst, batch=PAGE)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        rebuild(dst)
        rebuild_seconds = time.perf_counter() - started
    finally:
        src.close()
        dst.close()
    return {"events": report.events, "seconds": seconds, "events_per_s": report.events / seconds,
            "rebuild_seconds": rebuild_seconds}


def raw_pg_to_sqlite(source: str, path: str) -> dict[str, Any]:
    """(child) The log's rows by psycopg, pages of PAGE, into an SQLite table by executemany."""
    target = sqlite3.connect(path)
    target.execute(
        "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER,"
        " topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
    )
    started = time.perf_counter()
    events, last = 0, 0
    with psycopg.connect(source, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state"
                " FROM harbor_events WHERE notification_id > %s ORDER BY notification_id"
                " LIMIT %s",
                (last, PAGE),
            ).fetchall()
            if not rows:
                break
            with target:
                target.executemany(
                    "INSERT INTO stored_events (rowid, originator_id, originator_version, topic,"
                    " state) VALUES (?, ?, ?, ?, ?)",
                    [(r[0], r[1].hex, r[2], r[3], r[4]) for r in rows],
                )
            events += len(rows)
            last = rows[-1][0]
    seconds = time.perf_counter() - started
    target.close()
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def raw_sqlite_to_pg(path: str, target: str) -> dict[str, Any]:
    """(child) The SQLite log's rows, pages of PAGE, into PostgreSQL by COPY."""
    import uuid

    source = sqlite3.connect(path)
    started = time.perf_counter()
    events, last = 0, 0
    with psycopg.connect(target) as conn:
        conn.execute(
            "CREATE TABLE raw_events (originator_id uuid NOT NULL, originator_version bigint"
            " NOT NULL, topic text, state bytea, notification_id bigserial,"
            " PRIMARY KEY (originator_id, originator_version))"
        )
        conn.execute("CREATE UNIQUE INDEX ON raw_events (notification_id)")
        conn.commit()
        while True:
            rows = source.execute(
                "SELECT rowid, originator_id, originator_version, topic, state FROM"
                " stored_events WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, PAGE),
            ).fetchall()
            if not rows:
                break
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                "COPY raw_events (notification_id, originator_id, originator_version, topic,"
                " state) FROM STDIN"
            ) as copy:
                for r in rows:
                    copy.write_row((r[0], uuid.UUID(hex=r[1]), r[2], r[3], r[4]))
            events += len(rows)
            last = rows[-1][0]
    seconds = time.perf_counter() - started
    source.close()
    return {"events": events, "seconds": seconds, "events_per_s": events / seconds}


def main() -> int:
    """Build, run the rounds, print, write."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="20,000 members instead of 4,000")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--json", default="bench/results/copy.json", help="where to write")
    args = parser.parse_args()
    dbs = Databases()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        "postgres_to_sqlite": {"harbor": [], "baseline": []},
        "sqlite_to_postgres": {"harbor": [], "baseline": []},
    }
    try:
        source = dbs.fresh("postgres", "copysrc")
        print("building the store …", file=sys.stderr, flush=True)
        built = child(build_template, "postgres", source, FULL if args.full else DEFAULT,
                      args.seed)
        print(f"{built['base']:,} events", file=sys.stderr, flush=True)
        for round_no in range(args.rounds):
            file = dbs.fresh("sqlite", "copy")
            down = results["postgres_to_sqlite"]
            down["harbor"].append(child(harbor_copy, source, file))
            down["baseline"].append(
                child(raw_pg_to_sqlite, source, str(dbs.tmp / f"raw{round_no}.db"))
            )
            up = results["sqlite_to_postgres"]
            up["harbor"].append(child(harbor_copy, file, dbs.fresh("postgres", "copyup")))
            up["baseline"].append(
                child(raw_sqlite_to_pg, file.removeprefix("sqlite:///"),
                      dbs.fresh("postgres", "copyraw"))
            )
            print(f"round {round_no + 1}: " + ", ".join(
                f"{name} {r['harbor'][-1]['events_per_s']:,.0f} vs"
                f" {r['baseline'][-1]['events_per_s']:,.0f} events/s"
                for name, r in results.items()
            ), file=sys.stderr, flush=True)
    finally:
        dbs.close()
    print("| direction | Harbor events/s | raw baseline events/s | ratio | rebuild after, s |")
    print("|---|--:|--:|--:|--:|")
    summary = {}
    for name, r in results.items():
        harbor = statistics.median(x["events_per_s"] for x in r["harbor"])
        raw = statistics.median(x["events_per_s"] for x in r["baseline"])
        rebuild_s = statistics.median(x["rebuild_seconds"] for x in r["harbor"])
        summary[name] = {"harbor_events_per_s": round(harbor), "baseline_events_per_s": round(raw),
                         "ratio": round(harbor / raw, 3), "rebuild_seconds": round(rebuild_s, 2)}
        print(f"| {name.replace('_', ' ')} | {harbor:,.0f} | {raw:,.0f} | {harbor / raw:.2f}"
              f" | {rebuild_s:.1f} |")
    out = {"events": built["base"], "page": PAGE, "rounds": args.rounds, "summary": summary,
           "runs": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
