"""``harbor keys``: create, rotate and export the signing keys.

The private key stays in its file (``HARBOR_SIGNING_KEY``, mode 0600); the
database keeps every public key ever used, so tree heads signed before a
rotation still verify. A rotation is endorsed: the outgoing key signs the new
public key, and ``harbor verify`` checks that chain.

``export_keys`` writes the public keys with ``keys.json``, the key history (dates
and endorsements); ``load_trusted_keys`` reads such a folder back for the offline
verifiers and for ``harbor verify --keys``, which then takes retirement from it rather
than from the database. Every verifier retires a key by the same rule, ``retirements``:
from its endorsed successor's creation time on, it signs nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit.config import AuditConfig
from audit.keys import (
    KeyEntry,
    KeyHistory,
    KeyProblem,
    Retirement,
    Signer,
    TrustedKeys,
    endorsement_message,
    load_public_keys,
    now_utc,
    public_pem,
    write_private_key,
)
from audit.log import AuditLog
from audit.storage import KeyRecord

KEY_INDEX = "keys.json"
_KEY_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class KeyChange:
    """What a keys command did."""

    key_id: str
    created: bool
    retired_key_id: str | None = None
    retired_path: Path | None = None
    public_path: Path | None = None


def init_key(audit: AuditLog, config: AuditConfig) -> KeyChange:
    """Create the key pair unless the key file exists; register its public key here."""
    path = config.signing_key
    created = not path.exists()
    if created:
        write_private_key(path, Ed25519PrivateKey.generate())
    signer = Signer.from_file(path)
    audit.keep_key(KeyRecord(signer.key_id, public_pem(signer.public_key), now_utc()))
    return KeyChange(signer.key_id, created, public_path=_export_one(signer, config))


def rotate_key(audit: AuditLog, config: AuditConfig) -> KeyChange:
    """Start a new key: the old one endorses it and is moved aside as ``*.retired``."""
    path = config.signing_key
    if not path.exists():
        raise KeyProblem(f"no signing key at {path} to rotate: run `harbor keys init`")
    old = Signer.from_file(path)
    audit.keep_key(KeyRecord(old.key_id, public_pem(old.public_key), now_utc()))
    new = Signer(Ed25519PrivateKey.generate())
    pending = path.with_name(path.name + ".new")
    write_private_key(pending, new.private_key)
    try:
        created_at = now_utc()
        pem = public_pem(new.public_key)
        endorsement = old.sign(endorsement_message(new.key_id, pem, created_at))
        audit.keep_key(KeyRecord(new.key_id, pem, created_at, old.key_id, endorsement))
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    retired = path.with_name(f"{path.name}.{old.key_id}.retired")
    os.replace(path, retired)
    os.replace(pending, path)
    return KeyChange(
        new.key_id,
        True,
        retired_key_id=old.key_id,
        retired_path=retired,
        public_path=_export_one(new, config),
    )


def export_keys(audit: AuditLog, directory: Path) -> list[Path]:
    """Write every public key as ``<key id>.pem`` plus ``keys.json`` (dates, endorsements);
    the paths written, the index last."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    index = []
    for record in audit.store.public_keys():
        target = directory / f"{record.key_id}.pem"
        target.write_text(record.public_pem, encoding="ascii")
        written.append(target)
        index.append(
            {
                "key_id": record.key_id,
                "created_at": record.created_at,
                "endorsed_by": record.endorsed_by,
                "endorsement": (
                    base64.b64encode(record.endorsement).decode("ascii")
                    if record.endorsement
                    else None
                ),
            }
        )
    (directory / KEY_INDEX).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return [*written, directory / KEY_INDEX]


def endorsement_verifies(record: KeyRecord, keys: Mapping[str, Ed25519PublicKey]) -> bool:
    """True when the key ``record`` says it replaced (one of ``keys``) endorsed it."""
    endorser = keys.get(record.endorsed_by or "")
    if endorser is None or record.endorsement is None:
        return False
    message = endorsement_message(record.key_id, record.public_pem, record.created_at)
    try:
        endorser.verify(record.endorsement, message)
    except InvalidSignature:
        return False
    return True


def retirements(
    records: Sequence[KeyRecord], keys: Mapping[str, Ed25519PublicKey]
) -> dict[str, Retirement]:
    """When each key was replaced, from rotation records whose endorsement verifies.

    A key is replaced once, by its first endorsed successor. A second successor (a fork:
    ``forks`` names them) was endorsed by a key already replaced, so it is never current:
    every head it signs is refused."""
    out: dict[str, Retirement] = {}
    for record in _rotations(records, keys):
        assert record.endorsed_by is not None
        if record.endorsed_by not in out:
            out[record.endorsed_by] = Retirement(record.created_at, record.key_id)
        else:
            out.setdefault(
                record.key_id, Retirement(record.created_at, record.endorsed_by, True)
            )
    return out


def forks(records: Sequence[KeyRecord], keys: Mapping[str, Ed25519PublicKey]) -> list[str]:
    """A sentence for each key endorsed by a key that another had already replaced."""
    first: dict[str, KeyRecord] = {}
    found = []
    for record in _rotations(records, keys):
        assert record.endorsed_by is not None
        earlier = first.setdefault(record.endorsed_by, record)
        if earlier is not record:
            found.append(
                f"key {record.endorsed_by} endorsed two successors: key {earlier.key_id} at"
                f" {earlier.created_at} and key {record.key_id} at {record.created_at} — a"
                " rotation makes one, so the replaced key (leaked?) endorsed the second; heads"
                f" signed by key {record.key_id} are refused"
            )
    return found


def _rotations(
    records: Sequence[KeyRecord], keys: Mapping[str, Ed25519PublicKey]
) -> list[KeyRecord]:
    """The rotation records whose endorsement verifies, oldest first."""
    valid = [r for r in records if r.endorsed_by is not None and endorsement_verifies(r, keys)]
    return sorted(valid, key=lambda r: (r.created_at, r.key_id))


def load_trusted_keys(path: Path) -> TrustedKeys:
    """The public keys at ``path`` (a PEM file or a folder), with its ``keys.json`` history."""
    keys = load_public_keys(path)
    index = path / KEY_INDEX
    if not path.is_dir() or not index.exists():
        return TrustedKeys(keys)
    records, entries, notes = _read_key_index(path, index, keys)
    listed = {entry.key_id for entry in entries}
    for record in records:
        # An endorsement that fails would silently leave the replaced key current, so the
        # history is refused rather than half applied; an untrusted endorser does not matter.
        if record.endorsed_by in keys and not endorsement_verifies(record, keys):
            raise KeyProblem(
                f"{index}: key {record.key_id} claims to replace {record.endorsed_by}, but that"
                " key's endorsement of it does not verify: export the keys again"
                " (`harbor keys export DIR`)"
            )
    for kid in sorted(set(keys) - listed):
        notes.append(
            f"key {kid} is not in {index}: whether it replaced a key is not known, so the key it"
            " replaced (if any) is not checked for retirement — export the keys again"
        )
    history = KeyHistory(index, tuple(entries))
    return TrustedKeys(
        keys, retirements(records, keys), tuple(notes), history, tuple(forks(records, keys))
    )


def _read_key_index(
    directory: Path, index: Path, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[list[KeyRecord], list[KeyEntry], list[str]]:
    """The records of ``keys.json`` whose PEM is in ``directory``, every entry, notes."""
    not_history = f"{index} is not the key history `harbor keys export` writes"
    try:
        entries: Any = json.loads(index.read_bytes().decode("utf-8"))
    except OSError as e:
        raise KeyProblem(f"cannot read the key history {index}: {e}") from None
    except ValueError as e:  # not UTF-8, or not JSON
        raise KeyProblem(f"{not_history}: {e}") from None
    if not isinstance(entries, list):
        raise KeyProblem(f"{not_history}: it holds no list of keys")
    records: list[KeyRecord] = []
    listed: list[KeyEntry] = []
    notes: list[str] = []
    for number, item in enumerate(entries, start=1):
        try:
            entry = _key_entry(item)
            record = _key_record(directory, entry)
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise KeyProblem(f"{not_history}: entry {number} is malformed ({e!r})") from None
        except OSError as e:
            raise KeyProblem(f"{index}, entry {number}: cannot read its public key: {e}") from None
        listed.append(entry)
        if record is not None:
            records.append(record)
        elif entry.endorsed_by in keys:
            notes.append(
                f"{index} says key {entry.key_id} replaced key {entry.endorsed_by} at"
                f" {entry.created_at}, but {entry.key_id}.pem is not beside it: that"
                " endorsement cannot be checked, so the retirement of key"
                f" {entry.endorsed_by} is not checked"
            )
    return records, listed, notes


def _key_entry(entry: Any) -> KeyEntry:
    """One ``keys.json`` entry, checked; KeyError, TypeError or ValueError when malformed."""
    kid, created_at, endorsed_by = entry["key_id"], entry["created_at"], entry["endorsed_by"]
    # The id names a file to open: only a real key id may, never a path.
    if not isinstance(kid, str) or not _KEY_ID.fullmatch(kid):
        raise ValueError(f"key_id {kid!r} is not a key id")
    if not isinstance(created_at, str) or not isinstance(endorsed_by, str | None):
        raise TypeError("created_at must be text, endorsed_by text or null")
    endorsement = entry["endorsement"]
    raw = None if endorsement is None else base64.b64decode(str(endorsement), validate=True)
    return KeyEntry(kid, created_at, endorsed_by, raw)


def _key_record(directory: Path, entry: KeyEntry) -> KeyRecord | None:
    """A ``keys.json`` entry with its public key's PEM; None when that PEM file is absent."""
    pem = directory / f"{entry.key_id}.pem"
    if not pem.exists():
        return None
    return KeyRecord(
        entry.key_id,
        pem.read_text(encoding="ascii"),
        entry.created_at,
        entry.endorsed_by,
        entry.endorsement,
    )


def _export_one(signer: Signer, config: AuditConfig) -> Path:
    config.public_keys_dir.mkdir(parents=True, exist_ok=True)
    target = config.public_keys_dir / f"{signer.key_id}.pem"
    target.write_text(public_pem(signer.public_key), encoding="ascii")
    return target
