"""`harbor db status`: the store at a glance, for an operator or a cron job — the log, how far
the read models have folded it, the audit log's last seal and check, the credentials."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

from api.cli_args import add_command, whole_number
from audit.status import audit_status
from domain.registry import Registry
from projections.runner import live_position
from store import parse_database_url
from store.config import database_url
from store.sql import Db
from store.tokens import TokenStore


def add_status_command(db: Any) -> None:
    """Register `db status` under `harbor db`."""
    p = add_command(
        db,
        "status",
        summary="the store at a glance: log, read models' lag, last seal and check, tokens",
        description="Print where the store is, its log position, how far the read models"
        " have folded it (the lag), the audit log's unsealed events, last signed tree head"
        " and last verification, and how many credentials are live. --json for a script."
        " For a cron job, give limits: it exits 1 naming each one exceeded (0 otherwise).",
        example="harbor db status --max-lag 1000 --max-unsealed 5000 --max-check-age 7",
    )
    p.add_argument("--max-lag", type=whole_number("--max-lag", 0), metavar="EVENTS",
                   help="exit 1 if the read models are more than this many events behind")
    p.add_argument("--max-unsealed", type=whole_number("--max-unsealed", 0), metavar="EVENTS",
                   help="exit 1 if more than this many events are not under a signed head")
    p.add_argument("--max-check-age", type=whole_number("--max-check-age", 0), metavar="DAYS",
                   help="exit 1 if the last `harbor verify` is older than this, failed, or"
                   " never ran")


def store_status(registry: Registry, today: date) -> dict[str, Any]:
    """Everything `harbor db status` reports, as plain values."""
    position = registry.position()
    projected = live_position(registry)
    tokens = TokenStore(Db(registry.recorder.datastore)).list()  # type: ignore[attr-defined]
    live = [t for t in tokens if not t.revoked_at and (
        t.expires_on is None or date.fromisoformat(t.expires_on) >= today
    )]
    return {
        "store": parse_database_url(database_url()).display,
        "log_position": position,
        "projected_position": projected,
        "projection_lag": position - projected,
        "audit": audit_status(registry),
        "tokens": {"live": len(live), "issued": len(tokens)},
    }


def exceeded(found: dict[str, Any], args: argparse.Namespace, now: datetime) -> list[str]:
    """The limits given that the status breaks, each said as an operator reads it."""
    broken = []
    if args.max_lag is not None and found["projection_lag"] > args.max_lag:
        broken.append(f"the read models are {found['projection_lag']} events behind"
                      f" (limit {args.max_lag}): is the follower running?")
    unsealed = found["audit"]["unsealed_events"]
    if args.max_unsealed is not None and unsealed > args.max_unsealed:
        broken.append(f"{unsealed} events are not sealed (limit {args.max_unsealed}):"
                      " is the signing key there? run `harbor seal`")
    if args.max_check_age is not None:
        check = found["audit"]["last_verification"]
        if check is None:
            broken.append("`harbor verify` never ran on this store")
        elif not check["ok"]:
            broken.append(f"the last `harbor verify` ({check['verified_at']}) found a change")
        else:
            at = datetime.fromisoformat(check["verified_at"].replace("Z", "+00:00"))
            if now - at > timedelta(days=args.max_check_age):
                broken.append(f"the last `harbor verify` ran {check['verified_at']}, more than"
                              f" {args.max_check_age} days ago")
    return broken


def run_status(registry: Registry, args: argparse.Namespace) -> int:
    """Print the status; exit 1 if a limit given is exceeded."""
    found = store_status(registry, registry.clock())
    broken = exceeded(found, args, datetime.now(UTC))
    for problem in broken:
        print(f"harbor db status: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(found, ensure_ascii=False))
        return 1 if broken else 0
    audit = found["audit"]
    head = audit["last_tree_head"]
    check = audit["last_verification"]
    print(f"store        {found['store']}")
    print(f"log          position {found['log_position']}")
    print(f"read models  folded to {found['projected_position']}"
          f" (lag {found['projection_lag']} events)")
    print(f"audit log    {audit['tree_leaves']} leaves, {audit['unsealed_events']} events not"
          " sealed yet; last head " + (
              f"of {head['tree_size']} signed {head['signed_at']} by key {head['key_id']}"
              if head else "none (run `harbor keys init`, then `harbor seal`)"))
    print("last check   " + (
        f"{check['verified_at']}: {'ok' if check['ok'] else 'CHANGED'},"
        f" {check['events_checked']} events" if check else "never (run `harbor verify`)"))
    print(f"credentials  {found['tokens']['live']} live of {found['tokens']['issued']} issued")
    return 1 if broken else 0
