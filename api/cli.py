"""The `harbor` command line: parse, call the application service, print. No rules here."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from api.bodies import BODIES, checked
from api.cli_args import HarborParser, add_command, iso_date, member_ref
from api.demo import load_article_cases
from api.trail import render_trail
from domain.errors import HarborError, NotFound, Unavailable
from domain.identity import MIN_KEY_BYTES
from domain.receipts import Outcome
from domain.registry import DEV_ID_KEY, Actor, Registry
from domain.values import (
    Basis,
    Channel,
    ContactOutcome,
    DeclineReason,
    EvidenceKind,
    Handover,
    Standing,
    UnitKind,
)
from store import open_registry
from store.config import database_url, parse_database_url, sqlite_file

EXIT_REFUSED = 1
EXIT_SETUP = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a command whose reader left

# Commands that only read an existing store (or, like seal, add to its audit log): on a
# SQLite file that does not exist they say so instead of creating an empty store there.
# A command name, or (command, subcommand).
READS_EXISTING_STORE: set[str | tuple[str, str]] = {
    "status",
    "history",
    "case",
    "queue",
    "roster",
    "scorecard",
    "findings",
    "lookup",
    "verify",
    "bundle",
    "proof",
    "seal",
    ("units", "list"),
    ("keys", "export"),
    ("db", "copy"),
    ("db", "status"),
    ("tokens", "list"),
}

# Areas that add their own subcommands: each module has add_commands(subparsers),
# COMMANDS (the names it handles) and run(registry, args) -> exit code.
EXTENSIONS: list[str] = ["api.cli_projections", "api.cli_http", "api.cli_audit", "api.cli_import"]


def _extensions() -> list[Any]:
    import importlib

    return [importlib.import_module(name) for name in EXTENSIONS]


def _choices(enum_type: Any) -> list[str]:
    return [m.value for m in enum_type]


@dataclass(frozen=True)
class Opt:
    """One option of a member command: its flag, the keyword it fills, and argparse settings."""

    flag: str
    dest: str
    help: str
    required: bool = False
    type: Callable[[str], Any] = str
    choices: list[str] | None = None
    many: bool = False
    one_of: str = ""  # options sharing this name: exactly one of them is given


@dataclass(frozen=True)
class MemberCommand:
    """A subcommand that calls one Registry method on one member."""

    name: str
    method: str
    help: str
    opts: list[Opt] = field(default_factory=list)
    in_case: bool = True


CASE_NOTE = Opt("--note", "note", "free text")
MEMBER_COMMANDS: list[MemberCommand] = [
    MemberCommand(
        "inquiry",
        "receive_inquiry",
        "the member came forward: opens a case or joins the open one",
        [
            Opt("--channel", "channel", "how the member came", True, choices=_choices(Channel)),
            Opt("--summary", "summary", "what the member asked", True),
            Opt(
                "--prior",
                "prior_contacts",
                "someone asked before: WHO=ANSWER (repeatable)",
                many=True,
            ),
        ],
        in_case=False,
    ),
    MemberCommand(
        "requirements",
        "notify_requirements",
        "一次性告知: every document needed, at once",
        [Opt("--document", "documents", "a document (repeatable)", True, many=True)],
    ),
    MemberCommand(
        "evidence",
        "record_evidence",
        "record a document the member showed",
        [
            Opt("--kind", "kind", "document kind", True, choices=_choices(EvidenceKind)),
            Opt("--reference", "reference", "its number or description", True),
            Opt("--valid-until", "valid_until", "last day it is valid", type=iso_date),
        ],
    ),
    MemberCommand(
        "archive-review",
        "review_archive",
        "record what the personal file (档案) showed",
        [Opt("--finding", "finding", "what was found", True)],
    ),
    MemberCommand(
        "origin-contact",
        "contact_origin",
        "record an attempt to reach the original unit",
        [
            Opt("--outcome", "outcome", "result", True, choices=_choices(ContactOutcome)),
            Opt("--contacted-unit", "contacted_unit_id", "a registered unit", one_of="whom"),
            Opt(
                "--contacted-name",
                "contacted_name",
                "an organisation outside the registry",
                one_of="whom",
            ),
        ],
    ),
    MemberCommand(
        "consult",
        "consult_unit",
        "record coordination with another unit",
        [
            Opt("--with", "consulted_unit_id", "the unit consulted", True),
            Opt("--note", "note", "what was discussed", True),
        ],
    ),
    MemberCommand(
        "introduce",
        "issue_introduction",
        "issue an introduction letter (not a transfer)",
        [
            Opt("--purpose", "purpose", "why the member goes there", True),
            Opt("--to-unit", "to_unit_id", "a registered unit", one_of="where"),
            Opt("--to-name", "to_name", "somewhere outside the registry", one_of="where"),
        ],
    ),
    MemberCommand(
        "hold",
        "hold_transfer",
        "record that the transfer waits under a rule",
        [
            Opt("--rule", "rule", "the rule, e.g. R3", True),
            Opt("--note", "note", "why", True),
            Opt("--until", "until", "until when", type=iso_date),
        ],
    ),
    MemberCommand(
        "report",
        "send_performance_report",
        "record the performance report (考察材料) sent",
        [
            Opt("--to", "to_unit_id", "the receiving unit", True),
            Opt("--covering-from", "covering_from", "first day covered", True, type=iso_date),
            Opt("--covering-to", "covering_to", "last day covered", True, type=iso_date),
        ],
    ),
    MemberCommand(
        "letter",
        "issue_letter",
        "issue the transfer letter (组织关系介绍信)",
        [
            Opt("--no", "letter_no", "letter number (unique per unit and year)", True),
            Opt("--to", "to_unit_id", "the receiving unit", True),
            Opt("--dues-paid-through", "dues_paid_through", "YYYY-MM", True),
            Opt("--valid-until", "valid_until", "default: 90 days after the letter", type=iso_date),
            Opt("--special", "special_circumstances", "special circumstances (R3 override)"),
        ],
    ),
    MemberCommand(
        "letter-decline",
        "decline_letter",
        "拒接: refuse a letter addressed here",
        [
            Opt("--no", "letter_no", "letter number", True),
            Opt("--reason", "reason_code", "why", True, choices=_choices(DeclineReason)),
            Opt("--note", "note", "the stated cause (required for reason other)"),
        ],
    ),
    MemberCommand(
        "letter-void",
        "void_letter",
        "withdraw a letter this unit issued",
        [
            Opt("--no", "letter_no", "letter number", True),
            Opt("--reason", "reason", "lost, re-issued, ...", True),
        ],
    ),
    MemberCommand(
        "letter-expire",
        "expire_letter",
        "record an expired letter that came back",
        [Opt("--no", "letter_no", "letter number", True)],
    ),
    MemberCommand(
        "receipt",
        "return_receipt",
        "record the receipt (回执) of a used letter",
        [Opt("--no", "letter_no", "letter number", True)],
    ),
    MemberCommand(
        "refer",
        "refer_case",
        "send the member on to another unit",
        [
            Opt("--to", "to_unit_id", "the unit referred to", True),
            Opt(
                "--handover",
                "handover",
                "warm: accompanied; cold: told to go",
                True,
                choices=_choices(Handover),
            ),
            Opt("--reason", "reason", "why", True),
        ],
    ),
    MemberCommand("referral-accept", "accept_referral", "take a referred case on"),
    MemberCommand(
        "referral-decline",
        "decline_referral",
        "refuse a referral, with a cause",
        [
            Opt("--reason", "reason_code", "why", True, choices=_choices(DeclineReason)),
            Opt("--note", "note", "the stated cause (required for reason other)"),
        ],
    ),
    MemberCommand(
        "attach",
        "attach_member",
        "take the member in: this unit becomes the holder",
        [
            Opt(
                "--basis",
                "basis",
                "workplace, residence, household or other",
                True,
                choices=_choices(Basis),
            ),
            Opt("--letter", "letter_no", "the letter addressed here"),
            Opt("--override-reason", "override_reason", "why, where R1 or R2 needs an override"),
        ],
    ),
    MemberCommand(
        "withdraw",
        "withdraw_case",
        "close the case without an attachment",
        [Opt("--reason", "reason", "why", True)],
    ),
    MemberCommand(
        "dues",
        "receive_dues",
        "record party dues (党费) received",
        [
            Opt("--from", "months_from", "first month, YYYY-MM", True),
            Opt("--to", "months_to", "last month, YYYY-MM", True),
            Opt("--amount", "amount", "amount in yuan", True),
        ],
        in_case=False,
    ),
    MemberCommand(
        "activity",
        "attend_activity",
        "record an activity the member attended here",
        [Opt("--kind", "kind", "e.g. 组织生活会", True)],
        in_case=False,
    ),
    MemberCommand(
        "contact",
        "make_contact",
        "record that this unit reached the member",
        [
            Opt("--channel", "channel", "how", True, choices=_choices(Channel)),
            Opt("--note", "note", "what was said", True),
        ],
        in_case=False,
    ),
    MemberCommand(
        "confirm", "confirm_membership", "转正: the probationary member becomes full", in_case=False
    ),
    MemberCommand(
        "extend-probation",
        "extend_probation",
        "extend probation by whole months",
        [Opt("--months", "months", "1 to 12", True, type=int)],
        in_case=False,
    ),
    MemberCommand(
        "void",
        "void_entry",
        "void an entry by its log position (it stays, marked)",
        [
            Opt("--position", "position", "log position of the entry", True, type=int),
            Opt("--reason", "reason", "why it is wrong", True),
        ],
        in_case=False,
    ),
]


def _who(args: argparse.Namespace) -> str:
    return args.as_name or os.environ.get("USER") or getpass.getuser()


def _add_actor_options(
    p: argparse.ArgumentParser, *, unit_required: bool = True, unit_default: str = ""
) -> None:
    default = f" (default: {unit_default})" if unit_default else ""
    p.add_argument("--unit", required=unit_required, help=f"the acting unit's code{default}")
    p.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="who records it (default: your operating-system user)",
    )
    p.add_argument("--idempotency-key", help="repeat-safe key: the same key never records twice")


# What a clerk might write for each required option in a help page's example.
_SAMPLES = {
    "summary": "申请转入组织关系", "documents": "户口簿", "reference": "沪租-2026-0412",
    "finding": "档案齐全", "consulted_unit_id": "hongkou-center", "note": "电话回访",
    "purpose": "查阅个人档案", "rule": "R3", "to_unit_id": "hongkou-center",
    "covering_from": "2026-01-01", "covering_to": "2026-06-30", "letter_no": "2026-017",
    "dues_paid_through": "2026-10", "reason": "本人要求", "months_from": "2026-01",
    "months_to": "2026-06", "amount": "60.00", "kind": "组织生活会", "months": "6",
    "position": "57", "contacted_unit_id": "factory-superior",
}  # fmt: skip


def _example(cmd: MemberCommand) -> str:
    """A help page's example: the command with its required options filled in."""
    words = ["harbor", cmd.name, "310104198503150031", "--unit", "daning-center"]
    groups: set[str] = set()
    for o in cmd.opts:
        first_of_group = o.one_of and o.one_of not in groups
        if o.required or first_of_group:
            groups.add(o.one_of)
            value = o.choices[0] if o.choices else _SAMPLES.get(o.dest, "…")
            words += [o.flag, shlex.quote(value)]
    return " ".join(words)


def _add_member_options(p: argparse.ArgumentParser, cmd: MemberCommand) -> None:
    p.add_argument("member", help="member id, or the member's ID number")
    _add_actor_options(p)
    p.add_argument("--on", type=iso_date, help="business date YYYY-MM-DD (default: today)")
    p.add_argument(
        "--expected-version",
        type=int,
        help="refuse with STALE_VERSION unless the member is at this version",
    )
    if cmd.in_case:
        p.add_argument("--case", dest="case_id", help="case id (default: the open case)")
    groups: dict[str, Any] = {}
    for o in cmd.opts:
        kwargs: dict[str, Any] = {"dest": o.dest, "help": o.help}
        if o.many:
            kwargs["action"] = "append"
        else:
            kwargs["type"] = o.type
        if o.choices:
            kwargs["choices"] = o.choices
        if o.one_of:
            if o.one_of not in groups:
                groups[o.one_of] = p.add_mutually_exclusive_group(required=True)
            groups[o.one_of].add_argument(o.flag, **kwargs)
        else:
            p.add_argument(o.flag, required=o.required, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = HarborParser(
        prog="harbor",
        description="Harbor — an event-sourced registry of party members' organisational"
        " relationships (党员组织关系). The store is HARBOR_DATABASE_URL"
        " (default sqlite:///./harbor.db).",
    )
    parser.set_defaults(json=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="the database").add_subparsers(dest="db_command", required=True)
    db.add_parser("init", help="create the schema (safe to run again, or from two places at once)")
    from api.cli_db_copy import add_copy_command
    from api.cli_db_status import add_status_command

    add_copy_command(db)
    add_status_command(db)

    units = sub.add_parser("units", help="register and list units").add_subparsers(
        dest="units_command", required=True
    )
    add = add_command(
        units,
        "add",
        summary="register a unit",
        description="Register a unit (a workplace, school, service centre, organisation"
        " department...) under the stable code that commands and tokens name it by."
        " DUPLICATE_UNIT if the code is taken.",
        example="harbor units add daning-center --name 闸北区大宁社区党员服务中心 \\\n"
        "    --kind service_center --region 上海·闸北 --parent sh-org-dept --unit sh-org-dept",
    )
    add.add_argument("code", help="stable code, e.g. daning-center (ASCII letters, digits, - _ .)")
    add.add_argument("--name", required=True, help="the unit's full name")
    add.add_argument("--kind", required=True, choices=_choices(UnitKind), help="kind of unit")
    add.add_argument("--region", required=True, help="e.g. 上海·闸北")
    add.add_argument("--parent", help="parent unit code (a registered unit)")
    add.add_argument(
        "--on", type=iso_date, help="date registered, YYYY-MM-DD (default: today, Asia/Shanghai)"
    )
    _add_actor_options(add, unit_required=False, unit_default="the new unit itself")
    units.add_parser("list", help="list every unit")
    rename = units.add_parser("rename", help="record a unit's new name")
    rename.add_argument("code", help="the unit's code")
    rename.add_argument("--name", required=True, help="the new name")
    rename.add_argument("--on", type=iso_date, help="date renamed (default: today)")
    _add_actor_options(rename)
    dissolve = units.add_parser("dissolve", help="record that a unit no longer exists")
    dissolve.add_argument("code", help="the unit's code")
    dissolve.add_argument("--successor", help="the unit that takes over")
    dissolve.add_argument("--on", type=iso_date, help="date dissolved (default: today)")
    _add_actor_options(dissolve)

    enrol = add_command(
        sub,
        "enrol",
        summary="enrol a member (DUPLICATE_MEMBER if already known)",
        description="Enrol a party member; prints the member id, derived from the ID number"
        " (which itself is not stored). The acting unit holds the member unless --holder"
        " names another.",
        example="harbor enrol --unit daning-center --name 张三 --id-number 310104198503150031 \\\n"
        "    --standing full --household-region 上海·虹口 --on 2001-01-01",
    )
    enrol.add_argument("--name", required=True, help="the member's name")
    enrol.add_argument("--id-number", required=True, help="resident ID number (never stored)")
    enrol.add_argument(
        "--standing", required=True, choices=_choices(Standing), help="full or probationary"
    )
    enrol.add_argument(
        "--household-region", required=True, help="region of the household registration (户籍)"
    )
    enrol.add_argument(
        "--probation-started", type=iso_date, help="for probationary members, YYYY-MM-DD"
    )
    enrol.add_argument("--developing-unit", help="the unit that developed the member")
    enrol.add_argument("--holder", help="holding unit (default: the acting unit)")
    enrol.add_argument(
        "--on", type=iso_date, help="date enrolled, YYYY-MM-DD (default: today, Asia/Shanghai)"
    )
    _add_actor_options(enrol)

    lookup = sub.add_parser("lookup", help="the member id for an ID number")
    lookup.add_argument("id_number", help="resident ID number of an enrolled member")

    for cmd in MEMBER_COMMANDS:
        _add_member_options(
            add_command(
                sub, cmd.name, summary=cmd.help, description=cmd.help, example=_example(cmd)
            ),
            cmd,
        )

    demo = sub.add_parser("demo", help="load the article's two cases and print their trails")
    demo.add_argument("--as", dest="as_name", metavar="NAME", help="who records the demo")
    for extension in _extensions():
        extension.add_commands(sub)
    _add_examples(parser)
    return parser


# Examples for the help pages of commands declared without one (each is checked to parse).
EXAMPLES = {
    "db init": "HARBOR_DATABASE_URL=postgresql://harbor@db/harbor harbor db init",
    "units list": "harbor --json units list",
    "units rename": "harbor units rename daning-center --name 大宁路街道党员服务中心"
    " --unit sh-org-dept",
    "units dissolve": "harbor units dissolve zb-factory --successor factory-superior"
    " --unit sh-org-dept   # revokes zb-factory's tokens",
    "lookup": "harbor lookup 310109195001010022   # the demo's old comrade",
    "demo": "HARBOR_DATABASE_URL=sqlite:///demo.db harbor demo",
    "history": "harbor history 310109195001010022 --as-of 2006-05-30   # the demo's old comrade",
    "case": "harbor case 5c1d0b6e-2f1a-4c3e-9b7a-0d6f1e2a3b4c --on 2011-09-19",
    "queue": "harbor queue daning-center --within 30",
    "scorecard": "harbor scorecard --on 2026-06-30",
    "findings": "harbor findings --unit daning-center --open --csv > findings.csv",
    "keys init": "HARBOR_SIGNING_KEY=/etc/harbor/signing.pem harbor keys init",
    "keys rotate": "harbor keys rotate && harbor keys export /srv/audit/keys",
    "keys export": "harbor keys export /srv/audit/keys",
    "seal": "harbor seal",
    "bundle": "harbor bundle 310109195001010022 -o old-comrade.json",
}


def _add_examples(parser: argparse.ArgumentParser) -> None:
    """Give the help pages of ``EXAMPLES`` their example, as ``add_command`` does."""
    for path, example in EXAMPLES.items():
        found = parser
        for word in path.split():
            (subs,) = [a for a in found._actions if isinstance(a, argparse._SubParsersAction)]
            found = subs.choices[word]
        found.epilog = "example:\n" + textwrap.indent(example, "  ")
        found.formatter_class = argparse.RawDescriptionHelpFormatter


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    data = {k: (str(v) if isinstance(v, UUID) else v) for k, v in outcome.__dict__.items()}
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    parts = [
        f"{k.replace('_', ' ')} {v}"
        for k, v in data.items()
        if v not in (None, False) and k != "replayed"
    ]
    prefix = "already recorded (same idempotency key): " if outcome.replayed else "recorded: "
    print(prefix + ", ".join(parts))


def _run_member_command(registry: Registry, args: argparse.Namespace, cmd: MemberCommand) -> None:
    kwargs: dict[str, Any] = {o.dest: getattr(args, o.dest) for o in cmd.opts}
    if cmd.method == "receive_inquiry":
        kwargs["prior_contacts"] = [_prior(p) for p in (kwargs["prior_contacts"] or [])]
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if cmd.in_case and args.case_id:
        kwargs["case_id"] = args.case_id
    if cmd.name in BODIES:  # `void` names its entry by --position, not the body's field
        # Checked as the HTTP API checks the same command's body (bounds, decimals, lengths).
        kwargs = checked(cmd.name, kwargs, "command")
    outcome = getattr(registry, cmd.method)(
        Actor(args.unit, _who(args)),
        member_ref(registry, args.member),
        occurred_on=args.on,
        expected_version=args.expected_version,
        idempotency_key=args.idempotency_key,
        **kwargs,
    )
    _print_outcome(outcome, args.json)


def _prior(text: str) -> dict[str, str]:
    who, sep, answer = text.partition("=")
    if not sep:
        raise HarborError("--prior is WHO=ANSWER", code="INVALID_INPUT", field="prior_contacts")
    return {"who": who, "answer": answer}


def _unit_name(registry: Registry) -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def name(code: str) -> str:
        if code not in cache:
            try:
                cache[code] = registry.unit(code).name
            except NotFound:
                cache[code] = code
        return cache[code]

    return name


def _demo(registry: Registry, args: argparse.Namespace) -> None:
    members = load_article_cases(registry, recorded_by=args.as_name or "demo")
    name = _unit_name(registry)
    if args.json:
        print(
            json.dumps({"liu_yang": str(members.liu_yang), "old_comrade": str(members.old_comrade)})
        )
        return
    print("Harbor demo — the two cases of “把党员服务工作落实到细微之处” (2011-09-19)\n")
    for label, member_id in (
        ("Case 1 — 刘洋 (Liu Yang)", members.liu_yang),
        ("Case 2 — 老同志 at the Daning centre", members.old_comrade),
    ):
        print(label)
        print(render_trail(registry.member(member_id), name))
        print()
    from api.cli_projections import scorecard_text

    print("Scorecards (first-inquiry responsibility, judged today)")
    print(scorecard_text(registry))


def dispatch(registry: Registry, args: argparse.Namespace) -> int:
    """Run one parsed command against ``registry``; returns the exit code."""
    by_name = {c.name: c for c in MEMBER_COMMANDS}
    command = args.command
    for extension in _extensions():
        if command in extension.COMMANDS:
            code: int = extension.run(registry, args)
            return code
    if command in by_name:
        _run_member_command(registry, args, by_name[command])
    elif command == "db" and args.db_command == "copy":
        from api.cli_db_copy import run_copy

        return run_copy(registry, args)
    elif command == "db" and args.db_command == "status":
        from api.cli_db_status import run_status

        return run_status(registry, args)
    elif command == "db":
        config = parse_database_url(database_url())
        _create_every_table(registry)
        if args.json:
            print(json.dumps({"store": config.display, "log_position": registry.position()}))
        else:
            print(f"schema ready in {config.display} (log position {registry.position()})")
        if registry.env.get("HARBOR_ID_KEY") in (None, "", DEV_ID_KEY):
            print(
                "note: HARBOR_ID_KEY is not set; member ids use the development key."
                " Set a secret key before enrolling real members.",
                file=sys.stderr,
            )
    elif command == "units":
        _units(registry, args)
    elif command == "enrol":
        outcome = registry.enrol_member(
            Actor(args.unit, _who(args)),
            name=args.name,
            id_number=args.id_number,
            standing=args.standing,
            household_region=args.household_region,
            occurred_on=args.on,
            probation_started_on=args.probation_started,
            developing_unit_id=args.developing_unit,
            holder_unit_id=args.holder,
            idempotency_key=args.idempotency_key,
        )
        _print_outcome(outcome, args.json)
    elif command == "lookup":
        mid = registry.member_id_for(args.id_number)
        registry.member(mid)  # UNKNOWN_MEMBER when not enrolled
        print(json.dumps({"member_id": str(mid)}) if args.json else mid)
    elif command == "demo":
        _demo(registry, args)
    return 0


def _create_every_table(registry: Registry) -> None:
    """The read models', credentials' and audit log's tables too, not only the event store's.

    Each is otherwise created by its first user; an operator who prepares the database
    ahead (or runs Harbor with fewer rights later) wants them all at once.
    """
    from audit.storage import AuditStore
    from projections.schema import ensure_schema
    from store.sql import Db
    from store.tokens import TokenStore

    db = Db(registry.recorder.datastore)  # type: ignore[attr-defined]
    ensure_schema(db)
    TokenStore(db)
    AuditStore.for_recorder(registry.recorder)


def _units(registry: Registry, args: argparse.Namespace) -> None:
    sub = args.units_command
    if sub == "list":
        rows = registry.units()
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "code": u.code,
                            "name": u.name,
                            "kind": u.kind.value,
                            "parent": u.parent_unit_id,
                            "region": u.region,
                            "dissolved_on": str(u.dissolved_on) if u.dissolved_on else None,
                        }
                        for u in rows
                    ],
                    ensure_ascii=False,
                )
            )
            return
        for u in rows:
            gone = f"  dissolved {u.dissolved_on}" if u.dissolved_on else ""
            parent = f"  parent {u.parent_unit_id}" if u.parent_unit_id else ""
            print(f"{u.code:24} {u.kind.value:15} {u.region:10} {u.name}{parent}{gone}")
        return
    actor = Actor(args.unit or args.code, _who(args))
    if sub == "add":
        outcome = registry.register_unit(
            actor,
            code=args.code,
            name=args.name,
            kind=args.kind,
            region=args.region,
            parent_unit_id=args.parent,
            occurred_on=args.on,
            idempotency_key=args.idempotency_key,
        )
    elif sub == "rename":
        outcome = registry.rename_unit(
            actor,
            args.code,
            name=args.name,
            occurred_on=args.on,
            idempotency_key=args.idempotency_key,
        )
    else:
        from store.sql import Db
        from store.tokens import TokenStore

        outcome = registry.dissolve_unit(
            actor,
            args.code,
            successor_unit_id=args.successor,
            occurred_on=args.on,
            idempotency_key=args.idempotency_key,
        )
        revoked = TokenStore(Db(registry.recorder.datastore)).revoke_unit(args.code)  # type: ignore[attr-defined]
        print(f"revoked {revoked} token(s) of {args.code}", file=sys.stderr)
    _print_outcome(outcome, args.json)


def _reads_existing_store(args: argparse.Namespace) -> bool:
    sub = getattr(args, f"{args.command}_command", None)
    return args.command in READS_EXISTING_STORE or (args.command, sub) in READS_EXISTING_STORE


def _missing_store(args: argparse.Namespace) -> Path | None:
    """The SQLite file a reading command would find no store in (None: go ahead)."""
    if not _reads_existing_store(args):
        return None
    path = sqlite_file(database_url())
    return path if path is not None and not path.exists() else None


def _id_key_problem() -> str | None:
    """What is wrong with HARBOR_ID_KEY, told so that the operator can fix it."""
    key = os.environ.get("HARBOR_ID_KEY")
    if not key or len(key.encode("utf-8")) >= MIN_KEY_BYTES:
        return None  # unset: the development key (db init warns about it)
    return (
        f"HARBOR_ID_KEY is {len(key.encode('utf-8'))} bytes long; the member-id key must be"
        f" at least {MIN_KEY_BYTES} bytes. Set HARBOR_ID_KEY to a long random secret (e.g."
        " `python3 -c 'import secrets; print(secrets.token_hex(32))'`) and keep it: member ids"
        " are derived from it, so members enrolled under one key are not found under another"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `harbor` console script."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a reader that left shows here, not at the interpreter's exit
    except KeyboardInterrupt:
        # Every long command commits in steps that a new run goes on from; say so instead
        # of a traceback.
        print(
            "\nharbor: interrupted — what was committed stays, nothing half-done is kept;"
            " run the same command again to go on",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output left (`harbor demo | head -1`): stop quietly, and point
        # standard output at nothing so that the interpreter's last flush fails no more.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # no file descriptor behind sys.stdout (tests)
            pass
        return EXIT_PIPE_CLOSED
    return code


# A refusal's field as the command line spells it: the domain's name → the option's dest.
_FIELD_DESTS = {"occurred_on": "on", "unit_id": "unit", "member_id": "member", "voided": "position"}


def option_for(parser: argparse.ArgumentParser, args: argparse.Namespace, field: str) -> str | None:
    """The option (or argument) of the command run that fills ``field``, if it has one."""
    page = parser
    while True:
        subs = [a for a in page._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or subs[0].dest not in vars(args):
            break
        page = subs[0].choices[getattr(args, subs[0].dest)]
    dest = _FIELD_DESTS.get(field, field)
    for action in page._actions:
        if action.dest == dest and not isinstance(action, argparse._HelpAction):
            return action.option_strings[0] if action.option_strings else action.dest
    return None


def _for_the_command_line(error: HarborError, args: argparse.Namespace) -> HarborError:
    """A refusal in the words of what was typed: an unknown member named by its ID number
    is named so (the domain only knows the id derived from it), with what to check."""
    typed = getattr(args, "member", None) or getattr(args, "id_number", None)
    if error.code != "UNKNOWN_MEMBER" or not isinstance(typed, str):
        return error
    try:
        UUID(typed)
        return error
    except ValueError:
        pass
    return NotFound(
        f"no member is enrolled with ID number {typed}: check the number, or enrol the member"
        " (`harbor enrol`); if no ID number is found at all, HARBOR_ID_KEY is not the key"
        " this store's members were enrolled with",
        code=error.code,
        field=error.field,
    )


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("verify-bundle", "verify-proof"):  # offline: never opens the store
        from api.cli_audit import run_offline

        return run_offline(args)
    key_problem = _id_key_problem()
    if key_problem is not None:
        print(f"harbor: {key_problem}", file=sys.stderr)
        return EXIT_SETUP
    missing = _missing_store(args)
    if missing is not None:
        where = (
            "HARBOR_DATABASE_URL"
            if os.environ.get("HARBOR_DATABASE_URL")
            else "the default; HARBOR_DATABASE_URL names another"
        )
        print(
            f"harbor: no store at {missing} ({where}); create it with `harbor db init`"
            " or `harbor demo`",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    try:
        registry = open_registry()
    except ValueError as e:
        print(f"harbor: {e}", file=sys.stderr)
        return EXIT_SETUP
    except Exception as e:  # the store itself could not be opened
        config = parse_database_url(database_url())
        why = str(e)
        if config.backend == "postgres":
            from api.cli_db_copy import why_unreachable

            # The pool only says it got no connection in time; ask the server why.
            why = why_unreachable(config.env) or why
        print(
            f"harbor: cannot open the store {config.display} (HARBOR_DATABASE_URL): {why}",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    try:
        return dispatch(registry, args)
    except Unavailable as e:
        print(f"harbor: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except HarborError as e:
        e = _for_the_command_line(e, args)
        option = option_for(parser, args, e.field) if e.field else None
        if args.json:
            said = {"code": e.code, "field": e.field, "option": option, "message": e.message}
            print(json.dumps(said, ensure_ascii=False), file=sys.stderr)
        else:
            where = f" [{option or e.field}]" if e.field else ""
            print(f"refused: {e.code}{where}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        registry.close()


if __name__ == "__main__":
    sys.exit(main())
