"""`harbor` subcommands that read the projections, follow the log and rebuild it."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from api.cli_args import add_command, iso_date, member_ref, whole_number
from api.spreadsheet import FINDING_COLUMNS, ROSTER_COLUMNS, csv_text
from domain.errors import NotFound
from domain.registry import Registry
from projections.history import member_history
from projections.history import member_status as status_as_it_stood
from projections.history import roster as roster_as_it_stood
from projections.judgements import DUE_WITHIN_DAYS, DUE_WITHIN_MAX
from projections.queries import ROSTER_LIMIT, ROSTER_PAGE, ReadModels
from projections.runner import DEFAULT_BATCH, REBUILD_BATCH, Projector, default_workers, rebuild
from store.lease import lease_for

COMMANDS = {
    "status", "history", "queue", "roster", "scorecard", "findings", "rebuild", "project", "case",
}
RULES = ["R1", "R2", "R3", "R5", "R6", "R7", "R8"]


def add_commands(sub: Any) -> None:
    """Register the read-side subcommands."""

    def on(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--on",
            type=iso_date,
            help="judge time-dependent rules on this date (default: today, Asia/Shanghai)",
        )

    status = add_command(
        sub,
        "status",
        summary="who holds a member now: holder, status, colour",
        description="Show one member as the projections have it: holding unit and since when,"
        " standing, status, letter in transit, open case and ledger colour, judged on a date.",
        example="harbor status 310109195001010022 --on 2011-09-19 --json",
    )
    status.add_argument("member", help="member id, or the member's ID number")
    on(status)

    history = sub.add_parser(
        "history", help="a member's whole trail, as it happened or as it was recorded on any date"
    )
    history.add_argument("member", help="member id, or the member's ID number")
    when = history.add_mutually_exclusive_group()
    when.add_argument("--as-of", type=iso_date, help="what had happened by this date")
    when.add_argument("--as-recorded", type=iso_date, help="what the registry knew on this date")
    when.add_argument(
        "--position",
        type=whole_number("--position", 0),
        help="what the registry knew at this log position",
    )

    case = sub.add_parser("case", help="one case: first responder, path, outcome, trail")
    case.add_argument("case_id", help="the case id (from inquiry, status or history)")
    on(case)

    queue = sub.add_parser(
        "queue", help="a unit's queues: 待办, 未办结, cases it answered first, 预警 (due soon)"
    )
    queue.add_argument("unit", help="the unit's code")
    queue.add_argument(
        "--within",
        type=whole_number("--within", 0, DUE_WITHIN_MAX),
        default=DUE_WITHIN_DAYS,
        metavar="DAYS",
        help="预警: the breaches against the unit that begin within this many days unless"
        f" someone acts, 0 to {DUE_WITHIN_MAX} (0: none; default %(default)s)",
    )
    on(queue)

    roster = add_command(
        sub,
        "roster",
        summary="在册: who is attached here, and who is on the way",
        description="List the members a unit holds, and those with a letter on the way to it"
        " (held / arriving), and the members of a dissolved unit it stands in for (orphaned),"
        " by name, with standing, status, open case and ledger colour"
        " judged on a date. Long rosters come in pages (--limit, --offset).",
        example="harbor roster daning-center --limit 50 --offset 50",
    )
    roster.add_argument("unit", help="the unit's code")
    roster.add_argument(
        "--limit",
        type=whole_number("--limit", 1, ROSTER_LIMIT),
        default=None,
        help=f"members per page, 1 to {ROSTER_LIMIT} (default {ROSTER_PAGE}; with --csv, all"
        " of them)",
    )
    roster.add_argument(
        "--offset",
        type=whole_number("--offset", 0),
        default=0,
        help="members to skip: the page's start (default 0)",
    )
    roster.add_argument(
        "--after", metavar="CURSOR", default=None,
        help="the page after this cursor (printed under each page): pages that do not"
        " shift when members join or leave meanwhile; not with --offset",
    )
    roster.add_argument("--csv", action="store_true", help="print CSV")
    on(roster)

    score = sub.add_parser("scorecard", help="answered first, seen through (句号), dropped (逗号)")
    score.add_argument("unit", nargs="?", help="one unit (default: all)")
    on(score)

    findings = sub.add_parser("findings", help="compliance findings, judged on a date")
    findings.add_argument("--rule", choices=RULES, help="only findings under this rule")
    findings.add_argument("--unit", help="only findings against this unit")
    findings.add_argument(
        "--severity",
        choices=["override", "breach"],
        help="override: R1-R3 set aside with a stated reason; breach: a rule broken",
    )
    settled = findings.add_mutually_exclusive_group()
    settled.add_argument("--open", action="store_true", help="only unresolved findings")
    settled.add_argument("--resolved", action="store_true", help="only resolved findings")
    findings.add_argument("--csv", action="store_true", help="print CSV")
    on(findings)

    rebuilding = add_command(
        sub,
        "rebuild",
        summary="rebuild every projection from position zero"
        " beside the live tables, then swap them in",
        description="Fold the whole log into fresh projection tables beside the live ones,"
        " then swap them in; readers see the old tables until the swap. A failed rebuild"
        " leaves the live projections as they were.",
        example="harbor rebuild --workers 4",
    )
    rebuilding.add_argument(
        "--batch",
        type=whole_number("--batch", 1),
        default=REBUILD_BATCH,
        help="events per transaction (default %(default)s)",
    )
    rebuilding.add_argument(
        "--workers",
        type=whole_number("--workers", 1, 64),
        default=None,
        help="processes folding shares of the members in parallel (default: 2 on PostgreSQL,"
        " where the server takes the writes of both; 1 on SQLite, which has one writer)",
    )

    project = add_command(
        sub,
        "project",
        summary="follow the log and keep projections current until stopped (Ctrl-C)",
        description="Fold new events into the projections as they are recorded, until Ctrl-C"
        " or SIGTERM; for when no `harbor serve` does it (--follower none). On PostgreSQL,"
        " while another follower holds the projection lease, it stands by to take over.",
        example="harbor project --poll 1",
    )
    project.add_argument(
        "--batch",
        type=whole_number("--batch", 1),
        default=DEFAULT_BATCH,
        help="events per transaction (default %(default)s)",
    )
    project.add_argument(
        "--poll", type=float, default=0.2, help="seconds between polls (default %(default)s s)"
    )


def _print(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def run(registry: Registry, args: argparse.Namespace) -> int:
    """Run one read-side subcommand."""
    command = args.command
    if command == "rebuild":
        return _rebuild(registry, args.batch, args.workers, args.json)
    if command == "project":
        return _project(registry, args.batch, args.poll)
    if command == "roster" and args.after is not None and args.offset:
        print(
            "harbor roster: --after and --offset cannot be used together: a page starts either"
            " after a cursor or at an offset",
            file=sys.stderr,
        )
        return 2
    Projector(registry).catch_up()  # reading from the command line: show everything recorded
    models = ReadModels(registry)
    if command == "status":
        member = member_ref(registry, args.member)
        _show(status_as_it_stood(registry, models, member, args.on), args.json)
    elif command == "history":
        data = member_history(
            registry,
            member_ref(registry, args.member),
            as_of=args.as_of,
            as_recorded=args.as_recorded,
            position=args.position,
        )
        if args.json:
            _print(data)
        else:
            print(render_history(data, _unit_names(models)))
    elif command == "case":
        data = models.case(args.case_id, args.on)
        if args.json:
            _print(data)
        else:
            print(render_case(data, _unit_names(models)))
    elif command == "queue":
        registry.unit(args.unit)  # an unknown code is refused (UNKNOWN_UNIT), not an empty queue
        _show_queue(
            models.unit_queue(args.unit, args.on, names=True, within=args.within), args.json
        )
    elif command == "roster":
        registry.unit(args.unit)  # an unknown code is refused (UNKNOWN_UNIT), not an empty list
        # CSV is for a spreadsheet: the whole roster unless a page was asked for.
        whole = args.csv and args.limit is None
        limit = None if whole else args.limit or ROSTER_PAGE
        data = roster_as_it_stood(
            registry, models, args.unit, args.on, limit=limit, offset=args.offset, after=args.after
        )
        if args.csv:
            _csv(data["members"], ROSTER_COLUMNS)
        elif args.json:
            _print(data)
        else:
            print(render_roster(data))
    elif command == "scorecard":
        if args.unit is not None:
            registry.unit(args.unit)
        cards = [c.as_dict() for c in models.scorecards(args.unit, args.on)]
        if args.json:
            _print(cards)
        else:
            print(render_scorecards(cards, _unit_names(models)))
    elif command == "findings":
        if args.unit is not None:
            registry.unit(args.unit)
        judged = models.findings(
            on=args.on,
            rule=args.rule,
            unit_id=args.unit,
            severity=args.severity,
            open_only=args.open,
            resolved_only=args.resolved,
        )
        names = models.member_names({f.member_id for f in judged})  # as GET /compliance/findings
        found = [{**f.as_dict(), "member_name": names.get(f.member_id)} for f in judged]
        if args.csv:
            _csv(found, FINDING_COLUMNS)
        elif args.json:
            _print(found)
        else:
            for f in found:
                resolved = (
                    f"resolved {f['resolved']}"
                    if f["resolved"]
                    else "on record"
                    if f["severity"] == "override"
                    else "open"
                )
                print(
                    f"{f['rule']:3} {f['severity']:8} {f['unit_id']:22} since {f['since']}"
                    f"  {resolved:20} member {f['member_id'][:8]}  {f['detail']}"
                )
            print(f"{len(found)} finding(s)")
    return 0


def _show(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print(data)
        return
    for key, value in data.items():
        if value is not None:
            print(f"{key.replace('_', ' '):20} {_human(value)}")


def _human(value: Any) -> Any:
    """A value as people read it: yes and no, not Python's True and False."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _show_queue(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print(data)
        return
    print(f"queue of {data['unit_id']} on {data['on']}")
    for title, key in (
        ("待办 (waiting for us)", "todo"),
        ("未办结 (waiting for the other side)", "waiting_on_others"),
        ("cases we answered first", "first_responder_cases"),
        (f"预警 (breaches due within {data['due_within_days']} days)", "due_soon"),
    ):
        print(f"  {title}: {len(data[key])}")
        for item in data[key]:
            print("    " + ", ".join(f"{k} {_human(v)}" for k, v in item.items() if v is not None))


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    # As the HTTP API answers Accept: text/csv: fixed columns, formula-safe cells, the BOM.
    sys.stdout.write(csv_text(rows, columns))


def _unit_names(models: ReadModels) -> Callable[[str], str]:
    names = {u["code"]: u["name"] for u in models.units()}
    return lambda code: names.get(code, code)


def render_roster(data: dict[str, Any]) -> str:
    """A unit's members as a table, and where this page sits among them all."""
    rows = [["name", "member", "relation", "standing", "status", "since", "colour", "open case"]]
    for m in data["members"]:
        rows.append([
            # Whole ids: what `harbor status` and `harbor case` take (a prefix they do not).
            m["name"], m["member_id"], m["relation"], m["standing"], m["status"],
            m["since"] or "", m["colour"], m["open_case_id"] or "",
        ])  # fmt: skip
    shown, start = len(data["members"]), data["offset"]
    tail = f"{data['unit_id']} on {data['on']}: "
    if data["after"] is not None:
        tail += f"{shown} members after the cursor, of {data['total']}"
    elif shown:
        tail += f"members {start + 1}–{start + shown} of {data['total']}"
    else:
        tail += f"no members from {start + 1} on; {data['total']} in all"
    if data["next_after"] is not None:
        offset = f"--offset {start + shown}, or " if data["after"] is None else ""
        # The cursor's pages do not shift when members join or leave between two reads.
        tail += f" (next page: {offset}--after {data['next_after']})"
    return (_table(rows) + "\n" if shown else "") + tail


def render_scorecards(cards: list[dict[str, Any]], name: Callable[[str], str]) -> str:
    """Scorecards as a table, units that answered first at least once."""
    rows = [["unit", "first", "句号 seen through", "逗号 dropped", "open", "median days"]]
    for c in cards:
        if not c["answered_first"]:
            continue
        median = c["median_days_to_attachment"]
        rows.append([
            f"{name(c['unit_id'])} ({c['unit_id']})",
            str(c["answered_first"]),
            str(c["seen_through"]),
            str(c["dropped"]),
            str(c["open"]),
            "" if median is None else f"{median:g}",
        ])  # fmt: skip
    return _table(rows)


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _table(rows: list[list[str]]) -> str:
    """Rows in columns that line up on screen: text left, numbers right."""
    widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]))]

    def cell(text: str, i: int, header: bool) -> str:
        gap = " " * (widths[i] - _width(text))
        return text + gap if i == 0 or header else gap + text

    return "\n".join(
        "  ".join(cell(text, i, n == 0) for i, text in enumerate(row)).rstrip()
        for n, row in enumerate(rows)
    )


def render_case(data: dict[str, Any], name: Callable[[str], str]) -> str:
    """One case, for people."""
    lines = [
        f"case {data['case_id']} (member {data['member_id']}), judged on {data['on']}",
        f"  answered first by {name(data['first_responder'])} ({data['first_responder']}):"
        f" {data['outcome']}" + (" — stalled" if data["stalled"] else ""),
        "  path: " + " → ".join(data["path"]),
    ]
    for r in data["referrals"]:
        lines.append(
            f"  referral {r['from']} → {r['to']} ({r['handover']}, {r['referred_on']}):"
            f" {r['state']}"
        )
    for t in data["trail"]:
        mark = " [voided]" if t["voided"] else ""
        lines.append(f"    {t['occurred_on']}  {name(t['unit_id'])}  {t['summary']}{mark}")
    return "\n".join(lines)


def render_history(data: dict[str, Any], name: Callable[[str], str]) -> str:
    """A member's history, for people."""
    if not data["known"]:
        return f"member {data['member_id']}: nothing recorded by then"
    when = (
        f"as of {data['as_of']}"
        if data["as_of"]
        else f"as recorded on {data['as_recorded']}"
        if data["as_recorded"]
        else f"as recorded at position {data['position']}"
        if data["position"]
        else f"now ({data['on']})"
    )
    lines = [
        f"{data['name']}  member {data['member_id']}  {when}",
        f"  holder: {name(data['holder_unit_id'])} ({data['holder_unit_id']}) since"
        f" {data['since']}"
        + (f", in transit to {data['in_transit_to']}" if data["in_transit_to"] else ""),
    ]
    outside = [t for t in data["trail"] if t["case_id"] is None]
    for t in outside:
        lines.append(
            f"  {t['occurred_on']}  {name(t['unit_id'])}  {t['summary']}"
            + (" [voided]" if t["voided"] else "")
        )
    for case in data["cases"]:
        lines.append(render_case(case, name))
    for f in data["findings"]:
        resolved = f"resolved {f['resolved']}" if f["resolved"] else "open"
        lines.append(
            f"  finding {f['rule']} ({f['severity']}) against {f['unit_id']} since"
            f" {f['since']}, {resolved}: {f['detail']}"
        )
    return "\n".join(lines)


def _rebuild(registry: Registry, batch: int, workers: int | None, as_json: bool = False) -> int:
    total = registry.position()
    if workers is None:
        workers = default_workers(registry)
    if batch < 1 or workers < 1:
        print("harbor rebuild: --batch and --workers must be at least 1", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    with Progress(
        TextColumn("rebuilding projections"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("rebuild", total=max(total, 1), rate="-")

        def advance(events: int, position: int) -> None:
            bar.update(task, completed=min(position, total))
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

        try:
            generation = rebuild(registry, batch_size=batch, workers=workers, progress=advance)
        except RuntimeError as e:  # a worker failed (its error is above), or a rebuild ran
            print(f"harbor rebuild: {e}. The live projections are unchanged.", file=sys.stderr)
            return 1
    reached = Projector(registry, generation=generation).position()  # folded up to the swap
    if as_json:
        print(json.dumps({"generation": generation, "position": reached}))
    else:
        print(f"rebuilt up to log position {reached} into generation {generation}; it is live now")
    return 0


def _project(registry: Registry, batch: int, poll: float) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    projector = Projector(registry, batch_size=batch)
    lease = lease_for(registry)
    if lease is not None and not lease.hold():
        print(
            "another process (a harbor serve, or another harbor project) keeps the"
            " projections current on this database; standing by to take over when it stops",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"following the log from position {projector.position()} (Ctrl-C to stop)",
        file=sys.stderr,
        flush=True,
    )
    # Under the lease only one follower folds: this one, or the one holding it now.
    projector.follow(stop, poll_seconds=poll, lease=lease)
    print(f"stopped at position {projector.position()}", file=sys.stderr)
    return 0


def scorecard_text(registry: Registry) -> str:
    """The scorecards as the demo prints them."""
    Projector(registry).catch_up()
    models = ReadModels(registry)
    try:
        cards = [c.as_dict() for c in models.scorecards()]
    except NotFound:
        cards = []
    return render_scorecards(cards, _unit_names(models))
