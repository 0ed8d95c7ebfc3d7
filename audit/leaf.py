"""The canonical bytes of one stored event: what a Merkle leaf commits to.

Format version 1, every integer big-endian, every variable field length-prefixed,
so no two different events share bytes::

    u8   format            0x01
    u8   id kind           0x01 = UUID, then 16 raw bytes
                           0x02 = any other text, then u32 length + UTF-8 bytes
    i64  originator_version
    u32  length of topic,  then the topic's UTF-8 bytes
    u32  length of state,  then the state bytes exactly as stored

The leaf hash is ``SHA-256(0x00 || those bytes)`` (RFC 9162). The fields are
the event's identity and content as the store keeps them (``originator_id``,
``originator_version``, ``topic``, ``state``); its log position is *not* in
the leaf, it is the leaf's index (ordinal) in the tree. SQLite keeps the id as
32 lowercase hex digits and PostgreSQL as ``uuid``: both give the same 16 bytes.
Anything else in SQLite's text column (a hand-written row) is hashed as text,
so it can never pass for a genuine UUID.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from typing import Any
from uuid import UUID

FORMAT = 1
ID_UUID = 1
ID_TEXT = 2

# How the SQLite audit store reads an id that is not text (a hand-edited row): a prefix no
# id the store writes has, then the column's type and its bytes in hex.
NOT_TEXT = "[not text] "

_HEAD_UUID = struct.Struct(">BB16sqI")
_HEAD_TEXT = struct.Struct(">BBI")
_VERSION_TOPIC = struct.Struct(">qI")
_LENGTH = struct.Struct(">I")
_sha256 = hashlib.sha256


def id_bytes(originator_id: UUID | str | bytes) -> bytes | str:
    """16 raw bytes for a UUID (or its canonical 32-hex text); any other text as is."""
    if isinstance(originator_id, UUID):
        return originator_id.bytes
    if isinstance(originator_id, bytes):
        if len(originator_id) != 16:
            raise ValueError("a raw originator id is 16 bytes")
        return originator_id
    if len(originator_id) == 32:
        try:
            raw = bytes.fromhex(originator_id)
        except ValueError:
            return originator_id
        if len(raw) == 16 and raw.hex() == originator_id:
            return raw
    return originator_id


def leaf_bytes(originator_id: UUID | str | bytes, version: int, topic: str, state: bytes) -> bytes:
    """The canonical encoding (format 1) of one stored event."""
    oid = originator_id.bytes if isinstance(originator_id, UUID) else id_bytes(originator_id)
    t = topic.encode("utf-8")
    if isinstance(oid, bytes):
        head = _HEAD_UUID.pack(FORMAT, ID_UUID, oid, version, len(t))
    else:
        text = oid.encode("utf-8")
        head = (
            _HEAD_TEXT.pack(FORMAT, ID_TEXT, len(text))
            + text
            + _VERSION_TOPIC.pack(version, len(t))
        )
    return head + t + _LENGTH.pack(len(state)) + state


def event_leaf_hash(
    originator_id: UUID | str | bytes, version: int, topic: str, state: bytes
) -> bytes:
    """``SHA-256(0x00 || leaf_bytes(...))``: the event's Merkle leaf hash."""
    return _sha256(b"\x00" + leaf_bytes(originator_id, version, topic, state)).digest()


def leaf_hashes(rows: Iterable[tuple[Any, Any, Any, Any, Any]]) -> Iterator[bytes]:
    """``event_leaf_hash`` of each ``(_, originator_id, version, topic, state)`` row, fast.

    A row whose columns no longer have the stored types (edited in SQL) gets
    ``unhashable_leaf_hash``, which no sealed leaf can equal, so verification names it."""
    topics: dict[str, bytes] = {}
    pack_head, pack_length, sha256 = _HEAD_UUID.pack, _LENGTH.pack, _sha256
    for _, oid, version, topic, state in rows:
        try:
            raw = oid if type(oid) is bytes else id_bytes(oid)
            if type(raw) is not bytes or len(raw) != 16:
                yield event_leaf_hash(oid, version, topic, state)
                continue
            t = topics.get(topic)
            if t is None:
                t = topics[topic] = topic.encode("utf-8")
            yield sha256(
                b"\x00"
                + pack_head(FORMAT, ID_UUID, raw, version, len(t))
                + t
                + pack_length(len(state))
                + state
            ).digest()
        except _BAD_ROW:
            yield unhashable_leaf_hash(oid, version, topic, state)


_BAD_ROW = (TypeError, ValueError, AttributeError, OverflowError, struct.error)


def unhashable_leaf_hash(originator_id: Any, version: Any, topic: Any, state: Any) -> bytes:
    """A hash for a row that has no leaf encoding: outside RFC 9162's leaf domain (0xff)."""
    return _sha256(b"\xff" + repr((originator_id, version, topic, state)).encode()).digest()


def row_problem(originator_id: Any, version: Any, topic: Any, state: Any) -> str | None:
    """Why a stored row has no leaf encoding (a column of the wrong type), or None."""
    if not isinstance(originator_id, UUID | str | bytes):
        return f"originator_id is {type(originator_id).__name__}"
    if isinstance(originator_id, str) and originator_id.startswith(NOT_TEXT):
        return f"originator_id is stored as {originator_id.removeprefix(NOT_TEXT)}, not as text"
    if isinstance(originator_id, bytes) and len(originator_id) != 16:
        return f"originator_id is {len(originator_id)} bytes, not a 16-byte UUID"
    if type(version) is not int:
        return f"originator_version is {version!r}"
    if not -(2**63) <= version < 2**63:
        return f"originator_version {version} does not fit 64 bits"
    if not isinstance(topic, str):
        return f"topic is {type(topic).__name__}"
    if not isinstance(state, bytes):
        return f"state is {type(state).__name__}"
    try:
        leaf_bytes(originator_id, version, topic, state)
    except _BAD_ROW as e:
        return str(e)
    return None
