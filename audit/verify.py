"""``harbor verify``: recompute the tree from the stored events and check every signed head.

What is checked, in order:

1. every stored event up to the last leaf is hashed again (``audit.leaf``) and
   compared with the stored leaf hashes; the first position that differs is
   named with the kind of change — *edited* (the event there is not the one
   sealed), *missing* (the sealed event is gone), *reordered* (it is still in
   the log, at another position), *extra* (an event that was never sealed sits
   among sealed ones). When the events still match every signed tree head but
   the leaf table does not, the leaf table is what was changed;
2. the stored interior nodes against the ones recomputed from the events (they
   localise a rewrite of both the events and their leaves);
3. every tree head: its signature (with the trusted public keys), its root
   against the root of that many recomputed leaves, and a consistency proof
   between each head and the next larger one (the log only grew);
4. every line of the witness files given, the same way;
5. the public keys kept in the database: ids, and each rotation's endorsement
   by the key it replaced — or, given a key history (the ``keys.json`` of the
   folder ``harbor keys export`` wrote), that the database's key records agree
   with it.

A head signed by a key at or after its endorsed successor's creation is
rejected. Those rotations come from the key history when one is given (the
auditor's copy: a database edit cannot hide a rotation from it), else from the
database's key records, and the report's notes say so.

Events after the largest tree head that verifies are counted as *unsealed*: nothing
proves them yet (a seal that failed after adding leaves leaves events with leaves but
no head).
"""

from __future__ import annotations

import itertools
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import merkle

# ``retirements`` is the rule the offline verifiers share; it is also imported from here.
from audit.keyring import endorsement_verifies, forks
from audit.keyring import retirements as retirements
from audit.keys import (
    KeyHistory,
    KeyProblem,
    Retirement,
    TreeHead,
    TrustedKeys,
    head_signature_problem,
    key_id,
    parse_public_pem,
)
from audit.leaf import leaf_hashes, row_problem
from audit.log import AuditError, AuditLog, read_witness_file, witness_lock
from audit.storage import AuditStore, EventRow, KeyRecord, Leaf

H = merkle.HASH_SIZE
_NO_HASH = b"\xff" * H  # stands for a stored leaf hash that is not one
T = TypeVar("T")

# Kinds of finding, most specific first.
EDITED, MISSING, REORDERED, EXTRA = "edited", "missing", "reordered", "extra"
LEAF_TABLE, NODE_TABLE = "leaf-table", "node-table"
TREE_HEAD, SIGNATURE, CONSISTENCY, WITNESS, KEY = (
    "tree-head",
    "signature",
    "consistency",
    "witness",
    "key",
)

Advance = Callable[[int], None]

FROM_DATABASE = "database"
GIVEN_HISTORY = "given"  # retirements passed in by a caller, with no keys.json to name
RETIREMENT_FROM_DATABASE = (
    "the public keys and their rotations (which retire a key) were taken from the database's"
    " key records: whoever can rewrite the database can change them — an auditor verifies with"
    " their own copy, `--keys DIR` with the folder (and keys.json) `harbor keys export` wrote"
)
RETIREMENT_FROM_DATABASE_NOT_YOURS = (
    "key retirement was taken from the database's key records, not from your keys: no key"
    " history (the keys.json that `harbor keys export DIR` writes beside the public keys) came"
    " with them, so a rotation deleted from the database would leave a retired (e.g. leaked)"
    " key's later heads passing — verify with that folder as --keys"
)
# Both causes are possible and look the same from here; only the auditor can tell which.
_EDITED_OR_STALE = (
    ": either the database's key history was edited (a deleted or altered rotation makes"
    " a retired, possibly leaked, key look current), or your copy is stale or was not"
    " exported from this database. Key retirement was taken from your copy. Get a fresh"
    " `harbor keys export` from the operator and compare: if it only adds keys rotated"
    " since your copy (check each one's endorsement), replace your copy with it;"
    " otherwise treat the database's key records as tampered with"
)


@dataclass(frozen=True)
class Finding:
    """One thing that no longer holds; ``position`` is a leaf ordinal (0-based) when known."""

    kind: str
    message: str
    position: int | None = None


@dataclass
class Report:
    """What ``verify_log`` checked and what it found."""

    leaves: int = 0
    events_checked: int = 0
    unsealed: int = 0
    heads: int = 0
    witness_heads: int = 0
    findings: list[Finding] = field(default_factory=list)
    # What the verdict leaves unchecked or where it took its trust from; not problems.
    notes: list[str] = field(default_factory=list)
    # The keys.json that said which keys were retired, FROM_DATABASE or GIVEN_HISTORY.
    retirement_from: str = FROM_DATABASE

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings

    @property
    def first(self) -> Finding | None:
        """The headline finding (leaf-level findings come before those about heads)."""
        return self.findings[0] if self.findings else None


def trusted_keys_from_store(
    audit: AuditLog, report: Report, records: Sequence[KeyRecord] | None = None
) -> dict[str, Ed25519PublicKey]:
    """The public keys kept in the database, checked (ids, rotation endorsements)."""
    if records is None:
        records = audit.store.public_keys()
    keys: dict[str, Ed25519PublicKey] = {}
    for record in records:
        try:
            key = parse_public_pem(record.public_pem)
        except KeyProblem as e:
            report.findings.append(Finding(KEY, f"public key {record.key_id}: {e}"))
            continue
        if key_id(key) != record.key_id:
            report.findings.append(
                Finding(
                    KEY,
                    f"public key {record.key_id} is stored under the wrong id"
                    f" (its id is {key_id(key)})",
                )
            )
            continue
        keys[record.key_id] = key
    for record in records:
        if record.endorsed_by is not None and not endorsement_verifies(record, keys):
            report.findings.append(
                Finding(
                    KEY,
                    f"key {record.key_id} claims to replace {record.endorsed_by},"
                    " but that key's endorsement of it does not verify",
                )
            )
    return keys


def key_history_findings(records: Sequence[KeyRecord], history: KeyHistory) -> list[Finding]:
    """Where the database's key records and a trusted key history (keys.json) disagree."""
    source = history.source
    stored = {record.key_id: record for record in records}
    listed = {entry.key_id for entry in history.entries}
    findings = []
    for entry in history.entries:
        record = stored.get(entry.key_id)
        if record is None:
            if entry.endorsed_by is None:
                what = (
                    f"key {entry.key_id} (created at {entry.created_at}, as {source} records)"
                    " is missing from the database's key records"
                )
            else:
                what = (
                    f"key {entry.key_id}: the rotation in which it replaced key"
                    f" {entry.endorsed_by} at {entry.created_at}, as {source} records, is"
                    " missing from the database's key records — the database alone would leave"
                    f" key {entry.endorsed_by} current and its later heads passing"
                )
            findings.append(Finding(KEY, what + _EDITED_OR_STALE))
            continue
        differences = []
        if record.created_at != entry.created_at:
            differences.append(
                f"created at {record.created_at} according to the database, at"
                f" {entry.created_at} according to {source}"
            )
        if record.endorsed_by != entry.endorsed_by:
            differences.append(
                f"replaced {_key_or_none(record.endorsed_by)} according to the database,"
                f" {_key_or_none(entry.endorsed_by)} according to {source}"
            )
        elif record.endorsement != entry.endorsement:
            differences.append(f"its endorsement differs from the one in {source}")
        if differences:
            findings.append(
                Finding(
                    KEY,
                    f"key {entry.key_id}: the database's key record disagrees with {source}: "
                    + "; ".join(differences)
                    + _EDITED_OR_STALE,
                )
            )
    for record in records:
        if record.key_id not in listed:
            findings.append(
                Finding(
                    KEY,
                    f"key {record.key_id} (created at {record.created_at}, replacing"
                    f" {_key_or_none(record.endorsed_by)}, according to the database) is among"
                    f" the database's key records but not in {source}"
                    + _EDITED_OR_STALE,
                )
            )
    return findings


def _key_or_none(kid: str | None) -> str:
    return "no key" if kid is None else f"key {kid}"


def _keys_and_retirement(
    audit: AuditLog,
    records: Sequence[KeyRecord],
    trusted_keys: Mapping[str, Ed25519PublicKey] | TrustedKeys | None,
    report: Report,
) -> tuple[dict[str, Ed25519PublicKey], Mapping[str, Retirement]]:
    """The keys to check signatures with, and when each was retired (see the module doc)."""
    if trusted_keys is None:
        keys = trusted_keys_from_store(audit, report, records)
        report.notes.append(RETIREMENT_FROM_DATABASE)
        report.findings += [Finding(KEY, fork) for fork in forks(records, keys)]
        return keys, retirements(records, keys)
    trusted = TrustedKeys.of(trusted_keys)
    keys = dict(trusted.keys)
    report.notes.extend(trusted.notes)
    if trusted.retired is None:
        report.notes.append(RETIREMENT_FROM_DATABASE_NOT_YOURS)
        report.findings += [Finding(KEY, fork) for fork in forks(records, keys)]
        return keys, retirements(records, keys)
    report.retirement_from = GIVEN_HISTORY
    if trusted.history is not None:
        report.retirement_from = str(trusted.history.source)
        report.findings.extend(key_history_findings(records, trusted.history))
    report.findings += [Finding(KEY, fork) for fork in trusted.forks]
    return keys, trusted.retired


def verify_log(
    audit: AuditLog,
    *,
    trusted_keys: Mapping[str, Ed25519PublicKey] | TrustedKeys | None = None,
    witness_files: Sequence[Path] = (),
    sealer_witness: Path | None = None,
    lock_file: Path | None = None,
    check_nodes: bool = True,
    advance: Advance | None = None,
) -> Report:
    """Check the whole log; see the module docstring for what is checked.

    ``trusted_keys``: None trusts the database's keys; bare public keys trust only those,
    with retirement still from the database; the ``TrustedKeys`` of ``load_trusted_keys``
    with a key history take retirement from that history and compare it with the database.
    ``sealer_witness`` is the witness file the sealers append to: every stored head must be
    in it (a third party's copy may lag behind, so other witness files need not hold all).
    ``lock_file`` (default ``sealer_witness``): the sealers' file, locked shared while the
    heads and witness lines are read, even when it is not one of the files checked."""
    report = Report()
    store = audit.store
    step: Advance = advance or (lambda n: None)

    # Heads and witness lines first: a head is stored (and witnessed) only after its leaves,
    # so none read now can cover more than the leaves read next, even if a seal runs meanwhile.
    witness_paths = list(witness_files)
    if sealer_witness is not None and sealer_witness not in witness_paths:
        witness_paths.append(sealer_witness)
    # Shared on the sealers' file: a seal holds it exclusively from its witness line to its
    # stored head, so the heads and the lines read here are never half of one seal.
    with witness_lock(lock_file or sealer_witness, exclusive=False):
        head_rows = store.head_rows()
        witnessed = {path: _read_witness(path, report) for path in witness_paths}

    # 1. stored leaves, then the events they should hash (read ahead on another thread)
    stored = bytearray()
    stored_ids = array("q")
    for page in _read_ahead(store.leaf_pages()):
        first = page[0][0]
        if (first != len(stored_ids) or page[-1][0] - first != len(page) - 1) and not any(
            f.kind == LEAF_TABLE for f in report.findings
        ):
            gap = next(i for i, row in enumerate(page, len(stored_ids)) if row[0] != i)
            report.findings.append(
                Finding(LEAF_TABLE, f"leaf {gap}: missing from the leaf table", gap)
            )
        _extend_leaves(stored, stored_ids, page)
        step(len(page))
    report.leaves = len(stored_ids)
    last_id = stored_ids[-1] if stored_ids else None

    current = bytearray()
    current_ids = array("q")
    if last_id is not None:
        for rows in _read_ahead(store.event_pages(None, stop=last_id)):
            current += b"".join(leaf_hashes(rows))
            current_ids.extend([row[0] for row in rows])
            step(len(rows))
    report.events_checked = len(current_ids)
    report.unsealed = store.count_events_after(last_id)

    tree = merkle.MemoryTree(bytes(current))
    for problem in (h for h in head_rows if isinstance(h, str)):
        report.findings.append(Finding(TREE_HEAD, problem))
    heads = sorted(
        (h for h in head_rows if isinstance(h, TreeHead)), key=lambda h: (h.tree_size, h.signed_at)
    )
    report.heads = len(heads)
    keys, retired = _keys_and_retirement(audit, store.public_keys(), trusted_keys, report)
    covered = next(
        (
            h.tree_size
            for h in reversed(heads)
            if h.tree_size <= tree.size
            and head_signature_problem(h, keys, retired) is None
            and tree.root(h.tree_size) == h.root_hash
        ),
        0,
    )
    report.unsealed += max(0, report.events_checked - covered)

    # the first change, or else 2. the stored interior nodes
    if current != stored:
        report.findings.insert(
            0,
            _leaf_finding(
                audit, stored, stored_ids, current, current_ids, heads, keys, retired, tree
            ),
        )
    else:
        if stored_ids != current_ids:
            pairs = enumerate(zip(stored_ids, current_ids, strict=True))
            k = next(i for i, (s, c) in pairs if s != c)
            report.findings.insert(
                0,
                Finding(
                    LEAF_TABLE,
                    f"leaf {k}: the leaf table was altered — it names notification id"
                    f" {stored_ids[k]}, but the event sealed at this position has id"
                    f" {current_ids[k]}",
                    k,
                ),
            )
        if check_nodes:
            node_finding = _node_finding(audit, tree)
            if node_finding is not None:
                report.findings.append(node_finding)
    if check_nodes:
        report.findings += _stray_findings(store, report.leaves)

    # 3. tree heads
    _check_heads(heads, keys, retired, tree, report)

    # 4. witness files, and whether they and the stored heads still agree
    stored_heads = set(heads)
    unstored = {
        entry
        for lines in witnessed.values()
        for _, entry in lines or ()
        if isinstance(entry, TreeHead) and entry not in stored_heads
    }
    if unstored:
        # A copy of the sealers' file synced after the heads were read may hold a head
        # stored since: heads are only ever added, so read them again before blaming them.
        stored_heads |= {h for h in store.head_rows() if isinstance(h, TreeHead)} & unstored
    for path, lines in witnessed.items():
        if lines is not None:
            _check_witness(path, lines, keys, retired, tree, report)
            _compare_heads(path, lines, stored_heads, path == sealer_witness, report)
    return report


def _extend_leaves(stored: bytearray, stored_ids: array[int], page: list[Leaf]) -> None:
    try:
        joined = b"".join([row[2] for row in page])
        if len(joined) == H * len(page):
            stored += joined
            stored_ids.extend([row[1] for row in page])
            return
    except TypeError:
        pass
    # An edited leaf row (a hash of the wrong type or length, an id that is no integer)
    # becomes a hash and an id nothing can match, so it is reported at its position.
    for _, nid, h in page:
        stored += h if isinstance(h, bytes) and len(h) == H else _NO_HASH
        stored_ids.append(nid if type(nid) is int else -1)


def _read_witness(path: Path, report: Report) -> list[tuple[int, TreeHead | str]] | None:
    try:
        return read_witness_file(path)
    except OSError as e:
        # Nothing is known about the log from a file that cannot be read: a usage error
        # (exit 2), not a finding.
        raise AuditError(
            f"cannot read the witness file {path}: {e.strerror or e}; give the path of the"
            " witness file itself (a file the sealers append to, or your copy of it)"
        ) from None


def _compare_heads(
    path: Path,
    lines: list[tuple[int, TreeHead | str]],
    stored_heads: set[TreeHead],
    sealers_file: bool,
    report: Report,
) -> None:
    seen = set()
    for number, entry in lines:
        if not isinstance(entry, TreeHead):
            continue
        seen.add(entry)
        if entry not in stored_heads:
            report.findings.append(
                Finding(
                    TREE_HEAD,
                    f"witness {path}, line {number}: the tree head of size {entry.tree_size}"
                    f" signed at {entry.signed_at} is not among the database's tree heads:"
                    " stored heads were deleted or replaced",
                )
            )
    if not sealers_file:
        return
    # The sealer writes the witness line before it stores the head, so every stored head
    # must be in its witness file.
    for head in sorted(stored_heads - seen, key=lambda h: (h.tree_size, h.signed_at)):
        report.findings.append(
            Finding(
                WITNESS,
                f"witness {path}: the stored tree head of size {head.tree_size} signed at"
                f" {head.signed_at} is not in the sealers' witness file: lines were removed"
                " (or the file emptied or replaced)",
            )
        )


def _read_ahead(pages: Iterator[list[T]], depth: int = 2) -> Iterator[list[T]]:
    """Iterate ``pages`` while a thread fetches the next ones (the database works meanwhile)."""
    queue: Queue[list[T] | BaseException | None] = Queue(maxsize=depth)
    stop = threading.Event()

    def fetch() -> None:
        try:
            for page in pages:
                if stop.is_set():
                    return
                queue.put(page)
            queue.put(None)
        except BaseException as e:  # handed to the reader, raised there
            queue.put(e)

    thread = threading.Thread(target=fetch, name="harbor-verify-read", daemon=True)
    thread.start()
    try:
        while True:
            item = queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a fetcher waiting on a full queue
            try:
                queue.get_nowait()
            except Empty:
                thread.join(0.01)


def _hashes(buf: bytes | bytearray) -> list[bytes]:
    return [bytes(buf[i : i + H]) for i in range(0, len(buf), H)]


def _first_difference(a: bytes | bytearray, b: bytes | bytearray) -> int:
    """First leaf index where the two hash sequences differ (binary search on prefixes)."""
    n = min(len(a), len(b)) // H
    lo, hi = 0, n  # the prefixes of length lo agree; find the first index in [lo, n) that differs
    view_a, view_b = memoryview(a), memoryview(b)
    while lo < hi:
        mid = (lo + hi) // 2
        if view_a[: (mid + 1) * H] == view_b[: (mid + 1) * H]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _describe(audit: AuditLog, nid: int) -> str:
    row = audit.store.events_at([nid]).get(nid)
    if row is None:
        return f"notification id {nid}"
    return _describe_row(row)


def _describe_row(row: EventRow) -> str:
    nid, oid, version, topic, state = row
    ident = oid.hex() if isinstance(oid, bytes) else str(oid)
    kind = topic.rpartition(":")[2] if isinstance(topic, str) else repr(topic)
    text = f"notification id {nid}: {kind}, stream {ident}, version {version!r}"
    problem = row_problem(oid, version, topic, state)
    return text if problem is None else f"{text}; its columns were edited: {problem}"


def _leaf_finding(
    audit: AuditLog,
    stored: bytearray,
    stored_ids: array[int],
    current: bytearray,
    current_ids: array[int],
    heads: list[TreeHead],
    keys: Mapping[str, Ed25519PublicKey],
    retired: Mapping[str, Retirement],
    tree: merkle.MemoryTree,
) -> Finding:
    k = _first_difference(stored, current)
    # Which side changed? If every validly signed head covering k still matches the
    # events, the events are as sealed and the leaf table is what was altered.
    covering = [
        h for h in heads if h.tree_size > k and head_signature_problem(h, keys, retired) is None
    ]
    if covering and all(
        h.tree_size <= tree.size and tree.root(h.tree_size) == h.root_hash for h in covering
    ):
        return Finding(
            LEAF_TABLE,
            f"leaf {k}: the leaf table was altered — the events still match every signed"
            " tree head, but the stored leaf hash does not",
            k,
        )
    s_list, c_list = _hashes(stored), _hashes(current)
    s_index = {h: i for i, h in enumerate(s_list)}
    c_index = {h: i for i, h in enumerate(c_list)}
    sk = s_list[k] if k < len(s_list) else None
    ck = c_list[k] if k < len(c_list) else None
    sealed_id = stored_ids[k] if k < len(stored_ids) else None
    if ck is None or (sk is not None and sk not in c_index and s_index.get(ck, -1) > k):
        return Finding(
            MISSING,
            f"leaf {k}: missing — the event sealed at this position (notification id"
            f" {sealed_id}) is no longer in the log",
            k,
        )
    if sk is None or (ck not in s_index and c_index.get(sk, -1) > k):
        return Finding(
            EXTRA,
            f"leaf {k}: extra — an event that was never sealed ({_describe(audit, current_ids[k])})"
            " stands where the sealed log has "
            + (f"notification id {sealed_id}" if sealed_id is not None else "no event"),
            k,
        )
    if ck in s_index and sk in c_index:
        now_at = c_index[sk]
        return Finding(
            REORDERED,
            f"leaf {k}: reordered — the event sealed at this position (notification id"
            f" {sealed_id}) is now at position {now_at} (notification id {current_ids[now_at]}),"
            f" and position {k} holds the event sealed at position {s_index[ck]}",
            k,
        )
    return Finding(
        EDITED,
        f"leaf {k}: edited — the stored event ({_describe(audit, current_ids[k])}) is not"
        " the one that was sealed at this position",
        k,
    )


def _node_finding(audit: AuditLog, tree: merkle.MemoryTree) -> Finding | None:
    for level in range(1, len(tree.levels)):
        computed = tree.levels[level]
        expected = 0  # the next index the level should hold
        for page in _read_ahead(audit.store.node_pages(level)):
            try:
                joined = b"".join([h for _, h in page])
            except TypeError:  # a hash edited to another type: the loop below names it
                joined = b""
            if (
                joined
                and page[0][0] == expected
                and page[-1][0] - expected == len(page) - 1
                and computed[expected * H : expected * H + len(joined)] == joined
            ):
                expected += len(page)
                continue
            for index, h in page:
                if index * H >= len(computed) and index >= expected:
                    break  # beyond the leaves read: a seal's since, or stray (_stray_findings)
                if index != expected or computed[index * H : (index + 1) * H] != h:
                    return _node_mismatch(level, min(index, expected))
                expected += 1
        if expected * H != len(computed):
            return _node_mismatch(level, expected)
    return None


def _stray_findings(store: AuditStore, size: int) -> list[Finding]:
    """Rows outside every position the tree has (added by hand): each would also stop the
    next seal that reaches its place."""
    leaves, nodes = store.stray_rows(size)
    found = []
    if leaves:
        found.append(Finding(
            LEAF_TABLE,
            f"the leaf table holds {len(leaves)} row(s) at negative ordinals (first {leaves[0]}),"
            " which no seal writes: the audit tables were altered — keep a copy for the"
            " investigation, then delete them",
        ))  # fmt: skip
    if nodes:
        level, index = nodes[0]
        found.append(Finding(
            NODE_TABLE,
            f"the node table holds {len(nodes)} row(s) outside the tree of the stored leaves"
            f" (first: level {level}, index {index}), which no seal writes: the audit tables"
            " were altered, and sealing stops when the tree reaches such a row — keep a copy"
            " for the investigation, then delete them",
        ))  # fmt: skip
    return found


def _node_mismatch(level: int, index: int) -> Finding:
    first, last = index << level, ((index + 1) << level) - 1
    return Finding(
        NODE_TABLE,
        f"leaves {first}–{last}: the stored subtree (level {level}, index {index}) is missing or"
        " does not match the events — the events and their leaf hashes were both rewritten"
        " somewhere in this range, or the node table was altered",
        first,
    )


def _check_heads(
    heads: list[TreeHead],
    keys: Mapping[str, Ed25519PublicKey],
    retired: Mapping[str, Retirement],
    tree: merkle.MemoryTree,
    report: Report,
) -> None:
    for head in heads:
        label = f"tree head of size {head.tree_size} signed at {head.signed_at}"
        problem = head_signature_problem(head, keys, retired)
        if problem is not None:
            report.findings.append(Finding(SIGNATURE, f"{label}: {problem}"))
        if head.tree_size > tree.size:
            report.findings.append(
                Finding(
                    TREE_HEAD,
                    f"{label}: covers {head.tree_size} events, but the sealed log now has"
                    f" only {tree.size}",
                    tree.size,
                )
            )
        elif tree.root(head.tree_size) != head.root_hash:
            report.findings.append(
                Finding(
                    TREE_HEAD,
                    f"{label}: its root no longer matches the first {head.tree_size} events",
                )
            )
    for older, newer in itertools.pairwise(heads):
        if newer.tree_size > tree.size:
            break
        proof = tree.consistency_proof(older.tree_size, newer.tree_size)
        if not merkle.verify_consistency(
            older.tree_size, newer.tree_size, older.root_hash, newer.root_hash, proof
        ):
            report.findings.append(
                Finding(
                    CONSISTENCY,
                    f"tree heads of sizes {older.tree_size} ({older.signed_at}) and"
                    f" {newer.tree_size} ({newer.signed_at}) are not consistent: the log"
                    " between them was not only appended to",
                )
            )


def _check_witness(
    path: Path,
    lines: list[tuple[int, TreeHead | str]],
    keys: Mapping[str, Ed25519PublicKey],
    retired: Mapping[str, Retirement],
    tree: merkle.MemoryTree,
    report: Report,
) -> None:
    for number, entry in lines:
        where = f"witness {path}, line {number}"
        if isinstance(entry, str):
            report.findings.append(Finding(
                WITNESS,
                f"{where}: {entry} — edited by hand, or cut short while a seal wrote it (a"
                " crash or a full disk); compare it with a third party's copy of the file",
            ))  # fmt: skip
            continue
        report.witness_heads += 1
        problem = head_signature_problem(entry, keys, retired)
        if problem is not None:
            report.findings.append(Finding(WITNESS, f"{where}: {problem}"))
        elif entry.tree_size > tree.size:
            report.findings.append(
                Finding(
                    WITNESS,
                    f"{where}: the witness saw {entry.tree_size} sealed events"
                    f" ({entry.signed_at}); the database's tree now covers only {tree.size}",
                    tree.size,
                )
            )
        elif tree.root(entry.tree_size) != entry.root_hash:
            report.findings.append(
                Finding(
                    WITNESS,
                    f"{where}: the first {entry.tree_size} events no longer have the root the"
                    f" witness kept ({entry.signed_at}): history was rewritten",
                )
            )
