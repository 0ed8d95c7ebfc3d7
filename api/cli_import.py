"""`harbor import FILE.jsonl`: paper records into the registry, through the rules."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from api.cli_args import add_command
from api.importer import ImportReport, count_lines
from api.parallel_import import MAX_JOBS, import_in_parallel, on_postgres
from domain.registry import Registry

COMMANDS = {"import"}


def add_commands(sub: Any) -> None:
    """Register `import`."""
    p = add_command(
        sub,
        "import",
        summary="load paper records (JSON lines, docs/import.md) through"
        " the rules; re-running adds nothing, an interrupted run resumes",
        description="Load historical records, one action per JSON line (docs/import.md),"
        " through the same rules as a clerk's commands. Running it again stores nothing"
        " twice, so an interrupted import resumes; exits 1 if any line was not stored.",
        example="harbor import docs/examples/article-cases.jsonl",
    )
    p.add_argument("file", type=Path, help="JSON lines file: one JSON object per action")
    p.add_argument(
        "--batch-events",
        type=int,
        default=2000,
        help="events per transaction (keeps each under ~100 ms of table lock)"
        " (default %(default)s)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes that import at once, each its share of the members (PostgreSQL;"
        " worth it for large files: each costs about half a second to start) (default 1)",
    )


def run(registry: Registry, args: argparse.Namespace) -> int:
    """Import the file and print what happened."""
    if not args.file.is_file():
        what = "not a file" if args.file.exists() else "no such file"
        print(f"harbor: {what}: {args.file}", file=sys.stderr)
        return 2
    if not 1 <= args.jobs <= MAX_JOBS or args.batch_events < 1:
        print(
            f"harbor import: --jobs must be 1 to {MAX_JOBS} and --batch-events at least 1",
            file=sys.stderr,
        )
        return 2
    if args.jobs > 1 and not on_postgres(registry):
        print("harbor import: --jobs needs PostgreSQL; importing in one process", file=sys.stderr)
    total = count_lines(args.file)
    console = Console(stderr=True)
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} lines/s"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("import", total=max(total, 1), rate="-")

        shown = 0

        def advance(done: int) -> None:
            nonlocal shown
            if done - shown >= 100 or done == total:
                shown = done
                speed = bar.tasks[task].speed
                bar.update(task, completed=done, rate=f"{speed:,.0f}" if speed else "-")

        report = import_in_parallel(
            registry, args.file, jobs=args.jobs, batch_events=args.batch_events, progress=advance
        )
        bar.update(task, completed=report.lines)  # the last lines, fewer than a step
    if args.json:
        print(json.dumps(_report_json(report), ensure_ascii=False))
        return 0 if report.ok else 1
    print(
        f"{report.lines} lines: {report.stored} stored now, {report.already} already stored"
        f" by an earlier run, {len(report.problems)} not stored"
        f" ({len(report.members)} members, {report.units} units)"
    )
    if args.jobs > 1 and report.processes == 1 and on_postgres(registry):
        print("  (one process: a unit line comes after member lines; put unit lines first)")
    for problem in report.problems:
        print(f"  {problem}")
    return 0 if report.ok else 1


def _report_json(report: ImportReport) -> dict[str, Any]:
    return {
        "lines": report.lines,
        "stored": report.stored,
        "already_stored": report.already,
        "not_stored": len(report.problems),
        "members": len(report.members),
        "units": report.units,
        "processes": report.processes,
        "problems": [
            {"line": p.line, "code": p.code, "field": p.field, "message": p.message}
            for p in report.problems
        ],
    }
