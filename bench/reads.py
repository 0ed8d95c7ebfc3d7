"""Benchmark: a unit's reads (queue, scorecard, findings, roster) against the same statements raw.

    python bench/reads.py [--full] [--repeat 30] [--json PATH]

On PostgreSQL, on a database built as `bench/suite.py` builds its template (60 units, a
seeded history, 4,000 members with open cases; `--full`: 20,000) with its projections
folded, each read is asked for the unit that answered first in the most open cases (a
busy centre) and for the unit at the median, `--repeat` times after one warm-up call;
and the whole registry's scorecards and findings, as an auditor reads them.

Baseline, in the same run: the statements the read ran (recorded from its own calls),
each sent by plain psycopg as a prepared statement on one autocommit connection and its
rows fetched as tuples, with no judging, no records and no answer built: what the database
alone costs the read. Prints a table (p50 / p99 ms for each) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.suite import (  # noqa: E402
    DEFAULT,
    FULL,
    Databases,
    build_projections,
    build_template,
    child,
    percentile,
)

READS = ("queue", "scorecard", "findings", "roster")


def _summary(ms: list[float]) -> dict[str, float | None]:
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


def measure(url: str, repeat: int) -> dict[str, Any]:
    """(child) Each read for the busiest and the median unit, Harbor then raw."""
    from projections.queries import ReadModels
    from projections.schema import view
    from store import open_registry
    from store.sql import Db

    registry = open_registry(url)
    models = ReadModels(registry)
    busy = models.db.query(
        f"SELECT first_responder, COUNT(*) FROM {view('cases')} WHERE closed_on IS NULL"
        " GROUP BY first_responder ORDER BY COUNT(*) DESC, first_responder"
    )
    units = {"busiest": busy[0], "median": busy[len(busy) // 2],
             "registry": (None, sum(n for _, n in busy))}
    # The whole registry's scorecards and findings (an auditor's view): no unit given.
    asked = {"busiest": READS, "median": READS, "registry": ("scorecard", "findings")}
    calls: dict[str, Callable[[str | None], Any]] = {
        "queue": models.unit_queue,
        "scorecard": models.scorecards,
        "findings": lambda unit: models.findings(unit_id=unit),
        "roster": models.roster,
    }
    recorded: list[tuple[str, tuple[Any, ...]]] = []
    inner = Db.query

    def recording(self: Db, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        recorded.append((sql, tuple(params)))
        return inner(self, sql, params)

    results: dict[str, Any] = {}
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        for which, (unit, open_cases) in units.items():
            for read in asked[which]:
                recorded.clear()
                Db.query = recording  # type: ignore[method-assign]
                try:
                    answer = calls[read](unit)  # warm-up, and the statements it runs
                finally:
                    Db.query = inner  # type: ignore[method-assign]
                statements = [(sql.replace("?", "%s"), params) for sql, params in recorded]
                harbor: list[float] = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    calls[read](unit)
                    harbor.append((time.perf_counter() - t) * 1000)
                raw: list[float] = []
                for _ in range(repeat + 1):
                    t = time.perf_counter()
                    for sql, params in statements:
                        cur.execute(sql, params, prepare=True)
                        cur.fetchall()
                    raw.append((time.perf_counter() - t) * 1000)
                results[f"{read}/{which}"] = {
                    "unit": unit,
                    "open_cases_answered_first": open_cases,
                    "statements": len(statements),
                    "answer_size": _size(answer),
                    "harbor": _summary(harbor),
                    "baseline": _summary(raw[1:]),  # the first call prepares
                }
    registry.close()
    return results


def _size(answer: Any) -> int:
    if isinstance(answer, list):
        return len(answer)
    if isinstance(answer, dict):
        return sum(len(v) for v in answer.values() if isinstance(v, list))
    return 1


def main() -> int:
    """Build, measure, print, write."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="20,000 members instead of 4,000")
    parser.add_argument("--repeat", type=int, default=30, help="calls of each read (default 30)")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--json", default="bench/results/reads.json", help="where to write")
    args = parser.parse_args()
    sizes = FULL if args.full else DEFAULT
    dbs = Databases()
    try:
        url = dbs.fresh("postgres", "reads")
        print("building the store …", file=sys.stderr, flush=True)
        built = child(build_template, "postgres", url, sizes, args.seed)
        folded = child(build_projections, url)
        print(f"{built['base']:,} events, projections in {folded['seconds']:.1f} s",
              file=sys.stderr, flush=True)
        results = child(measure, url, args.repeat)
    finally:
        dbs.close()
    print("| read | unit | open cases it answered first | rows | statements"
          " | Harbor p50 / p99 ms | same statements raw p50 / p99 ms |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for name, r in results.items():
        h, b = r["harbor"], r["baseline"]
        unit = r["unit"] or "all units"
        print(f"| {name} | {unit} | {r['open_cases_answered_first']:,} | {r['answer_size']:,}"
              f" | {r['statements']} | {h['p50_ms']:.1f} / {h['p99_ms']:.1f}"
              f" | {b['p50_ms']:.1f} / {b['p99_ms']:.1f} |")
    out = {"events": built["base"], "repeat": args.repeat, "reads": results,
           "median_unit_note": "the unit at the median of open cases answered first"}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
