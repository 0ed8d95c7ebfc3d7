"""The Merkle tree over Harbor's event log: catching up leaves, roots, proofs, sealing.

Leaves are appended in log order by reading the recorder's notifications after
the last leaf; every perfect subtree a new leaf completes is stored with it in
the same transaction. Two sealers racing (threads or processes) compute the
same leaves from the same log, and the ordinal primary key lets only one of
them write: the other reads the new tail and carries on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError

from audit import merkle
from audit.keys import Signer, TreeHead
from audit.leaf import leaf_hashes
from audit.storage import AuditStore, KeyRecord, Node

CATCH_UP_BATCH = 10_000
MAX_CONFLICTS = 20

Progress = Callable[[int], None]


class AuditError(Exception):
    """The audit log cannot do what was asked (and says what to do instead)."""


class AuditLog:
    """Leaves, nodes and signed tree heads for one registry's event log."""

    def __init__(self, recorder: Any, store: AuditStore | None = None) -> None:
        self.recorder = recorder
        self.store = store or AuditStore.for_recorder(recorder)
        self._lock = threading.Lock()

    # --- leaves -------------------------------------------------------------------

    def catch_up(self, *, batch: int = CATCH_UP_BATCH, progress: Progress | None = None) -> int:
        """Append a leaf for every event not yet in the tree; returns how many were added."""
        added = conflicts = 0
        with self._lock:
            size, last_id = self.store.tail()
            compact = self._compact_range(size)
            while True:
                page = self._notifications_after(last_id, batch)
                if not page:
                    return added
                leaves: list[tuple[int, int, bytes]] = []
                nodes: list[Node] = []
                attempt = merkle.CompactRange(compact.size, compact.hashes)
                rows = [
                    (n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in page
                ]
                for (nid, *_), h in zip(rows, leaf_hashes(rows), strict=True):
                    leaves.append((attempt.size, nid, h))
                    nodes.extend(attempt.append(h))
                try:
                    self.store.append(leaves, nodes)
                except IntegrityError:
                    # Another sealer appended these first: resume from its tail.
                    conflicts += 1
                    if conflicts > MAX_CONFLICTS:
                        raise
                    size, last_id = self.store.tail()
                    compact = self._compact_range(size)
                    continue
                compact, last_id = attempt, page[-1].id
                added += len(page)
                if progress is not None:
                    progress(len(page))
                if len(page) < batch:
                    return added

    def _notifications_after(self, last_id: int | None, limit: int) -> Sequence[Any]:
        if last_id is None:
            return self.recorder.select_notifications(None, limit)  # type: ignore[no-any-return]
        return self.recorder.select_notifications(  # type: ignore[no-any-return]
            last_id, limit, inclusive_of_start=False
        )

    def _compact_range(self, size: int) -> merkle.CompactRange:
        keys = merkle.perfect_subtrees(size)
        found = self.store.nodes(keys)
        missing = [k for k in keys if k not in found]
        if missing:
            raise AuditError(
                f"the stored Merkle tree lacks the subtrees {missing} of its first {size} leaves;"
                " run `harbor verify`"
            )
        return merkle.CompactRange(size, [found[k] for k in keys])

    def size(self) -> int:
        """How many leaves the tree has."""
        return self.store.tail()[0]

    def unsealed(self) -> int:
        """How many events have no leaf yet."""
        return self.store.count_events_after(self.store.tail()[1])

    # --- roots and proofs -----------------------------------------------------------------

    def node_getter(
        self,
        *,
        roots: Iterable[int] = (),
        inclusions: Iterable[tuple[int, int]] = (),
        consistencies: Iterable[tuple[int, int]] = (),
    ) -> merkle.NodeGetter:
        """A getter holding every stored node these roots and proofs need (one read per level)."""
        wanted = merkle.needed_nodes(
            roots=roots, inclusions=inclusions, consistencies=consistencies
        )
        found = self.store.nodes(wanted)

        def get(level: int, index: int) -> bytes:
            try:
                return found[(level, index)]
            except KeyError:
                raise AuditError(
                    f"the stored Merkle tree has no subtree at level {level}, index {index};"
                    " run `harbor verify`"
                ) from None

        return get

    def root(self, size: int) -> bytes:
        """The root of the first ``size`` leaves."""
        return merkle.root_from(size, self.node_getter(roots=[size]))

    def inclusion_proofs(self, indexes: Sequence[int], size: int) -> list[list[bytes]]:
        """Inclusion proofs of these leaves in the tree of ``size``."""
        get = self.node_getter(inclusions=[(i, size) for i in indexes])
        return [merkle.inclusion_proof(i, size, get) for i in indexes]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """Proof that the tree of ``new_size`` extends the tree of ``old_size``."""
        get = self.node_getter(consistencies=[(old_size, new_size)])
        return merkle.consistency_proof(old_size, new_size, get)

    # --- tree heads -------------------------------------------------------------------------

    def seal(
        self, signer: Signer, witness_file: Path | None = None, progress: Progress | None = None
    ) -> TreeHead:
        """Catch up, then sign and store a tree head for the whole log (and append it to
        ``witness_file``). Refuses when the log no longer extends the largest stored head."""
        self.catch_up(progress=progress)
        previous = self.store.latest_head()
        size = self.size()  # read after the head: a racing sealer wrote its leaves before it
        consistencies = (
            [(previous.tree_size, size)] if previous and previous.tree_size <= size else []
        )
        get = self.node_getter(roots=[size], consistencies=consistencies)
        root = merkle.root_from(size, get)
        if previous is not None:
            proof = merkle.consistency_proof(previous.tree_size, size, get) if consistencies else []
            if not consistencies or not merkle.verify_consistency(
                previous.tree_size, size, previous.root_hash, root, proof
            ):
                raise AuditError(
                    f"the log of {size} events is not an extension of the tree head signed at"
                    f" {previous.signed_at} (size {previous.tree_size}); not signing —"
                    " run `harbor verify`"
                )
        self._ensure_key_kept(signer)
        head = signer.sign_head(size, root)
        self.store.add_head(head)
        if witness_file is not None:
            append_witness_line(witness_file, head)
        return head

    def _ensure_key_kept(self, signer: Signer) -> None:
        if not any(k.key_id == signer.key_id for k in self.store.public_keys()):
            raise AuditError(
                f"the signing key {signer.key_id} is not registered in this database:"
                " run `harbor keys init` (or `harbor keys rotate`) against it"
            )

    def keep_key(self, record: KeyRecord) -> None:
        """Register a public key (no-op when the same id is already kept)."""
        if not any(k.key_id == record.key_id for k in self.store.public_keys()):
            self.store.add_key(record)


def append_witness_line(path: Path, head: TreeHead) -> None:
    """Append one head to a plain-text witness file (one write, flushed to disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (head.witness_line() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_witness_file(path: Path) -> list[tuple[int, TreeHead | str]]:
    """(line number, head — or why the line is not one) for every non-blank line."""
    out: list[tuple[int, TreeHead | str]] = []
    # Bytes that are not UTF-8 become U+FFFD: that line is then reported as no tree head.
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append((number, TreeHead.from_witness_line(line)))
        except ValueError as e:
            out.append((number, str(e)))
    return out
