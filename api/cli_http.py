"""`harbor serve` and `harbor tokens`: the HTTP API and its credentials."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from typing import Any

from api.cli_args import add_command, iso_date, whole_number
from domain.errors import NotFound, RuleRefused
from domain.registry import Registry
from store.sql import Db
from store.tokens import (
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    ROLES,
    ExpiryRefused,
    TokenStore,
    check_expiry,
    default_expiry,
)

COMMANDS = {"serve", "tokens"}
NO = ("no", "off", "0", "false")
# No access log (the metrics count requests), and no X-Forwarded-* rewriting of the client
# address, which nothing here reads: each is a layer of work on every request. No
# "server: uvicorn" header either: it tells a client nothing it needs.
UVICORN: dict[str, Any] = {
    "log_level": "warning",
    "access_log": False,
    "proxy_headers": False,
    "server_header": False,
}


def add_commands(sub: Any) -> None:
    """Register `serve` and `tokens`."""
    serve = add_command(
        sub,
        "serve",
        summary="run the HTTP API and the projection follower",
        description="Serve the HTTP API (its docs at /docs) until stopped and, unless"
        " --follower none, keep the projections current. Callers send a token from"
        " `harbor tokens issue`.",
        example="HARBOR_DATABASE_URL=postgresql://harbor:secret@db:5432/harbor \\\n"
        "    harbor serve --host 0.0.0.0 --port 8080 --workers 4",
    )
    serve.add_argument(
        "--host",
        default=os.environ.get("HARBOR_HOST", "127.0.0.1"),
        help="address to listen on (default HARBOR_HOST or 127.0.0.1)",
    )
    # Defaults from the environment stay text: argparse checks them with ``type`` only
    # when serving, so a bad HARBOR_PORT refuses `serve`, not every other command.
    serve.add_argument(
        "--port",
        type=whole_number("--port (or HARBOR_PORT)", 1, 65535),
        default=os.environ.get("HARBOR_PORT", "8000"),
        help="port (default HARBOR_PORT or 8000)",
    )
    serve.add_argument(
        "--workers",
        type=whole_number("--workers", 1, 64),
        default=1,
        help="worker processes, PostgreSQL only: SQLite serves from one (default %(default)s)",
    )
    serve.add_argument(
        "--threads",
        type=whole_number("--threads", 1, 256),
        default=8,
        help="threads per worker for the reads commands wait for, and as many for other"
        " blocking queries (default 8: with one interpreter lock, more threads only contend"
        " for it)",
    )
    serve.add_argument(
        "--follower",
        type=_follower,
        choices=FOLLOWERS,
        default=os.environ.get("HARBOR_FOLLOWER", "process"),
        help="where the projection follower runs: its own process, a thread of the server,"
        " or nowhere (run `harbor project` yourself); on SQLite, process means thread"
        " (default HARBOR_FOLLOWER or process)",
    )
    serve.add_argument(
        "--no-warm-cache",
        dest="warm_cache",
        action="store_false",
        default=os.environ.get("HARBOR_WARM_CACHE", "yes").lower() not in NO,
        help="start with an empty member cache instead of loading the recently active"
        " members in the background (default: HARBOR_WARM_CACHE, yes)",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="load the article's two cases first if the log is empty; HARBOR_DEMO=no (or"
        " off, 0, false) skips it even with --demo",
    )
    serve.add_argument(
        "--admin-token",
        action="store_true",
        help="print a fresh admin token (units and credentials) and an auditor token (reads"
        " everything) on start, for the unit HARBOR_ADMIN_UNIT (default sh-org-dept), valid"
        f" {DEFAULT_LIFETIME['admin'].days} days; the two an earlier start printed stop"
        " acting",
    )

    tokens = sub.add_parser("tokens", help="issue, list and revoke API credentials")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    issue = add_command(
        tsub,
        "issue",
        summary="print a new token alone on standard output",
        description="Issue an API token and print it alone on standard output (its expiry on"
        " standard error); only its hash is stored, so it cannot be shown again. Every token"
        f" expires: by default after {DEFAULT_LIFETIME['unit'].days} days for unit and"
        f" auditor tokens and {DEFAULT_LIFETIME['admin'].days} days for admin tokens;"
        f" --expires chooses the day, from today up to {MAX_LIFETIME.days} days ahead."
        " A dissolved unit gets none.",
        example="harbor tokens issue --unit daning-center --role unit --holder 王芳",
    )
    issue.add_argument("--unit", required=True, help="the unit the token acts for")
    issue.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="unit: records and reads as its unit; auditor: reads everything and fetches"
        " audit proofs; admin: registers, renames and dissolves units, and reads only the"
        " audit status (no member's records)",
    )
    issue.add_argument("--holder", required=True, help="the person it is issued to")
    issue.add_argument(
        "--expires",
        type=iso_date,
        help="last day it is valid (YYYY-MM-DD), today at the earliest and at most"
        f" {MAX_LIFETIME.days} days ahead (default: {DEFAULT_LIFETIME['unit'].days} days"
        f" from today, {DEFAULT_LIFETIME['admin'].days} for an admin token)",
    )
    add_command(
        tsub,
        "list",
        summary="every token (ids, never the tokens themselves)",
        description="List every token ever issued: its id, unit, role, holder, when issued,"
        " and its expiry or revocation. The tokens themselves are never shown. A token"
        " issued before expiry was required shows 'no expiry': it still acts, but revoke"
        " it and issue a new one.",
        example="harbor tokens list --json",
    )
    revoke = add_command(
        tsub,
        "revoke",
        summary="revoke a token by its id",
        description="Revoke a token by its id (from `harbor tokens list`); a running server"
        " refuses it within about a second. Exits 1 if no unrevoked token has that id.",
        example="harbor tokens revoke 9f3c2a1b",
    )
    revoke.add_argument("token_id", help="the token's id, as `harbor tokens list` shows it")


def run(registry: Registry, args: argparse.Namespace) -> int:
    """Run `serve` or `tokens`."""
    tokens = TokenStore(Db(registry.recorder.datastore))  # type: ignore[attr-defined]
    if args.command == "tokens":
        return _tokens(registry, tokens, args)
    return _serve(registry, tokens, args)


def _tokens(registry: Registry, tokens: TokenStore, args: argparse.Namespace) -> int:
    if args.tokens_command == "issue":
        unit = registry.unit(args.unit, "unit")  # UNKNOWN_UNIT for a typo
        if unit.dissolved:
            raise RuleRefused(
                f"unit {unit.code} is dissolved; it gets no new tokens (issue them to its"
                " successor or parent)",
                code="UNIT_DISSOLVED",
                field="unit",
            )
        today = registry.clock()
        try:
            expires = (
                default_expiry(args.role, today)
                if args.expires is None
                else check_expiry(args.expires, today)
            )
        except ExpiryRefused as e:
            print(f"harbor: --expires: {e}", file=sys.stderr)
            return 2
        print(tokens.issue(unit.code, args.role, args.holder, expires, today=today))
        print(f"expires {expires} (valid through that day)", file=sys.stderr)
        return 0
    if args.tokens_command == "list":
        rows, today = tokens.list(), registry.clock()
        if args.json:
            listed = [{**r.__dict__, "state": r.state_on(today)} for r in rows]
            print(json.dumps(listed, ensure_ascii=False))
        for r in rows if not args.json else []:
            print(
                f"{r.token_id}  {r.unit_id:22} {r.role:8} {r.holder:16} issued {r.issued_at}"
                f"  {r.state_on(today)}"
            )
        return 0
    if not tokens.revoke(args.token_id):
        raise NotFound(
            f"no live token {args.token_id}: `harbor tokens list` shows the tokens and which"
            " are revoked",
            code="UNKNOWN_TOKEN",
            field="token_id",
        )
    print(json.dumps({"revoked": args.token_id}) if args.json else f"revoked {args.token_id}")
    return 0


FOLLOWERS = ("process", "thread", "none")


def _follower(value: str) -> str:
    """A follower place, from --follower or HARBOR_FOLLOWER (whose value argparse checks
    only through this: it checks no default against ``choices``)."""
    if value not in FOLLOWERS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is no follower place (from --follower or HARBOR_FOLLOWER): choose"
            f" {', '.join(FOLLOWERS)}"
        )
    return value


def _port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (None when it can), checked by binding it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except socket.gaierror as e:
            why = e.strerror or str(e)
            return f"no such host: {why}; give --host an address or a name that resolves"
        except OSError as e:
            return e.strerror or str(e)
    return None


START_HOLDER = "harbor serve"  # the holder of the tokens --admin-token prints


def start_tokens(registry: Registry, tokens: TokenStore) -> list[str]:
    """Revoke the tokens an earlier ``--admin-token`` start printed, issue new ones: the lines.

    Only the latest start's tokens act, as with a notebook server's start-up token: a
    ``make run`` every morning would otherwise leave a trail of live admin tokens in old
    terminals and logs. Tokens issued with ``harbor tokens issue`` are not touched.
    """
    unit = os.environ.get("HARBOR_ADMIN_UNIT", "sh-org-dept")
    today = registry.clock()
    expires = default_expiry("admin", today)
    lines = []
    revoked = tokens.revoke_holder(START_HOLDER)
    if revoked:
        lines.append(f"revoked the {revoked} token(s) an earlier start printed")
    # The token last on its line: scripts (and tests) take what follows ": ". The admin
    # reads no member's records (DESIGN.md "Security"): the auditor token is for looking.
    for role in ("admin", "auditor"):
        token = tokens.issue(unit, role, START_HOLDER, expires, today=today)
        lines.append(f"{role} token ({unit}, valid through {expires}): {token}")
    return lines


def _serve(registry: Registry, tokens: TokenStore, args: argparse.Namespace) -> int:
    import uvicorn

    from api.demo import load_article_cases
    from api.http.app import create_app
    from projections.follower_process import FollowerProcess
    from store.collection import serving_collections

    taken = _port_taken(args.host, args.port)
    if taken is not None:
        # Said before "serving at" and the tokens, not after them as uvicorn would.
        advice = "" if "--host" in taken else "; stop what uses it or pick another --port"
        print(f"harbor serve: cannot listen on {args.host}:{args.port} ({taken}){advice}",
              file=sys.stderr)  # fmt: skip
        return 2
    demo = args.demo and os.environ.get("HARBOR_DEMO", "yes").lower() not in NO
    if demo and registry.position() == 0:  # after the port check: a refusal stores nothing
        load_article_cases(registry, recorded_by="demo")
        print("loaded the article's two cases", flush=True)
    url = f"http://{args.host}:{args.port}"
    print(f"Harbor is serving at {url}  (desk: {url}/ui/, API docs: {url}/docs)", flush=True)
    if args.admin_token:
        for line in start_tokens(registry, tokens):
            print(line, flush=True)
    sqlite = registry.factory.__class__.__module__.endswith("sqlite")
    follower = "thread" if sqlite and args.follower == "process" else args.follower
    workers = args.workers
    if workers > 1 and sqlite:
        print("harbor: --workers needs PostgreSQL; serving from one process", file=sys.stderr)
        workers = 1
    # One follower process serves every worker. Follower threads run one per worker, and
    # the projection lease lets one of them fold at a time.
    process = FollowerProcess.of(registry).start() if follower == "process" else None
    if process is not None:
        # uvicorn raises the stopping signal again once it has shut down, which would end
        # this process before the follower is stopped: take it quietly instead.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
    try:
        if workers > 1:
            os.environ["HARBOR_WARM_CACHE"] = "yes" if args.warm_cache else "no"
            os.environ["HARBOR_THREADS"] = str(args.threads)
            os.environ["HARBOR_FOLLOW_IN_WORKER"] = "yes" if follower == "thread" else "no"
            uvicorn.run(
                "api.http.serve:app_from_environment",
                factory=True,
                host=args.host,
                port=args.port,
                workers=workers,
                **UVICORN,
            )
            return 0
        serving_collections()
        if os.environ.get("HARBOR_GROUP_COMMIT", "on").lower() not in NO:
            registry.enable_group_commit()  # many request threads: share transactions
        app = create_app(
            registry,
            threads=args.threads,
            seal=True,
            warm=args.warm_cache,
            follow=follower == "thread",
        )
        if process is not None:
            app.state.follower = process  # /healthz reports it
        uvicorn.run(app, host=args.host, port=args.port, **UVICORN)
        return 0
    finally:
        if process is not None:
            process.stop()
