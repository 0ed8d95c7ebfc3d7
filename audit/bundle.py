"""Proof bundles: one member's events, each proved to be in a signed tree head.

A bundle is JSON (format ``harbor-proof-bundle/1``)::

    {"format": "harbor-proof-bundle/1", "leaf_format": 1,
     "member_id": "<uuid>", "exported_at": "<ISO 8601 UTC>",
     "tree_head": {"tree_size", "root_hash" (hex), "signed_at", "key_id", "signature" (base64)},
     "events": [{"version", "topic", "state" (the stored bytes as UTF-8 text, or base64 when
                 "state_encoding" is "base64"), "state_encoding", "notification_id", "ordinal",
                 "leaf_hash" (hex), "inclusion_proof": [hex, ...]}, ...],
     "unsealed_events": <the member's events recorded after that head, not in the bundle>}

It holds the member's own stored events and, in the proofs, hashes of other
parts of the tree — never another member's data. ``verify_bundle`` needs only
the bundle and trusted public keys: no database. Given the keys with their history
(``keyring.load_trusted_keys`` on the folder ``harbor keys export`` wrote), it
also rejects a head signed by a key after that key was replaced, by the same rule
as ``harbor verify``; without it, its result notes that this was not checked.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import merkle
from audit.keys import TreeHead, TrustedKeys, now_utc
from audit.leaf import FORMAT as LEAF_FORMAT
from audit.leaf import event_leaf_hash

if TYPE_CHECKING:
    from audit.log import AuditLog

FORMAT = "harbor-proof-bundle/1"


class BundleError(Exception):
    """The bundle cannot be made (nothing sealed yet, unknown member)."""


def make_bundle(audit: AuditLog, member_id: UUID) -> dict[str, Any]:
    """The member's sealed events with inclusion proofs against the latest tree head."""
    head = audit.store.latest_head()
    if head is None:
        raise BundleError("no tree head has been signed yet: run `harbor seal` first")
    rows = audit.store.stream_rows(member_id)
    if not rows:
        raise BundleError(f"no events for member {member_id}")
    leaves = audit.store.leaves_for([r[0] for r in rows])
    sealed = [
        (r, leaves[r[0]]) for r in rows if r[0] in leaves and leaves[r[0]][0] < head.tree_size
    ]
    unsealed = len(rows) - len(sealed)
    proofs = audit.inclusion_proofs([ordinal for _, (ordinal, _) in sealed], head.tree_size)
    events = [
        event_json(row, ordinal, leaf, proof)
        for (row, (ordinal, leaf)), proof in zip(sealed, proofs, strict=True)
    ]
    return {
        "format": FORMAT,
        "leaf_format": LEAF_FORMAT,
        "member_id": str(member_id),
        "exported_at": now_utc(),
        "tree_head": head.to_json(),
        "events": events,
        "unsealed_events": unsealed,
    }


def event_json(
    row: tuple[int, Any, int, str, bytes], ordinal: int, leaf: bytes, proof: list[bytes]
) -> dict[str, Any]:
    """One stored event as a bundle (or an inclusion proof) carries it: re-hashable offline."""
    nid, _, version, topic, state = row
    try:
        text, encoding = state.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(state).decode("ascii"), "base64"
    return {
        "version": version,
        "topic": topic,
        "state": text,
        "state_encoding": encoding,
        "notification_id": nid,
        "ordinal": ordinal,
        "leaf_hash": leaf.hex(),
        "inclusion_proof": [p.hex() for p in proof],
    }


@dataclass(frozen=True)
class VerifiedEvent:
    """One event of the bundle, proved to be in the signed log."""

    version: int
    ordinal: int  # the leaf's index in the tree (zero-based): what the proof proves
    topic: str
    state: bytes
    # The log position (notification id) the bundle gives for it: what `harbor history
    # --json`, the HTTP API, `void --position` and `proof inclusion` call its position.
    notification_id: int | None = None


@dataclass
class BundleResult:
    """What ``verify_bundle`` established."""

    member_id: str = ""
    head: TreeHead | None = None
    events: list[VerifiedEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unsealed: int = 0
    notes: list[str] = field(default_factory=list)  # what was not checked, whatever the verdict

    @property
    def malformed(self) -> bool:
        """True when the file is no well-formed bundle (a field missing or garbled)."""
        return any(p.startswith(("MALFORMED", "UNSUPPORTED")) for p in self.problems)

    @property
    def ok(self) -> bool:
        """True when the signature and every event's proof hold."""
        return not self.problems and self.head is not None


def load_bundle(text: str) -> dict[str, Any]:
    """Parse a bundle file's text; BundleError when it is not a bundle."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(f"not a proof bundle (invalid JSON: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"not a proof bundle (expected format {FORMAT!r})")
    return data


def verify_bundle(
    data: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey] | TrustedKeys
) -> BundleResult:
    """Check a bundle offline against trusted public keys (and their history, when given)."""
    trusted = TrustedKeys.of(keys)
    result = BundleResult(notes=trusted.caveats())
    try:
        result.member_id = str(UUID(str(data["member_id"])))
        head = TreeHead.from_json(data["tree_head"])
        raw_events = list(data["events"])
        result.unsealed = int(data.get("unsealed_events", 0))
    except (KeyError, TypeError, ValueError) as e:
        result.problems.append(f"MALFORMED: the bundle lacks or garbles a field ({e})")
        return result
    if data.get("leaf_format") != LEAF_FORMAT:
        result.problems.append(
            f"UNSUPPORTED: leaf format {data.get('leaf_format')!r}"
            f" (this verifier knows {LEAF_FORMAT})"
        )
        return result
    problem = trusted.head_problem(head)
    if problem is not None:
        label, why = problem
        result.problems.append(
            f"{label}: the tree head (size {head.tree_size}, signed at"
            f" {head.signed_at}) is not vouched for — {why}"
        )
        return result
    result.head = head
    member = UUID(result.member_id)
    previous_version, previous_ordinal = 0, -1
    for position, raw in enumerate(raw_events, start=1):
        label = f"event #{position}"
        try:
            version = int(raw["version"])
            ordinal = int(raw["ordinal"])
            topic = str(raw["topic"])
            state = state_bytes(raw)
            recorded_leaf = bytes.fromhex(str(raw["leaf_hash"]))
            proof = [bytes.fromhex(str(p)) for p in raw["inclusion_proof"]]
            nid = raw.get("notification_id")
            notification_id = None if nid is None else int(nid)
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            result.problems.append(f"MALFORMED: {label} lacks or garbles a field ({e})")
            continue
        at = "" if notification_id is None else f"position {notification_id}, "
        label = f"event #{position} (version {version}, {at}leaf {ordinal})"
        if version != previous_version + 1:
            result.problems.append(
                f"INCOMPLETE: {label} follows version {previous_version}: the member's history"
                " in this bundle has a gap or is out of order"
            )
        if ordinal <= previous_ordinal:
            result.problems.append(f"OUT OF ORDER: {label} is not after the previous event")
        previous_version, previous_ordinal = version, ordinal
        leaf = event_leaf_hash(member, version, topic, state)
        if leaf != recorded_leaf:
            result.problems.append(
                f"ALTERED: {label} ({topic.rpartition(':')[2]}) does not hash to the leaf"
                " recorded for it — its content was changed after it was sealed, or it is another"
                " member's event"
            )
            continue
        if not merkle.verify_inclusion(leaf, ordinal, head.tree_size, proof, head.root_hash):
            result.problems.append(
                f"NOT PROVED: {label}: its inclusion proof does not lead to the signed root —"
                " the proof is not this event's (e.g. taken from another member's event),"
                " or the event is not what was sealed at that position"
            )
            continue
        result.events.append(VerifiedEvent(version, ordinal, topic, state, notification_id))
    if not raw_events:
        result.problems.append("EMPTY: the bundle holds no sealed event")
    return result


def state_bytes(raw: Mapping[str, Any]) -> bytes:
    """The stored state bytes of a bundled event (``state`` decoded per ``state_encoding``)."""
    encoding = raw.get("state_encoding", "utf-8")
    if encoding == "utf-8":
        return str(raw["state"]).encode("utf-8")
    if encoding == "base64":
        return base64.b64decode(str(raw["state"]), validate=True)
    raise ValueError(f"unknown state_encoding {encoding!r}")


# --- the trail an auditor reads ----------------------------------------------------------------

_COMMON = {"timestamp", "originator_topic", "unit_id", "occurred_on", "recorded_by", "case_id"}


def _plain(value: Any) -> Any:
    """Unwrap eventsourcing's ``{"_type_": .., "_data_": ..}`` transcodings."""
    if isinstance(value, dict):
        if set(value) == {"_type_", "_data_"}:
            return _plain(value["_data_"])
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(event: VerifiedEvent) -> str:
    """Where the event is: its log position (when known) and its leaf in the tree."""
    if event.notification_id is None:
        return f"leaf {event.ordinal}"
    return f"position {event.notification_id}, leaf {event.ordinal}"


def trail_lines(result: BundleResult) -> list[str]:
    """One line per verified event: business date, unit, event type, key fields, recorded."""
    lines = []
    for event in result.events:
        try:
            state = _plain(json.loads(event.state))
        except (UnicodeDecodeError, json.JSONDecodeError):
            state = {}
        if not isinstance(state, dict):
            state = {}
        fields = " ".join(
            f"{k}={_short(v)}" for k, v in state.items() if k not in _COMMON and v is not None
        )
        case = state.get("case_id")
        recorded = str(state.get("timestamp", "?"))[:19].replace("T", " ")
        lines.append(
            f"v{event.version:<3} {state.get('occurred_on', '?'):<10}"
            f" {state.get('unit_id', '-'):<20} {event.topic.rpartition(':')[2]:<22}"
            f" {fields}"
            + (f" case={str(case)[:8]}" if case else "")
            + f"  (recorded {recorded} by {state.get('recorded_by', '?')}, {_where(event)})"
        )
    return lines
