"""Ed25519 signing keys and signed tree heads.

A key's id is the first 16 hex digits of SHA-256 of its raw 32-byte public
key. The private key lives in a PEM file (PKCS#8, mode 0600) whose path comes
from configuration, never in the database; public keys are kept in the
database (``harbor_signing_keys``) and exported as ``<key id>.pem`` files, so
tree heads signed before a rotation still verify.

A tree head is signed over one line of text (UTF-8, ending in a newline)::

    harbor-tree-head/1 <tree size> <root hash, hex> <signed at, ISO 8601 UTC> <key id>

and the witness file holds one line per head: those same fields after the
``harbor-tree-head/1`` tag, then the signature in base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEAD_TAG = "harbor-tree-head/1"
ENDORSEMENT_TAG = "harbor-key-endorsement/1"


class KeyProblem(Exception):
    """A key file is missing, unreadable, too open, or not an Ed25519 key."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo)."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def parse_public_pem(text: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM."""
    data = text.encode("ascii") if isinstance(text, str) else text
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise KeyProblem(f"not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyProblem("not an Ed25519 public key")
    return key


def now_utc() -> str:
    """The signing time as ISO 8601 UTC with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_private_key(path: Path, private_key: Ed25519PrivateKey) -> None:
    """Write the key as unencrypted PKCS#8 PEM, mode 0600; never overwrites a file."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read the signing key; refuse one that others can read (like ssh does)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyProblem(
            f"no signing key at {path}: run `harbor keys init` (or set HARBOR_SIGNING_KEY)"
        ) from None
    except OSError as e:
        raise KeyProblem(f"cannot read the signing key {path}: {e}") from None
    if mode & 0o077:
        raise KeyProblem(
            f"the signing key {path} can be read by others (mode {mode & 0o777:o}):"
            f" run chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyProblem(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"{path} is not an Ed25519 key")
    return key


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id, from one PEM file or every ``*.pem`` in a folder."""
    files = sorted(path.glob("*.pem")) if path.is_dir() else [path]
    keys: dict[str, Ed25519PublicKey] = {}
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as e:
            raise KeyProblem(f"cannot read the public key {file}: {e}") from None
        try:
            key = parse_public_pem(data)
        except KeyProblem as e:
            raise KeyProblem(f"{file}: {e}") from None
        keys[key_id(key)] = key
    if not keys:
        raise KeyProblem(f"no public key in {path}")
    return keys


@dataclass(frozen=True)
class TreeHead:
    """A signed statement: the first ``tree_size`` events have this Merkle root."""

    tree_size: int
    root_hash: bytes
    signed_at: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """The bytes the signature covers."""
        return signed_message(self.tree_size, self.root_hash, self.signed_at, self.key_id)

    def witness_line(self) -> str:
        """One line of the witness file (no newline)."""
        return (
            f"{HEAD_TAG} {self.tree_size} {self.root_hash.hex()} {self.signed_at} {self.key_id}"
            f" {base64.b64encode(self.signature).decode('ascii')}"
        )

    @classmethod
    def from_witness_line(cls, line: str) -> TreeHead:
        """Parse a witness file line; ValueError when it is not one."""
        parts = line.split()
        if len(parts) != 6 or parts[0] != HEAD_TAG:
            raise ValueError(f"not a {HEAD_TAG} line")
        return cls(
            tree_size=int(parts[1]),
            root_hash=bytes.fromhex(parts[2]),
            signed_at=parts[3],
            key_id=parts[4],
            signature=_b64(parts[5]),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready fields (hex root, base64 signature)."""
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TreeHead:
        """Inverse of ``to_json``; ValueError on a malformed head."""
        try:
            return cls(
                tree_size=int(data["tree_size"]),
                root_hash=bytes.fromhex(str(data["root_hash"])),
                signed_at=str(data["signed_at"]),
                key_id=str(data["key_id"]),
                signature=_b64(str(data["signature"])),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed tree head: {e!r}") from None


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not base64: {e}") from None


def signed_message(tree_size: int, root_hash: bytes, signed_at: str, kid: str) -> bytes:
    """``harbor-tree-head/1 <size> <root hex> <signed at> <key id>\\n`` in UTF-8."""
    return f"{HEAD_TAG} {tree_size} {root_hash.hex()} {signed_at} {kid}\n".encode()


def head_signature_problem(
    head: TreeHead,
    keys: Mapping[str, Ed25519PublicKey],
    retired: Mapping[str, Retirement] | None = None,
) -> str | None:
    """None when ``head`` is signed by one of ``keys`` while that key was current; else why not."""
    key = keys.get(head.key_id)
    if key is None:
        return f"signed by key {head.key_id}, which is not among the trusted public keys"
    try:
        key.verify(head.signature, head.message())
    except InvalidSignature:
        return f"its signature does not verify with key {head.key_id} (forged or altered)"
    return retirement_problem(head, retired or {})


def retirement_problem(head: TreeHead, retired: Mapping[str, Retirement]) -> str | None:
    """Why ``head`` is not vouched for: its key had been replaced; None while it was current."""
    retirement = retired.get(head.key_id)
    if retirement is None:
        return None
    if retirement.endorsed_when_retired:
        return (
            f"signed by key {head.key_id}, which key {retirement.successor} endorsed at"
            f" {retirement.at} after it had itself been replaced: a retired key vouches for"
            " no new key (a leaked old key)"
        )
    signed, ended = parse_time(head.signed_at), parse_time(retirement.at)
    if signed is not None and ended is not None and signed < ended:
        return None
    return (
        f"signed by key {head.key_id} at {head.signed_at}, after key"
        f" {retirement.successor} replaced it at {retirement.at}: a retired key"
        " signs nothing (a leaked old key, or a sealer that missed the rotation)"
    )


@dataclass(frozen=True)
class Retirement:
    """When a key stopped being current: its successor's creation time (and id)."""

    at: str
    successor: str
    # Set for a key that a key already replaced endorsed: it was never current.
    endorsed_when_retired: bool = False


FORGED_SIGNATURE = "FORGED SIGNATURE"
RETIRED_KEY = "RETIRED KEY"
RETIREMENT_UNCHECKED = (
    "key retirement was not checked: no key history (the keys.json that `harbor keys export"
    " DIR` writes beside the public keys) came with the keys, so a head signed by a retired key"
    " after its rotation (e.g. a leaked old key) would pass — verify with that folder as the keys"
)


@dataclass(frozen=True)
class KeyEntry:
    """One key as a key history (``keys.json``) lists it."""

    key_id: str
    created_at: str
    endorsed_by: str | None = None
    endorsement: bytes | None = None


@dataclass(frozen=True)
class KeyHistory:
    """The key history a verifier was given: every entry of ``source`` (a ``keys.json``)."""

    source: Path
    entries: tuple[KeyEntry, ...]


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a verifier trusts, and when each was retired if that is known."""

    keys: Mapping[str, Ed25519PublicKey]
    # None when no key history came with the keys: retirement then cannot be checked at all,
    # which differs from a history in which no key was ever replaced (an empty mapping).
    retired: Mapping[str, Retirement] | None = None
    notes: tuple[str, ...] = ()
    # Kept whole (entries whose PEM is absent too) so that `harbor verify` can hold the
    # database's key records against it.
    history: KeyHistory | None = None
    forks: tuple[str, ...] = ()  # keys endorsed by a key already replaced (``keyring.forks``)

    @classmethod
    def of(cls, keys: Mapping[str, Ed25519PublicKey] | TrustedKeys) -> TrustedKeys:
        """``keys`` itself, or bare public keys (with no key history) wrapped."""
        return keys if isinstance(keys, TrustedKeys) else cls(keys)

    def head_problem(self, head: TreeHead) -> tuple[str, str] | None:
        """None when a trusted key, still current then, signed ``head``; else (label, why)."""
        problem = head_signature_problem(head, self.keys)
        if problem is not None:
            return FORGED_SIGNATURE, problem
        problem = retirement_problem(head, self.retired or {})
        return None if problem is None else (RETIRED_KEY, problem)

    def caveats(self) -> list[str]:
        """What these keys leave unchecked, to be shown with any verdict reached with them."""
        return [*self.notes, *([RETIREMENT_UNCHECKED] if self.retired is None else [])]


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 time as an aware datetime (UTC when no zone); None when it is not one."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def endorsement_message(new_key_id: str, new_public_pem: str, created_at: str) -> bytes:
    """What the outgoing key signs when a new key replaces it."""
    return f"{ENDORSEMENT_TAG} {new_key_id} {created_at}\n{new_public_pem}".encode()


class Signer:
    """An Ed25519 private key that signs tree heads."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """The signer whose key is at ``path``."""
        return cls(load_private_key(path))

    def sign_head(self, tree_size: int, root_hash: bytes, signed_at: str | None = None) -> TreeHead:
        """A tree head for ``tree_size`` leaves with root ``root_hash``, signed now."""
        at = signed_at or now_utc()
        message = signed_message(tree_size, root_hash, at, self.key_id)
        return TreeHead(tree_size, root_hash, at, self.key_id, self.private_key.sign(message))

    def sign(self, message: bytes) -> bytes:
        """A raw Ed25519 signature."""
        return self.private_key.sign(message)
