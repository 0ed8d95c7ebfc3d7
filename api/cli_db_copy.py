"""`harbor db copy --to URL`: the store into another database, then its projections rebuilt
and its audit log verified there (api/store_copy.py says what is copied and why)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from api.cli_args import add_command, whole_number
from api.store_copy import DEFAULT_BATCH, CopyRefused, copy_store
from audit.log import AuditLog
from audit.verify import verify_log
from domain.registry import Registry
from projections.runner import default_workers, rebuild
from store import open_registry, parse_database_url
from store.config import database_url, sqlite_file

EXIT_REFUSED = 1
EXIT_SETUP = 2
EXIT_UNAVAILABLE = 3


def add_copy_command(db: Any) -> None:
    """Register `db copy` under `harbor db`."""
    p = add_command(
        db,
        "copy",
        summary="copy the whole store into another database (SQLite ⇄ PostgreSQL)",
        description="Copy this store (HARBOR_DATABASE_URL) into another database, SQLite or"
        " PostgreSQL: every event at its own log position, the command receipts, the"
        " credentials and the audit log (its signed tree heads and keys), then rebuild the"
        " target's projections and verify its audit log. Stop Harbor first: nothing may"
        " write to the store meanwhile. An interrupted copy goes on where it stopped when"
        " run again. Then point HARBOR_DATABASE_URL at the target.",
        example="HARBOR_DATABASE_URL=sqlite:///harbor.db \\\n"
        "  harbor db copy --to postgresql://harbor@db.example/harbor",
    )
    p.add_argument("--to", required=True, metavar="URL",
                   help="the target: sqlite:///path.db or postgresql://user@host:port/db")
    p.add_argument("--batch", type=whole_number("--batch", 1), default=DEFAULT_BATCH,
                   help="events (and rows) per transaction (default %(default)s)")


def run_copy(source: Registry, args: argparse.Namespace) -> int:
    """Copy, rebuild, verify, and say what was done."""
    if args.batch < 1:
        print("harbor db copy: --batch must be at least 1", file=sys.stderr)
        return EXIT_SETUP
    try:
        target_config = parse_database_url(args.to)
    except ValueError as e:
        print(f"harbor db copy: --to: {e}", file=sys.stderr)
        return EXIT_SETUP
    if target_config.backend == "sqlite" and sqlite_file(args.to) is None:
        print("harbor db copy: --to names an in-memory database, gone when the copy ends;"
              " name a file (sqlite:///path/harbor.db) or a PostgreSQL database",
              file=sys.stderr)
        return EXIT_SETUP
    if _same_store(database_url(), args.to):
        print("harbor db copy: --to names the store being copied; name another database",
              file=sys.stderr)
        return EXIT_SETUP
    postgres = target_config.backend == "postgres"
    unreachable = why_unreachable(target_config.env) if postgres else None
    if unreachable is not None:
        print(f"harbor db copy: cannot use {target_config.display}: {unreachable}",
              file=sys.stderr)
        return EXIT_SETUP
    try:
        target = open_registry(args.to)
    except Exception as e:  # the target could not be opened: say which and why
        print(f"harbor db copy: cannot open {target_config.display}: {e}", file=sys.stderr)
        return EXIT_SETUP
    try:
        return _copy(source, target, args.batch, target_config.display, args.json)
    finally:
        target.close()


def _copy(source: Registry, target: Registry, batch: int, where: str, as_json: bool) -> int:
    console = Console(stderr=True)
    summary: dict[str, Any] = {"target": where}
    lines: list[str] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        tasks: dict[str, Any] = {}

        def step(what: str, done: int, total: int) -> None:
            if what not in tasks:
                label = "copying the log" if what == "events" else f"copying {what}"
                tasks[what] = bar.add_task(label, total=max(total, 1))
            bar.update(tasks[what], completed=done, total=max(total, 1))

        try:
            report = copy_store(source, target, batch=batch, progress=step)
        except CopyRefused as e:
            print(f"harbor db copy: {e}", file=sys.stderr)
            return EXIT_REFUSED
        except (PersistenceError, psycopg.Error, sqlite3.Error) as e:
            print(f"harbor db copy: the copy stopped: {e}. What it copied is kept and checked"
                  " when it goes on: fix this and run the same command again", file=sys.stderr)
            return EXIT_UNAVAILABLE
        summary.update(head=report.head, copied_events=report.events, already=report.already,
                       rows=report.rows, moved=report.moved)
        resumed = f" (it held the first {report.already} already)" if report.already else ""
        lines.append(f"copied {report.events} events up to log position {report.head} into"
                     f" {where}{resumed}")
        lines += [f"  {table}: {rows} rows" for table, rows in report.rows.items()]
        if report.moved:
            _say(summary, lines, as_json)
            print(
                "harbor db copy: the store was written to during the copy, so the target may"
                " lack what came last; stop Harbor and run the same copy again (it goes on"
                " from here)",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        rebuilding = bar.add_task("rebuilding projections", total=max(report.head, 1))
        rebuild(target, workers=default_workers(target),
                progress=lambda _events, position: bar.update(rebuilding, completed=position))
    summary["projections_rebuilt"] = True
    lines.append("projections rebuilt on the target")
    audit = AuditLog(target.recorder)
    if audit.store.latest_head() is None:
        summary["audit"] = None
        lines.append("no signed tree head to verify: nothing was sealed on the source yet")
        _say(summary, lines, as_json)
        return 0
    verdict = verify_log(audit)
    summary["audit"] = {"ok": verdict.ok, "leaves": verdict.leaves, "heads": verdict.heads}
    if not verdict.ok:
        _say(summary, lines, as_json)
        first = verdict.first
        assert first is not None
        print(f"harbor db copy: the target's audit log does not verify: {first.kind} at leaf"
              f" {first.position}: {first.message}", file=sys.stderr)
        return EXIT_REFUSED
    lines.append(f"audit log verified on the target: {verdict.leaves} leaves, {verdict.heads}"
                 " signed tree heads (run `harbor verify --keys DIR` there with the auditor's"
                 " keys too)")
    _say(summary, lines, as_json)
    return 0


def _say(summary: dict[str, Any], lines: list[str], as_json: bool) -> None:
    """What was done: the lines, or (--json) one JSON object for scripts."""
    print(json.dumps(summary, ensure_ascii=False) if as_json else "\n".join(lines))


def why_unreachable(env: dict[str, str]) -> str | None:
    """Why the PostgreSQL database named cannot be used, in a clerk's words (None: it can)."""
    try:
        psycopg.connect(
            dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None,
            connect_timeout=5,
        ).close()
    except psycopg.OperationalError as e:
        said = " ".join(line.strip() for line in str(e).splitlines()) or type(e).__name__
        if "does not exist" in said and "database" in said:
            name = env["POSTGRES_DBNAME"]
            return f"{said}; create it first (`createdb {name}`, or CREATE DATABASE {name})"
        return said
    return None


def _same_store(url: str, other: str) -> bool:
    """Whether two URLs name the same database."""
    mine, theirs = sqlite_file(url), sqlite_file(other)
    if mine is not None or theirs is not None:
        return mine is not None and theirs is not None and _resolved(mine) == _resolved(theirs)
    return parse_database_url(url).url.rstrip("/") == parse_database_url(other).url.rstrip("/")


def _resolved(path: Path) -> Path:
    return path.expanduser().resolve()
