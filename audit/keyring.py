"""``harbor keys``: create, rotate and export the signing keys.

The private key stays in its file (``HARBOR_SIGNING_KEY``, mode 0600); the
database keeps every public key ever used, so tree heads signed before a
rotation still verify. A rotation is endorsed: the outgoing key signs the new
public key, and ``harbor verify`` checks that chain.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.config import AuditConfig
from audit.keys import (
    KeyProblem,
    Signer,
    endorsement_message,
    now_utc,
    public_pem,
    write_private_key,
)
from audit.log import AuditLog
from audit.storage import KeyRecord


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
    """Write every public key as ``<key id>.pem`` plus ``keys.json`` (dates, endorsements)."""
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
    (directory / "keys.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    return written


def _export_one(signer: Signer, config: AuditConfig) -> Path:
    config.public_keys_dir.mkdir(parents=True, exist_ok=True)
    target = config.public_keys_dir / f"{signer.key_id}.pem"
    target.write_text(public_pem(signer.public_key), encoding="ascii")
    return target
