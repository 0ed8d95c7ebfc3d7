"""Benchmark: `harbor verify` over N events, sealing's cost to the command rate, bundle export.

    python bench/verify.py --events 1000000 --json bench/results/verify-1m.json
    python bench/verify.py --events 20000 --url sqlite:////tmp/bench.db

On PostgreSQL (default: a fresh throwaway database on HARBOR_BENCH_POSTGRES_URL,
dropped afterwards; or --url). How the log is made:
  - the article's units, 500 members enrolled through the Registry, and one
    member with 50 events (enrolment + 49 `make_contact` commands) for the bundle;
  - the rest, up to N, are *synthetic stored events* written straight through
    the recorder (`insert_events`, 5,000 per transaction): 10 events for each
    of N/10 made-up member streams, interleaved, each with a ~240-byte JSON
    state shaped like Harbor's (timestamp, unit, dates, recorder, a note) and
    the topic `bench.verify:SyntheticEvent`. Verification hashes stored rows
    and never decodes them, so they cost what real events cost; going through
    the aggregates instead would take ~40 s per million events for no change
    in what is measured.
Then:
  1. initial seal (catch-up of every leaf and interior node; reported, not a target);
  2. `verify_log` (what `harbor verify` runs) — median of --repeat runs → verify_events_per_s;
  3. --commands `make_contact` commands per phase, phases alternating sealing off / on
     (a BackgroundSealer polling every 0.1 s, sealing every --seal-every events),
     --rounds of each → command_per_s_sealing_off / _on (medians);
  4. `make_bundle` for the 50-event member against a fresh head, median of 5 → bundle_ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import StoredEvent

from api.demo import load_units
from audit.bundle import make_bundle, verify_bundle
from audit.keys import Signer, now_utc, public_pem
from audit.log import AuditLog
from audit.sealer import BackgroundSealer, Sealer
from audit.storage import KeyRecord
from audit.verify import verify_log
from domain.registry import Actor, Registry
from store import open_registry

ADMIN_URL = os.environ.get(
    "HARBOR_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TODAY = date(2026, 11, 26)
SYNTHETIC_TOPIC = "bench.verify:SyntheticEvent"
MEMBERS = 500
BUNDLE_EVENTS = 50
UNITS = ["daning-center", "hongkou-center", "sh-residence-center", "sh-org-dept"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _enrol(registry: Registry, n: int) -> uuid.UUID:
    outcome = registry.enrol_member(
        Actor("daning-center", "bench"),
        name=f"党员{n}",
        id_number=f"3101091950{n:07d}X",
        standing="full",
        household_region="上海·虹口",
        occurred_on=date(2001, 1, 1),
    )
    assert outcome.member_id is not None
    return outcome.member_id


def _contact(registry: Registry, member: uuid.UUID, i: int) -> None:
    registry.make_contact(
        Actor(UNITS[i % 2], "bench"),
        member,
        occurred_on=TODAY,
        channel="phone",
        note=f"电话联系，第{i}次",
    )


def _synthetic(count: int, batch: int = 5000) -> Any:
    """Batches of synthetic stored events: 10 per made-up stream, interleaved."""
    made = 0
    while made < count:
        streams = [uuid.uuid4() for _ in range(max(1, min(batch, count - made) // 10))]
        events = []
        for version in range(1, 11):
            for sid in streams:
                if made + len(events) >= count:
                    break
                state = json.dumps(
                    {
                        "timestamp": {"_type_": "datetime_iso", "_data_": now_utc()},
                        "unit_id": UNITS[version % len(UNITS)],
                        "occurred_on": {"_type_": "date", "_data_": "2026-11-26"},
                        "recorded_by": "bench",
                        "case_id": {"_type_": "uuid_hex", "_data_": sid.hex},
                        "note": f"synthetic event {version} of a made-up member",
                    },
                    separators=(",", ":"),
                ).encode()
                events.append(StoredEvent(sid, version, SYNTHETIC_TOPIC, state))
        made += len(events)
        yield events


def _commands(registry: Registry, members: list[uuid.UUID], count: int, start: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        _contact(registry, members[(start + i) % len(members)], start + i)
    return count / (time.perf_counter() - started)


def run(url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Build the log on ``url`` and measure; returns the figures."""
    registry = open_registry(url, clock=lambda: TODAY)
    try:
        load_units(registry, "bench")
        members = [_enrol(registry, n) for n in range(MEMBERS)]
        subject = _enrol(registry, MEMBERS)
        for i in range(BUNDLE_EVENTS - 1):
            _contact(registry, subject, i)
        started = time.perf_counter()
        written = registry.position()
        synthetic = max(0, args.events - written)
        for events in _synthetic(synthetic):
            registry.recorder.insert_events(events)
            written += len(events)
            if written % 100_000 < len(events):
                _log(f"written {written:,} events")
        total = registry.position()
        _log(f"log of {total:,} events written in {time.perf_counter() - started:.1f} s")
        if url.startswith("postgres"):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE harbor_events")

        audit = AuditLog(registry.recorder)
        signer = Signer(Ed25519PrivateKey.generate())
        audit.keep_key(KeyRecord(signer.key_id, public_pem(signer.public_key), now_utc()))
        witness = workdir / "witness.txt"
        started = time.perf_counter()
        audit.seal(signer, witness)
        seal_initial = time.perf_counter() - started
        _log(f"initial seal (every leaf and node) in {seal_initial:.1f} s")

        verify_runs = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            report = verify_log(audit, witness_files=[witness])
            seconds = time.perf_counter() - started
            if not report.ok:
                raise SystemExit(f"verify found changes on a clean log: {report.findings[:3]}")
            verify_runs.append(report.events_checked / seconds)
            _log(f"verify: {report.events_checked:,} events in {seconds:.2f} s")

        rates: dict[str, list[float]] = {"off": [], "on": []}
        seals = 0
        done = 0
        for phase in ("off", "on") * args.rounds:
            if phase == "on":
                sealer = Sealer(
                    AuditLog(registry.recorder),
                    signer,
                    every_events=args.seal_every,
                    every_minutes=0,
                    witness_file=witness,
                )
                with BackgroundSealer(sealer, poll_seconds=0.1) as background:
                    rates[phase].append(_commands(registry, members, args.commands, done))
                seals += len(background.heads)
                if background.errors:
                    raise SystemExit(f"sealing failed: {background.errors[0]!r}")
            else:
                rates[phase].append(_commands(registry, members, args.commands, done))
            done += args.commands
            _log(f"commands, sealing {phase}: {rates[phase][-1]:,.0f}/s")

        audit.seal(signer, witness)
        bundle_runs = []
        for _ in range(5):
            started = time.perf_counter()
            bundle = make_bundle(audit, subject)
            bundle_runs.append((time.perf_counter() - started) * 1000)
        checked = verify_bundle(bundle, {signer.key_id: signer.public_key})
        if not checked.ok or len(checked.events) != BUNDLE_EVENTS:
            raise SystemExit(f"the bundle does not verify: {checked.problems}")
        final = verify_log(audit)
        if not final.ok:
            raise SystemExit(f"verify failed after sealing under load: {final.findings[:3]}")

        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        return {
            "verify_events_per_s": round(statistics.median(verify_runs)),
            "command_per_s_sealing_on": round(on, 1),
            "command_per_s_sealing_off": round(off, 1),
            "bundle_ms": round(statistics.median(bundle_runs), 2),
            "events": total,
            "backend": "postgres" if url.startswith("postgres") else "sqlite",
            "sealing_cost_pct": round(
                statistics.median(
                    100 * (f - n) / f for f, n in zip(rates["off"], rates["on"], strict=True)
                ),
                1,
            ),
            "seals_while_commands_ran": seals,
            "seal_every_events": args.seal_every,
            "commands_per_phase": args.commands,
            "initial_seal_s": round(seal_initial, 2),
            "verify_runs_events_per_s": [round(r) for r in verify_runs],
            "command_runs_per_s": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            "synthetic_events": synthetic,
        }
    finally:
        registry.close()


def main() -> int:
    """Run the benchmark and print/write its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the log")
    parser.add_argument("--url", help="store URL (default: a throwaway PostgreSQL database)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--repeat", type=int, default=3, help="verify runs (median)")
    parser.add_argument("--commands", type=int, default=3000, help="commands per phase")
    parser.add_argument("--seal-every", type=int, default=1000, help="events between seals")
    parser.add_argument("--rounds", type=int, default=3, help="off/on command phase pairs")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database")
    args = parser.parse_args()

    name = None
    url = args.url
    if url is None:
        name = f"harbor_bench_verify_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = ADMIN_URL.rpartition("/")
        url = f"{base}/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run(url, args, Path(tmp))
    finally:
        if name is not None and not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
