"""The Merkle tree over Harbor's event log: catching up leaves, roots, proofs, sealing.

Leaves are appended in log order by reading the recorder's notifications after
the last leaf; every perfect subtree a new leaf completes is stored with it in
the same transaction. Two sealers racing (threads or processes) compute the
same leaves from the same log, and the ordinal primary key lets only one of
them write: the other reads the new tail and carries on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError

from audit import merkle
from audit.keys import Signer, TreeHead
from audit.leaf import leaf_hashes
from audit.storage import AuditError as AuditError  # raised here; imported from here
from audit.storage import AuditStore, KeyRecord, Node

CATCH_UP_BATCH = 10_000
MAX_CONFLICTS = 20

Progress = Callable[[int], None]


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
                        # No sealer keeps losing this race: a row Harbor never wrote sits
                        # where the next leaf or node must go.
                        raise AuditError(
                            f"cannot add the leaves after leaf {size - 1}: the audit tables"
                            " already hold a leaf or node where they must go, which no seal"
                            " wrote; run `harbor verify` to find it"
                        ) from None
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

    def without_leaves(self) -> int:
        """How many events have no leaf yet (what the next seal hashes)."""
        return self.store.count_events_after(self.store.tail()[1])

    def unsealed(self) -> int:
        """How many events no stored tree head covers yet (with a leaf or not: a seal that
        failed after adding leaves signed nothing)."""
        head = self.store.latest_head()
        if head is None or head.tree_size == 0:
            return self.store.count_events_after(None)
        last = self.store.leaf_at(head.tree_size - 1)
        if last is None:  # the leaf table lost it: all after the tail, as far as is known
            return self.store.count_events_after(self.store.tail()[1])
        return self.store.count_events_after(last)

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
        ``witness_file``). Refuses when the log no longer extends the largest stored head,
        or the largest head in ``witness_file``."""
        self.catch_up(progress=progress)
        if witness_file is None:
            return self._sign(signer, None)
        # Sealers sharing a witness file take turns, or one could read another's witness
        # line before that head is stored and take it for deleted heads.
        with witness_lock(witness_file, exclusive=True):
            return self._sign(signer, witness_file)

    def _sign(self, signer: Signer, witness_file: Path | None) -> TreeHead:
        # Read in the order heads are written (leaves, witness line, stored head), so a
        # racing sealer's head is never larger than the size read last.
        witnessed = last_witness_head(witness_file) if witness_file is not None else None
        previous = self.store.latest_head()
        size = self.size()  # read after the heads: a racing sealer wrote its leaves before them
        if witnessed is not None and previous is None:
            raise AuditError(
                f"the database has no tree head, but the witness file {witness_file} has one of"
                f" size {witnessed.tree_size} signed at {witnessed.signed_at}: the heads were"
                " deleted or this is another log; not signing — run `harbor verify`, and if"
                " the file belongs to another store, give this one its own HARBOR_WITNESS_FILE"
                " and HARBOR_SIGNING_KEY"
            )
        earlier = [h for h in (previous, witnessed) if h is not None]
        consistencies = [(h.tree_size, size) for h in earlier if h.tree_size <= size]
        get = self.node_getter(roots=[size], consistencies=consistencies)
        root = merkle.root_from(size, get)
        checks = ((previous, "stored"), (witnessed, f"in the witness file {witness_file}"))
        for head, where in checks:
            if head is None:
                continue
            extends = head.tree_size <= size and merkle.verify_consistency(
                head.tree_size,
                size,
                head.root_hash,
                root,
                merkle.consistency_proof(head.tree_size, size, get),
            )
            if not extends:
                raise AuditError(
                    f"the log of {size} events is not an extension of the tree head {where},"
                    f" signed at {head.signed_at} (size {head.tree_size}); not signing —"
                    " run `harbor verify`"
                    + (
                        ", and if the witness file belongs to another store, give this one its"
                        " own HARBOR_WITNESS_FILE and HARBOR_SIGNING_KEY"
                        if head is witnessed
                        else ""
                    )
                )
        self._ensure_key_usable(signer)
        head = signer.sign_head(size, root)
        if witness_file is not None:
            # The witness line goes first: if it cannot be written, no head is stored, so a
            # failing witness file cannot make heads pile up that no witness ever saw.
            length = witness_file.stat().st_size
            try:
                append_witness_line(witness_file, head)
            except OSError as e:
                # A line cut short (a full disk) would fail every later verify: take it back.
                with contextlib.suppress(OSError):
                    os.truncate(witness_file, length)
                raise AuditError(
                    f"cannot append the tree head to the witness file {witness_file}: {e};"
                    " no head was stored — fix the file (space, permissions) and seal again"
                ) from e
            try:
                self.store.add_head(head)
            except BaseException:
                # No head stored, no witness line: a line for a head the database never
                # held would block the next seals and fail every verify. (The file is
                # still locked by this sealer.)
                os.truncate(witness_file, length)
                raise
            return head
        self.store.add_head(head)
        return head

    def _ensure_key_usable(self, signer: Signer) -> None:
        records = self.store.public_keys()
        if not any(k.key_id == signer.key_id for k in records):
            raise AuditError(
                f"the signing key {signer.key_id} is not registered in this database:"
                " run `harbor keys init` (or `harbor keys rotate`) against it"
            )
        successor = next((k for k in records if k.endorsed_by == signer.key_id), None)
        if successor is not None:
            raise AuditError(
                f"the signing key {signer.key_id} was retired at {successor.created_at} by key"
                f" {successor.key_id}; not signing with it — put the new key at the configured"
                " HARBOR_SIGNING_KEY path"
            )

    def keep_key(self, record: KeyRecord) -> None:
        """Register a public key (no-op when the same id is already kept)."""
        if not any(k.key_id == record.key_id for k in self.store.public_keys()):
            self.store.add_key(record)


def append_witness_line(path: Path, head: TreeHead) -> None:
    """Append one head to a plain-text witness file (one write, flushed to disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        line = (head.witness_line() + "\n").encode("ascii")
        end = os.fstat(fd).st_size
        # A line cut short by an earlier failed write must not swallow this one.
        if end and os.pread(fd, 1, end - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"only {written} of {len(line)} bytes were written")
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def witness_lock(path: Path | None, *, exclusive: bool) -> Iterator[None]:
    """A lock on a sealers' witness file: a sealer's exclusive one from a head's witness
    line to its stored row, a verifier's shared one while it reads heads and lines (no-op
    for a verifier without the file; a sealer creates it)."""
    if path is None:
        yield
        return
    try:
        if exclusive:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        else:
            fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        if not exclusive:
            if isinstance(e, FileNotFoundError):
                yield
                return
            raise
        raise AuditError(
            f"cannot open the witness file {path}: {e}; nothing was signed —"
            " fix the file (space, permissions) and seal again"
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def last_witness_head(path: Path) -> TreeHead | None:
    """The largest head in a witness file (None when the file is missing or has none)."""
    try:
        entries = read_witness_file(path)
    except FileNotFoundError:
        return None
    heads = [e for _, e in entries if isinstance(e, TreeHead)]
    return max(heads, key=lambda h: h.tree_size, default=None)


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
