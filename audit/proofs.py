"""Stand-alone proofs: consistency between two signed tree heads, inclusion of one event.

A consistency proof file (format ``harbor-consistency-proof/1``)::

    {"format": "harbor-consistency-proof/1", "exported_at": "<ISO 8601 UTC>",
     "old_head": {<tree head>}, "new_head": {<tree head>},
     "consistency_proof": [hex, ...]}

shows that the log of ``new_head.tree_size`` events starts with exactly the
``old_head.tree_size`` events the old head committed to (RFC 9162 §2.1.4).

An inclusion proof file (format ``harbor-inclusion-proof/1``)::

    {"format": "harbor-inclusion-proof/1", "leaf_format": 1, "exported_at": "...",
     "event": {"originator_id", "originator_id_kind" ("uuid" or "text"), then the fields
               of a bundle's event: "version", "topic", "state", "state_encoding",
               "notification_id", "ordinal", "leaf_hash", "inclusion_proof"},
     "tree_head": {<tree head>}}

shows that this event, byte for byte, is the leaf at ``ordinal`` of the signed
log (RFC 9162 §2.1.3). A tree head is as ``TreeHead.to_json`` writes it.

``make_consistency_proof`` and ``make_inclusion_proof`` return the JSON dict
(for the CLI or an HTTP route); ``verify_proof`` checks one with no database,
only trusted public keys — and optionally a witness file's heads. Given the keys
with their history (``keyring.load_trusted_keys``), it also rejects a head signed
by a key after that key was replaced, by the same rule as ``harbor verify``;
without it, its result notes that this was not checked.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import merkle
from audit.bundle import FORMAT as BUNDLE_FORMAT
from audit.bundle import BundleResult, VerifiedEvent, event_json, state_bytes, trail_lines
from audit.keys import TreeHead, TrustedKeys, now_utc
from audit.leaf import FORMAT as LEAF_FORMAT
from audit.leaf import event_leaf_hash, id_bytes, leaf_hashes

if TYPE_CHECKING:
    from audit.log import AuditLog

CONSISTENCY_FORMAT = "harbor-consistency-proof/1"
INCLUSION_FORMAT = "harbor-inclusion-proof/1"
FORMATS = (CONSISTENCY_FORMAT, INCLUSION_FORMAT)


class ProofUnavailable(Exception):
    """The proof cannot be made as asked (no such head, event not covered, nothing sealed)."""


class ProofDoesNotHold(ProofUnavailable):
    """The stored tree itself fails the proof asked for: the database changed since sealing."""


class NotAProof(Exception):
    """The file is no proof this verifier reads (not JSON, another format or version)."""


# --- export (needs the database) ---------------------------------------------------------------


def make_consistency_proof(
    audit: AuditLog, old_size: int, new_size: int | None = None
) -> dict[str, Any]:
    """The stored heads of ``old_size`` and ``new_size`` (default: the latest) and the proof."""
    heads = _stored_heads(audit)
    old = _head_of_size(heads, old_size)
    new = _head_of_size(heads, new_size) if new_size is not None else _latest(audit)
    if old.tree_size > new.tree_size:
        raise ProofUnavailable(
            f"the old size {old.tree_size} is larger than the new size {new.tree_size}:"
            " a consistency proof runs from an earlier (smaller) head to a later one"
        )
    proof = audit.consistency_proof(old.tree_size, new.tree_size)
    # Refuse rather than hand out a proof the stored tree already contradicts.
    if not merkle.verify_consistency(
        old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof
    ):
        raise ProofDoesNotHold(
            f"the stored tree does not show that the head of size {new.tree_size} extends the"
            f" head of size {old.tree_size}: the log or its heads changed — run `harbor verify`"
        )
    return {
        "format": CONSISTENCY_FORMAT,
        "exported_at": now_utc(),
        "old_head": old.to_json(),
        "new_head": new.to_json(),
        "consistency_proof": [p.hex() for p in proof],
    }


def make_inclusion_proof(audit: AuditLog, position: int, size: int | None = None) -> dict[str, Any]:
    """The event at log ``position`` as stored, its proof, and the head of ``size`` (or latest)."""
    heads = _stored_heads(audit)
    head = _head_of_size(heads, size) if size is not None else _latest(audit)
    # Positions are notification ids (with gaps on PostgreSQL); leaves are indexed by ordinal.
    leaf = audit.store.leaves_for([position]).get(position)
    row = audit.store.events_at([position]).get(position)
    if leaf is None:
        if row is not None:
            raise ProofUnavailable(
                f"the event at log position {position} is not sealed yet: run `harbor seal`"
            )
        raise ProofUnavailable(f"no event is stored at log position {position}")
    ordinal, _ = leaf
    if ordinal >= head.tree_size:
        covering = sorted({h.tree_size for h in heads if h.tree_size > ordinal})
        hint = (
            f"heads that cover it have sizes {_list(covering)}"
            if covering
            else "no stored head covers it yet: run `harbor seal`"
        )
        raise ProofUnavailable(
            f"the tree head of size {head.tree_size} does not cover log position {position}"
            f" (leaf {ordinal}): {hint}"
        )
    if row is None:
        raise ProofDoesNotHold(
            f"the event sealed at log position {position} (leaf {ordinal}) is no longer in the"
            " log — run `harbor verify`"
        )
    proof = audit.inclusion_proofs([ordinal], head.tree_size)[0]
    current = next(leaf_hashes([row]))
    if not merkle.verify_inclusion(current, ordinal, head.tree_size, proof, head.root_hash):
        raise ProofDoesNotHold(
            f"the event at log position {position} (leaf {ordinal}) no longer matches the tree"
            f" head of size {head.tree_size}: it or the tree changed — run `harbor verify`"
        )
    oid = id_bytes(row[1])
    event = {
        "originator_id": str(UUID(bytes=oid)) if isinstance(oid, bytes) else oid,
        "originator_id_kind": "uuid" if isinstance(oid, bytes) else "text",
        **event_json(row, ordinal, current, proof),
    }
    return {
        "format": INCLUSION_FORMAT,
        "leaf_format": LEAF_FORMAT,
        "exported_at": now_utc(),
        "event": event,
        "tree_head": head.to_json(),
    }


def _stored_heads(audit: AuditLog) -> list[TreeHead]:
    heads = audit.store.heads()
    if not heads:
        raise ProofUnavailable("no tree head has been signed yet: run `harbor seal` first")
    return heads


def _latest(audit: AuditLog) -> TreeHead:
    head = audit.store.latest_head()
    assert head is not None  # _stored_heads found one
    return head


def _head_of_size(heads: Sequence[TreeHead], size: int) -> TreeHead:
    """The last head stored with ``size`` (a seal with nothing new repeats a size)."""
    matching = [h for h in heads if h.tree_size == size]
    if matching:
        return matching[-1]
    sizes = sorted({h.tree_size for h in heads})
    below = [s for s in sizes if s < size][-1:]
    above = [s for s in sizes if s > size][:1]
    nearest = below + above
    raise ProofUnavailable(
        f"no tree head of size {size} is stored; the nearest stored"
        + (
            f" sizes are {nearest[0]} and {nearest[1]}"
            if len(nearest) == 2
            else f" size is {nearest[0]}"
        )
        + (
            f" (stored sizes: {_list(sizes)})"
            if len(sizes) <= 5
            else f" ({len(sizes)} sizes stored, from {sizes[0]} to {sizes[-1]})"
        )
    )


def _list(sizes: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(s) for s in sizes[:limit])
    return shown + (f", … ({len(sizes)} in all)" if len(sizes) > limit else "")


# --- offline verification ------------------------------------------------------------------------


@dataclass
class ProofResult:
    """What ``verify_proof`` established: ``proved`` lines when it holds, else ``problems``."""

    kind: str = ""
    heads: list[TreeHead] = field(default_factory=list)
    proved: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not checked, whatever the verdict

    @property
    def malformed(self) -> bool:
        """True when the file is no well-formed proof (a field missing or garbled)."""
        return any(p.startswith(("MALFORMED", "UNSUPPORTED")) for p in self.problems)

    @property
    def ok(self) -> bool:
        """True when every signature and the proof hold."""
        return not self.problems and bool(self.proved)


@dataclass(frozen=True)
class Witness:
    """Tree heads a third party holds (a witness file's lines), and where they came from."""

    name: str
    heads: Sequence[TreeHead]


def load_proof(text: str) -> dict[str, Any]:
    """Parse a proof file's text; NotAProof when it is not a proof this verifier reads."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotAProof(f"not a proof file (invalid JSON: {e})") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt in FORMATS:
        return data  # type: ignore[no-any-return]
    if fmt == BUNDLE_FORMAT:
        raise NotAProof("not a proof file but a member's proof bundle: use `harbor verify-bundle`")
    if isinstance(fmt, str) and fmt.partition("/")[0] in {f.partition("/")[0] for f in FORMATS}:
        raise NotAProof(
            f"not a proof file this verifier reads: format {fmt!r} (it reads {_or(FORMATS)})"
        )
    raise NotAProof(f"not a proof file (expected format {_or(FORMATS)})")


def _or(formats: Sequence[str]) -> str:
    return " or ".join(repr(f) for f in formats)


def verify_proof(
    data: Mapping[str, Any],
    keys: Mapping[str, Ed25519PublicKey] | TrustedKeys,
    witness: Witness | None = None,
) -> ProofResult:
    """Check a proof file offline against trusted public keys (and a witness's heads)."""
    trusted = TrustedKeys.of(keys)
    if data.get("format") == CONSISTENCY_FORMAT:
        result = _verify_consistency(data, trusted, witness)
    elif data.get("format") == INCLUSION_FORMAT:
        result = _verify_inclusion(data, trusted, witness)
    else:
        result = ProofResult(problems=[f"UNSUPPORTED: format {data.get('format')!r}"])
    result.notes.extend(trusted.caveats())
    return result


def _verify_consistency(
    data: Mapping[str, Any], keys: TrustedKeys, witness: Witness | None
) -> ProofResult:
    result = ProofResult(kind="consistency")
    try:
        old = TreeHead.from_json(data["old_head"])
        new = TreeHead.from_json(data["new_head"])
        proof = [bytes.fromhex(str(p)) for p in data["consistency_proof"]]
    except (KeyError, TypeError, ValueError) as e:
        result.problems.append(f"MALFORMED: the proof lacks or garbles a field ({e})")
        return result
    if not _heads_vouched_for(result, [("old", old), ("new", new)], keys, witness):
        return result
    if old.tree_size > new.tree_size:
        result.problems.append(
            f"REVERSED: the old head (size {old.tree_size}) is larger than the new head"
            f" (size {new.tree_size}): a log that only grew has its smaller head first —"
            " the heads were swapped"
        )
        return result
    if old.tree_size == new.tree_size and old.root_hash != new.root_hash:
        result.problems.append(
            f"FORK: both heads sign a log of {old.tree_size} events, with different roots"
            f" ({old.root_hash.hex()[:16]}… and {new.root_hash.hex()[:16]}…): the log was"
            " rewritten, or two different logs were shown"
        )
        return result
    if not merkle.verify_consistency(
        old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof
    ):
        result.problems.append(
            f"NOT CONSISTENT: the proof does not show that the log of {new.tree_size} events"
            f" (signed at {new.signed_at}) extends the log of {old.tree_size} events (signed at"
            f" {old.signed_at}) — its hashes were altered, a head was swapped for another,"
            " or the log was rewritten in between"
        )
        return result
    result.proved.append(
        f"verified: the log of {new.tree_size} events (head signed at {new.signed_at} by key"
        f" {new.key_id}) extends the log of {old.tree_size} events (head signed at"
        f" {old.signed_at} by key {old.key_id}): the first {old.tree_size} events are unchanged"
        " — none edited, removed, reordered or inserted"
    )
    if witness is not None:
        if _witnessed(new, witness):
            result.proved.append(f"both heads are in {witness.name}")
        else:
            result.proved.append(
                f"the old head is in {witness.name}; the new one is newer than every head"
                f" there — its line, to append: {new.witness_line()}"
            )
    return result


def _verify_inclusion(
    data: Mapping[str, Any], keys: TrustedKeys, witness: Witness | None
) -> ProofResult:
    result = ProofResult(kind="inclusion")
    try:
        head = TreeHead.from_json(data["tree_head"])
        raw = data["event"]
        kind = raw["originator_id_kind"]
        if kind not in ("uuid", "text"):
            raise ValueError(f"unknown originator_id_kind {kind!r}")
        originator: UUID | str = (
            UUID(str(raw["originator_id"])) if kind == "uuid" else str(raw["originator_id"])
        )
        version = int(raw["version"])
        topic = str(raw["topic"])
        state = state_bytes(raw)
        position = int(raw["notification_id"])
        ordinal = int(raw["ordinal"])
        recorded_leaf = bytes.fromhex(str(raw["leaf_hash"]))
        proof = [bytes.fromhex(str(p)) for p in raw["inclusion_proof"]]
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        result.problems.append(f"MALFORMED: the proof lacks or garbles a field ({e!r})")
        return result
    if data.get("leaf_format") != LEAF_FORMAT:
        result.problems.append(
            f"UNSUPPORTED: leaf format {data.get('leaf_format')!r}"
            f" (this verifier knows {LEAF_FORMAT})"
        )
        return result
    if not _heads_vouched_for(result, [("", head)], keys, witness):
        return result
    name = topic.rpartition(":")[2]
    label = f"the event at log position {position} (leaf {ordinal}, {name} v{version})"
    leaf = event_leaf_hash(originator, version, topic, state)
    if leaf != recorded_leaf:
        result.problems.append(
            f"ALTERED: {label} does not hash to the leaf recorded for it — its content was"
            " changed after it was sealed"
        )
        return result
    if not merkle.verify_inclusion(leaf, ordinal, head.tree_size, proof, head.root_hash):
        result.problems.append(
            f"NOT PROVED: the inclusion proof of {label} does not lead to the root signed for"
            f" {head.tree_size} events — the proof or the leaf index was altered, or the event"
            " is not what was sealed there"
        )
        return result
    result.proved.append(
        f"verified: {label} of {originator} is in the log of {head.tree_size} events signed at"
        f" {head.signed_at} by key {head.key_id}"
        + (f" (a head in {witness.name})" if witness is not None else "")
    )
    event = VerifiedEvent(version, ordinal, topic, state, notification_id=position)
    result.proved.extend(trail_lines(BundleResult(events=[event])))
    return result


def _heads_vouched_for(
    result: ProofResult,
    heads: Sequence[tuple[str, TreeHead]],
    keys: TrustedKeys,
    witness: Witness | None,
) -> bool:
    """Record each head's signature and witness problems; True when there are none."""
    for role, head in heads:
        what = (
            f"the {role + ' ' if role else ''}tree head"
            f" (size {head.tree_size}, signed at {head.signed_at})"
        )
        problem = keys.head_problem(head)
        if problem is not None:
            label, why = problem
            result.problems.append(f"{label}: {what} is not vouched for — {why}")
            continue
        result.heads.append(head)
        if witness is not None:
            # A third party checks a new head before appending it: only the new head of a
            # consistency proof may be missing, and only when it is newer than all it holds.
            newer = role == "new" and all(h.tree_size < head.tree_size for h in witness.heads)
            unwitnessed = _witness_problem(head, witness, newer)
            if unwitnessed is not None:
                result.problems.append(f"{unwitnessed[0]}: {what} {unwitnessed[1]}")
    return not result.problems


def _witnessed(head: TreeHead, witness: Witness) -> bool:
    return any(
        h.tree_size == head.tree_size and h.root_hash == head.root_hash for h in witness.heads
    )


def _witness_problem(
    head: TreeHead, witness: Witness, may_be_newer: bool
) -> tuple[str, str] | None:
    if _witnessed(head, witness) or may_be_newer:
        return None
    same_size = [h for h in witness.heads if h.tree_size == head.tree_size]
    if same_size:
        return (
            "FORK",
            f"has root {head.root_hash.hex()[:16]}…, but {witness.name} holds a head of that"
            f" size with root {same_size[0].root_hash.hex()[:16]}…: the log was rewritten, or"
            " you are shown a different log than the witness was",
        )
    return (
        "NOT WITNESSED",
        f"is not among the heads in {witness.name} (and is not newer than all of them)",
    )
