"""`harbor db status`: the store at a glance, for an operator or a cron job — the log, how far
the read models have folded it, the audit log's last seal and check, the credentials."""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any

from api.cli_args import add_command
from audit.status import audit_status
from domain.registry import Registry
from projections.runner import live_position
from store import parse_database_url
from store.config import database_url
from store.sql import Db
from store.tokens import TokenStore


def add_status_command(db: Any) -> None:
    """Register `db status` under `harbor db`."""
    add_command(
        db,
        "status",
        summary="the store at a glance: log, read models' lag, last seal and check, tokens",
        description="Print where the store is, its log position, how far the read models"
        " have folded it (the lag), the audit log's unsealed events, last signed tree head"
        " and last verification, and how many credentials are live. --json for a script or"
        " a cron job; the exit status is 0 whatever it finds (GET /healthz serves the"
        " running server's).",
        example="harbor db status --json",
    )


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


def run_status(registry: Registry, args: argparse.Namespace) -> int:
    """Print the status."""
    found = store_status(registry, registry.clock())
    if args.json:
        print(json.dumps(found, ensure_ascii=False))
        return 0
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
    return 0
