"""`harbor keys | seal | verify | bundle | verify-bundle | proof | verify-proof`: the audit log.

Exit codes: 0 everything holds (``verify`` with nothing sealed too, saying so);
1 verification found a change (the first one is printed with its position and
kind; ``proof`` refusing because the stored tree fails the proof); 2 something
to do first (no key, ``bundle`` or ``proof`` with nothing sealed or no such head,
a key or witness file that cannot be read or written, a garbled ``keys.json`` or one
whose endorsements do not verify, a file that is no well-formed bundle or proof).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from api.cli_args import add_command, member_ref
from audit.bundle import (
    BundleError,
    BundleResult,
    load_bundle,
    make_bundle,
    trail_lines,
    verify_bundle,
)
from audit.config import AuditConfig
from audit.keyring import export_keys, init_key, load_trusted_keys, rotate_key
from audit.keys import KeyProblem, Signer
from audit.log import CATCH_UP_BATCH, AuditError, AuditLog, read_witness_file
from audit.proofs import (
    NotAProof,
    ProofDoesNotHold,
    ProofResult,
    ProofUnavailable,
    Witness,
    load_proof,
    make_consistency_proof,
    make_inclusion_proof,
    verify_proof,
)
from audit.verify import Report, verify_log
from domain.registry import Registry

COMMANDS: set[str] = {"keys", "seal", "verify", "bundle", "verify-bundle", "proof", "verify-proof"}
OFFLINE_COMMANDS: set[str] = {"verify-bundle", "verify-proof"}
EXIT_CHANGED = 1
EXIT_SETUP = 2
KEY_HELP = (
    "trusted public keys: the folder `harbor keys export` wrote, whose keys.json (the key"
    " history) also rejects a head signed by a key after it was replaced; or a PEM file or"
    " folder of them, without that check (the output then says so)"
)


def add_commands(sub: Any) -> None:
    """Add the audit subcommands to the `harbor` parser."""
    keys = sub.add_parser("keys", help="the Ed25519 keys that sign tree heads").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser(
        "init", help="create the signing key (HARBOR_SIGNING_KEY, mode 0600) and register it"
    )
    keys.add_parser("rotate", help="start a new key; heads signed by the old one still verify")
    export = keys.add_parser("export", help="write every public key for auditors")
    export.add_argument(
        "directory", type=Path, help="folder to write <key id>.pem and keys.json to (created)"
    )

    sub.add_parser("seal", help="catch up the Merkle tree and sign a tree head for the whole log")

    verify = add_command(
        sub,
        "verify",
        summary="recompute every leaf and check every tree head; exit 1 naming the first change",
        description="Recompute every Merkle leaf from the stored events and check every signed"
        " tree head (signature, root, consistency) and witness head against them. A head signed"
        " by a key after its endorsed successor replaced it fails; with --keys and the folder"
        " `harbor keys export` wrote, the rotations come from its keys.json (your copy), and"
        " database key records that disagree with it are a finding; otherwise they come from"
        " the database, and the output says so. Exits 0 if all hold, 1 naming the first change,"
        " 2 if it cannot start (e.g. unreadable keys, a garbled keys.json).",
        example="harbor verify --keys auditor-keys/ --witness /mnt/witness/harbor-witness.txt"
        " --json",
    )
    verify.add_argument(
        "--keys",
        type=Path,
        metavar="DIR_OR_PEM",
        help="trust only these public keys, not the database's: the folder `harbor keys export`"
        " wrote, whose keys.json (the key history) then also says which keys were retired and is"
        " compared with the database's key records; or a PEM file or folder of them, with"
        " retirement taken from the database (the output then says so)",
    )
    verify.add_argument(
        "--witness",
        type=Path,
        action="append",
        default=[],
        help="also check the heads in this witness file (repeatable; default: the configured"
        " HARBOR_WITNESS_FILE when it exists)",
    )
    verify.add_argument("--progress", action="store_true", help="show progress even off a TTY")

    bundle = sub.add_parser("bundle", help="export a member's events with inclusion proofs")
    bundle.add_argument("member", help="member id, or the member's ID number")
    bundle.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    check = add_command(
        sub,
        "verify-bundle",
        summary="check a proof bundle offline (no database) and print the trail",
        description="Check a bundle written by `harbor bundle` with only trusted public keys:"
        " the tree head's signature (and, with the folder `harbor keys export` wrote, that its"
        " key had not been replaced when it signed), then each event against its inclusion"
        " proof; print the verified trail. Never opens the database. Exits 0 when it holds,"
        " 1 when it fails, 2 when the file is not a bundle or the keys cannot be read.",
        example="harbor keys export auditor-keys/   # on the operator's side, after each rotation\n"
        "harbor verify-bundle m.json --key auditor-keys/",
    )
    check.add_argument("file", type=Path, help="the bundle, as `harbor bundle` wrote it")
    check.add_argument("--key", required=True, type=Path, metavar="DIR_OR_PEM", help=KEY_HELP)
    _add_proof_commands(sub)


def _add_proof_commands(sub: Any) -> None:
    proof = add_command(
        sub,
        "proof",
        summary="export a consistency or an inclusion proof, checkable offline",
        description="Export a proof as JSON, to be checked offline with `harbor verify-proof`:"
        " `consistency` shows that the log only grew between two signed tree heads,"
        " `inclusion` that one event is in the log a signed tree head commits to.",
        example="harbor proof consistency 120 480 -o grew.json\n"
        "harbor proof inclusion 57 --size 120 -o event-57.json",
    )
    kinds = proof.add_subparsers(dest="proof_command", required=True, metavar="KIND")
    consistency = add_command(
        kinds,
        "consistency",
        summary="prove that the log of NEW_SIZE events extends the log of OLD_SIZE events",
        description="Write the two stored signed tree heads of these sizes and the RFC 9162"
        " consistency proof between them: whoever holds the older head (e.g. from a witness"
        " file) can check, with only the public key, that none of its events was edited,"
        " removed, reordered or inserted since. Both sizes must be sizes of stored heads.",
        example="harbor proof consistency 120 -o grew.json      # against the latest head\n"
        "harbor verify-proof grew.json --key auditor-keys/ --witness their-witness.txt",
    )
    consistency.add_argument("old_size", type=int, help="size of the older stored tree head")
    consistency.add_argument(
        "new_size",
        type=int,
        nargs="?",
        help="size of the newer stored tree head (default: the latest head)",
    )
    consistency.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    inclusion = add_command(
        kinds,
        "inclusion",
        summary="prove that the event at log POSITION is in a signed tree head",
        description="Write the event at this log position exactly as stored (re-hashable"
        " offline), its RFC 9162 inclusion proof, and the signed tree head it is proved"
        " against. Works for any event: a member's, a unit's, a letter number's.",
        example="harbor proof inclusion 57 -o event-57.json           # against the latest head\n"
        "harbor proof inclusion 57 --size 120 -o event-57.json  # against a head you hold",
    )
    inclusion.add_argument(
        "position",
        type=int,
        help="the event's log position (its notification id: `harbor history --json` lists"
        " them, a bundle's events carry them)",
    )
    inclusion.add_argument(
        "--size",
        type=int,
        help="prove against the stored tree head of this size (default: the latest head)",
    )
    inclusion.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    check = add_command(
        sub,
        "verify-proof",
        summary="check a consistency or inclusion proof offline (no database)",
        description="Check a file written by `harbor proof` with only trusted public keys:"
        " each tree head's signature (and, with the folder `harbor keys export` wrote, that its"
        " key had not been replaced when it signed), then the proof. Never opens the database."
        " Exits 0 when it holds, 1 when the proof or a signature fails (or a head is not in the"
        " witness file), 2 when the file is not a proof or the keys cannot be read.",
        example="harbor keys export auditor-keys/   # on the operator's side, after each rotation\n"
        "harbor verify-proof grew.json --key auditor-keys/ --witness their-witness.txt",
    )
    check.add_argument("file", type=Path, help="the proof, as `harbor proof` wrote it")
    check.add_argument("--key", required=True, type=Path, metavar="DIR_OR_PEM", help=KEY_HELP)
    check.add_argument(
        "--witness",
        type=Path,
        help="a witness file you keep: every head of the proof must be one of its heads",
    )


def _file_problem(error: OSError) -> str:
    """A file that could not be read or written, named with the reason in words."""
    return f"{error.filename or 'file'}: {(error.strerror or str(error)).lower()}"


def run_offline(args: argparse.Namespace) -> int:
    """The commands that need no database (`verify-bundle`, `verify-proof`)."""
    if args.command == "verify-proof":
        return verify_proof_command(args)
    return verify_bundle_command(args)


def run(registry: Registry, args: argparse.Namespace) -> int:
    """Run one audit command; returns the exit code."""
    if args.command in OFFLINE_COMMANDS:
        return run_offline(args)
    config = AuditConfig.from_env()
    try:
        audit = AuditLog(registry.recorder)
        if args.command == "keys":
            return _keys(audit, config, args)
        if args.command == "seal":
            return _seal(audit, config, args)
        if args.command == "verify":
            return _verify(audit, config, args)
        if args.command == "proof":
            return _proof(audit, args)
        return _bundle(registry, audit, args)
    except ProofDoesNotHold as e:
        print(f"harbor: {e}", file=sys.stderr)
        return EXIT_CHANGED
    except (AuditError, KeyProblem, BundleError, ProofUnavailable) as e:
        print(f"harbor: {e}", file=sys.stderr)
        return EXIT_SETUP
    except OSError as e:  # a key, witness or output file that cannot be read or written
        print(f"harbor: {_file_problem(e)}", file=sys.stderr)
        return EXIT_SETUP


def _keys(audit: AuditLog, config: AuditConfig, args: argparse.Namespace) -> int:
    if args.json:
        return _keys_json(audit, config, args)
    if args.keys_command == "init":
        change = init_key(audit, config)
        if change.created:
            print(f"created signing key {change.key_id} at {config.signing_key} (mode 0600)")
        else:
            print(f"signing key {change.key_id} already at {config.signing_key}")
        print(f"public key registered in the database and written to {change.public_path}")
    elif args.keys_command == "rotate":
        change = rotate_key(audit, config)
        print(
            f"new signing key {change.key_id} at {config.signing_key}, endorsed by"
            f" {change.retired_key_id}; public key written to {change.public_path}"
        )
        print(
            f"the old private key was moved to {change.retired_path}: archive or destroy it;"
            " heads it signed still verify with its public key"
        )
    else:
        for path in export_keys(audit, args.directory):
            print(path)
    return 0


def _keys_json(audit: AuditLog, config: AuditConfig, args: argparse.Namespace) -> int:
    """What ``harbor keys`` did, as one JSON object (paths as text)."""
    said: dict[str, Any]

    def text(path: Path | None) -> str | None:
        return None if path is None else str(path)

    if args.keys_command == "init":
        change = init_key(audit, config)
        said = {"key_id": change.key_id, "created": change.created,
                "signing_key": str(config.signing_key), "public_key": text(change.public_path)}
    elif args.keys_command == "rotate":
        change = rotate_key(audit, config)
        said = {"key_id": change.key_id, "endorsed_by": change.retired_key_id,
                "signing_key": str(config.signing_key), "public_key": text(change.public_path),
                "retired_private_key": text(change.retired_path)}
    else:
        said = {"written": [str(path) for path in export_keys(audit, args.directory)]}
    print(json.dumps(said, ensure_ascii=False))
    return 0


def _seal(audit: AuditLog, config: AuditConfig, args: argparse.Namespace) -> int:
    signer = Signer.from_file(config.signing_key)
    pending = audit.without_leaves()
    with _progress(
        sys.stderr.isatty() and pending > 10 * CATCH_UP_BATCH, pending, "sealing"
    ) as step:
        head = audit.seal(signer, config.witness_file, progress=step)
    if args.json:
        print(json.dumps(head.to_json()))
    else:
        print(
            f"sealed {head.tree_size} events: root {head.root_hash.hex()} signed at"
            f" {head.signed_at} by key {head.key_id}; appended to {config.witness_file}"
        )
    return 0


@contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def _verify(audit: AuditLog, config: AuditConfig, args: argparse.Namespace) -> int:
    trusted = load_trusted_keys(args.keys) if args.keys else None
    witnesses = list(args.witness)
    # The configured file is the sealers' own: every stored head must be in it.
    sealers = None if witnesses or not config.witness_file.exists() else config.witness_file
    if sealers is not None:
        witnesses.append(sealers)
    leaves = audit.size()
    show = (args.progress or sys.stderr.isatty()) and leaves > 0
    with _progress(show, 2 * leaves, "verifying") as advance:
        report = verify_log(
            audit,
            trusted_keys=trusted,
            witness_files=witnesses,
            sealer_witness=sealers,
            # A seal stores its head just after its witness line: locked, none is read half.
            lock_file=config.witness_file if config.witness_file.exists() else None,
            advance=advance,
        )
    if not args.witness and sealers is None and report.heads:
        report.notes.append(
            f"no witness file at {config.witness_file} (HARBOR_WITNESS_FILE): the {report.heads}"
            " stored tree heads were compared with none — if the sealers' file is elsewhere,"
            " or you keep a copy, pass it with --witness FILE; if it was deleted, restore it"
            " from a copy"
        )
    first = report.first
    audit.store.add_verification(
        report.ok,
        report.events_checked,
        None if first is None else f"{first.kind} at {first.position}: {first.message}",
    )
    if args.json:
        print(json.dumps(_report_json(report), ensure_ascii=False))
    else:
        _print_report(report, witnesses)
    return 0 if report.ok else EXIT_CHANGED


def _report_json(report: Report) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "leaves": report.leaves,
        "events_checked": report.events_checked,
        "unsealed": report.unsealed,
        "heads": report.heads,
        "witness_heads": report.witness_heads,
        "findings": [
            {"kind": f.kind, "position": f.position, "message": f.message} for f in report.findings
        ],
        "retirement_from": report.retirement_from,
        "notes": [*_seal_notes(report), *report.notes],
    }


def _seal_notes(report: Report) -> list[str]:
    """What the report says about sealing, for the text and the JSON alike."""
    notes = []
    if report.ok and not report.heads and not report.witness_heads:
        notes.append("nothing is sealed yet, so nothing is proved (run `harbor seal`)")
    # After a change, no head holds over the events as they are: sealing is not the cure.
    if report.ok and report.unsealed:
        notes.append(
            f"{report.unsealed} events recorded after the last seal are not covered yet"
            " (run `harbor seal`)"
        )
    return notes


def _print_report(report: Report, witnesses: list[Path]) -> None:
    if report.ok:
        print(
            f"verified: {report.events_checked} events match their {report.leaves} leaves;"
            f" {report.heads} tree heads hold (signatures, roots, consistency)"
            + (f"; {report.witness_heads} witness heads hold" if witnesses else "")
        )
    else:
        assert report.first is not None
        print(f"CHANGED: {report.first.message}")
        for finding in report.findings[1:]:
            print(f"  also: {finding.message}")
    _print_notes([*_seal_notes(report), *report.notes])


def _bundle(registry: Registry, audit: AuditLog, args: argparse.Namespace) -> int:
    member_id = member_ref(registry, args.member)
    registry.member(member_id)  # UNKNOWN_MEMBER when not enrolled
    data = make_bundle(audit, member_id)
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(
            f"wrote {args.output}: {len(data['events'])} events proved against the tree head"
            f" of size {data['tree_head']['tree_size']} ({data['tree_head']['signed_at']})",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    if data["unsealed_events"]:
        print(
            f"note: {data['unsealed_events']} later events of this member are not sealed yet"
            " and are not in the bundle (run `harbor seal` first to include them)",
            file=sys.stderr,
        )
    return 0


def verify_bundle_command(args: argparse.Namespace) -> int:
    """`harbor verify-bundle FILE --key DIR_OR_PEM`: offline, never opens the store."""
    try:
        keys = load_trusted_keys(args.key)
        data = load_bundle(args.file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        print(f"harbor: {args.file}: not a proof bundle (not UTF-8 text)", file=sys.stderr)
        return EXIT_SETUP
    except (KeyProblem, BundleError) as e:
        print(f"harbor: {e}", file=sys.stderr)
        return EXIT_SETUP
    except OSError as e:  # the bundle or a key file that cannot be read
        print(f"harbor: {_file_problem(e)}", file=sys.stderr)
        return EXIT_SETUP
    result = verify_bundle(data, keys)
    if getattr(args, "json", False):
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "member_id": result.member_id,
                    "events": len(result.events),
                    "problems": result.problems,
                    "notes": result.notes,
                },
                ensure_ascii=False,
            )
        )
        return _bundle_exit(result)
    if not result.ok:
        print(f"NOT VERIFIED: {args.file}")
        for problem in result.problems:
            print(f"  {problem}")
        _print_notes(result.notes)
        return _bundle_exit(result)
    assert result.head is not None
    print(
        f"verified: member {result.member_id}, {len(result.events)} events, each proved in the"
        f" tree head of size {result.head.tree_size} signed at {result.head.signed_at}"
        f" by key {result.head.key_id}"
    )
    for line in trail_lines(result):
        print(line)
    if result.unsealed:
        print(f"note: {result.unsealed} later events were not sealed when this was exported")
    _print_notes(result.notes)
    return 0


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}")


def _bundle_exit(result: BundleResult) -> int:
    """0 verified; 2 not a well-formed bundle (nothing could be checked); 1 it fails."""
    if result.ok:
        return 0
    return EXIT_SETUP if result.malformed else EXIT_CHANGED


def _proof(audit: AuditLog, args: argparse.Namespace) -> int:
    if args.proof_command == "consistency":
        data = make_consistency_proof(audit, args.old_size, args.new_size)
        old, new = data["old_head"], data["new_head"]
        summary = (
            f"consistency of the tree head of size {old['tree_size']} ({old['signed_at']})"
            f" with the tree head of size {new['tree_size']} ({new['signed_at']})"
        )
    else:
        data = make_inclusion_proof(audit, args.position, args.size)
        event, head = data["event"], data["tree_head"]
        summary = (
            f"inclusion of the event at log position {args.position} (leaf {event['ordinal']},"
            f" {event['topic'].rpartition(':')[2]}) in the tree head of size"
            f" {head['tree_size']} ({head['signed_at']})"
        )
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: {summary}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def verify_proof_command(args: argparse.Namespace) -> int:
    """`harbor verify-proof FILE --key DIR_OR_PEM [--witness FILE]`: offline, no store."""
    try:
        keys = load_trusted_keys(args.key)
        data = load_proof(args.file.read_text(encoding="utf-8"))
        witness = None
        if args.witness is not None:
            heads = [h for _, h in read_witness_file(args.witness) if not isinstance(h, str)]
            witness = Witness(f"the witness file {args.witness}", heads)
    except UnicodeDecodeError:
        print(f"harbor: {args.file}: not a proof file (not UTF-8 text)", file=sys.stderr)
        return EXIT_SETUP
    except NotAProof as e:
        print(f"harbor: {args.file}: {e}", file=sys.stderr)
        return EXIT_SETUP
    except KeyProblem as e:
        print(f"harbor: {e}", file=sys.stderr)
        return EXIT_SETUP
    except OSError as e:  # the proof, a key or the witness file that cannot be read
        print(f"harbor: {_file_problem(e)}", file=sys.stderr)
        return EXIT_SETUP
    result = verify_proof(data, keys, witness)
    if getattr(args, "json", False):
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "kind": result.kind,
                    "proved": result.proved,
                    "problems": result.problems,
                    "notes": result.notes,
                },
                ensure_ascii=False,
            )
        )
        return _proof_exit(result)
    if result.ok:
        for line in result.proved:
            print(line)
    else:
        print(f"NOT VERIFIED: {args.file}")
        for problem in result.problems:
            print(f"  {problem}")
    _print_notes(result.notes)
    return _proof_exit(result)


def _proof_exit(result: ProofResult) -> int:
    """0 verified; 2 not a well-formed proof (nothing could be checked); 1 it fails."""
    if result.ok:
        return 0
    return EXIT_SETUP if result.malformed else EXIT_CHANGED
