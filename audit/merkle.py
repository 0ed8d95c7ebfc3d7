"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs.

SHA-256; a leaf is hashed as ``H(0x00 || data)``, an interior node as
``H(0x01 || left || right)``; the tree of ``n`` leaves splits at the largest
power of two below ``n`` (RFC 9162 §2.1.1). Everything here is iterative.

The tree is addressed by *perfect* subtrees: ``(level, index)`` is the root of
leaves ``[index·2^level, (index+1)·2^level)``; level 0 holds the leaf hashes.
Any root, inclusion proof or consistency proof of a tree of size ``n`` is a
fold of O(log n) such perfect subtrees (plus a few more for proofs), so a store
that keeps them answers every question in O(log² n) lookups, and
``CompactRange`` appends leaves in O(1) amortised hashes while emitting each
perfect subtree as it completes.

Proof generation takes a ``NodeGetter`` — ``get(level, index) -> hash`` — so
the same code runs over an in-memory tree (``MemoryTree``) or over stored
nodes; ``needed_nodes`` lists the nodes a set of proofs will ask for, so a
store can fetch them in one round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeGetter = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof was asked for positions the tree does not have."""


def leaf_hash(data: bytes) -> bytes:
    """``H(0x00 || data)``: the hash of one leaf."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``H(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The perfect subtrees that cover leaves ``[0, size)``: an append-only Merkle accumulator.

    ``append`` returns the interior nodes (level ≥ 1) the new leaf completed,
    as ``(level, index, hash)``, so a caller can store them; ``root`` folds the
    range into the RFC 9162 root of the ``size`` leaves seen so far.
    """

    __slots__ = ("_hashes", "_levels", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Resume at ``size`` with the hashes of ``perfect_subtrees(size)``, largest first."""
        levels = [level for level, _ in perfect_subtrees(size)]
        if len(levels) != len(hashes):
            raise ValueError(
                f"a range of size {size} has {len(levels)} subtrees, not {len(hashes)}"
            )
        self.size = size
        self._levels = levels
        self._hashes = list(hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the interior nodes it completed."""
        levels, hashes = self._levels, self._hashes
        completed: list[tuple[int, int, bytes]] = []
        level, h = 0, leaf
        index = self.size
        while levels and levels[-1] == level:
            levels.pop()
            h = _sha256(NODE_PREFIX + hashes.pop() + h).digest()
            level += 1
            index >>= 1
            completed.append((level, index, h))
        levels.append(level)
        hashes.append(h)
        self.size += 1
        return completed

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add many leaf hashes, discarding the completed nodes."""
        levels, hashes = self._levels, self._hashes
        size = self.size
        for h in leaves:
            level = 0
            while levels and levels[-1] == level:
                levels.pop()
                h = _sha256(NODE_PREFIX + hashes.pop() + h).digest()
                level += 1
            levels.append(level)
            hashes.append(h)
            size += 1
        self.size = size

    def root(self) -> bytes:
        """The RFC 9162 root of the leaves appended so far."""
        return fold(self._hashes)

    @property
    def hashes(self) -> list[bytes]:
        """The perfect subtrees' hashes, largest (leftmost) first."""
        return list(self._hashes)


def fold(subtrees: Sequence[bytes]) -> bytes:
    """Root of adjacent perfect subtrees of strictly decreasing size, left to right."""
    if not subtrees:
        return EMPTY_ROOT
    h = subtrees[-1]
    for left in reversed(subtrees[:-1]):
        h = _sha256(NODE_PREFIX + left + h).digest()
    return h


def root(leaves: Iterable[bytes]) -> bytes:
    """The RFC 9162 root of these leaf hashes (O(n) hashes, O(log n) memory)."""
    acc = CompactRange()
    acc.extend(leaves)
    return acc.root()


def perfect_subtrees(size: int, start: int = 0) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` covering ``[start, start+size)``, left to right.

    ``start`` must be a multiple of the largest power of two not above ``size``
    (true for every range an RFC 9162 tree is split into).
    """
    out: list[tuple[int, int]] = []
    offset = start
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, offset >> level))
            offset += 1 << level
    return out


def _range_hash(start: int, end: int, get: NodeGetter) -> bytes:
    return fold([get(level, index) for level, index in perfect_subtrees(end - start, start)])


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """RFC 9162 §2.1.3.1 ``PATH(index, D[size])``, nearest sibling first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            path.append(_range_hash(lo + k, hi, get))
            hi = lo + k
        else:
            path.append(get(k.bit_length() - 1, lo // k))
            lo += k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, get: NodeGetter) -> list[bytes]:
    """RFC 9162 §2.1.4.1 ``PROOF(old_size, D[new_size])``, deepest node first."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    path: list[bytes] = []
    m, lo, hi, complete = old_size, 0, new_size, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            path.append(_range_hash(lo + k, hi, get))
            hi = lo + k
        else:
            path.append(get(k.bit_length() - 1, lo // k))
            m -= k
            lo += k
            complete = False
    if not complete:
        path.append(_range_hash(lo, hi, get))
    path.reverse()
    return path


def root_from(size: int, get: NodeGetter) -> bytes:
    """The root of the first ``size`` leaves, from perfect subtrees."""
    return _range_hash(0, size, get)


def needed_nodes(
    *,
    roots: Iterable[int] = (),
    inclusions: Iterable[tuple[int, int]] = (),
    consistencies: Iterable[tuple[int, int]] = (),
) -> set[tuple[int, int]]:
    """Every ``(level, index)`` that these roots, (index, size) and (old, new) proofs read."""
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return EMPTY_ROOT

    for size in roots:
        root_from(size, record)
    for index, size in inclusions:
        inclusion_proof(index, size, record)
    for old, new in consistencies:
        consistency_proof(old, new, record)
    return wanted


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` lead from leaf ``index`` to the root of ``size``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha256(NODE_PREFIX + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of ``new_size`` an append-only extension of ``old_size``?"""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha256(NODE_PREFIX + c + fr).digest()
            sr = _sha256(NODE_PREFIX + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class MemoryTree:
    """Every perfect subtree of a list of leaf hashes, level by level (O(n) hashes, 2n memory).

    Level ``L`` is one ``bytes`` of concatenated 32-byte hashes; a trailing
    node without a partner is not promoted, so only perfect subtrees exist.
    """

    def __init__(self, leaves: bytes | Sequence[bytes]) -> None:
        level = leaves if isinstance(leaves, bytes) else b"".join(leaves)
        if len(level) % HASH_SIZE:
            raise ValueError("leaf hashes must be 32 bytes each")
        self.size = len(level) // HASH_SIZE
        self.levels: list[bytes] = [level]
        while len(level) >= 2 * HASH_SIZE:
            view = memoryview(level)
            pairs = len(level) // (2 * HASH_SIZE)
            level = b"".join(
                _sha256(NODE_PREFIX + view[i : i + 2 * HASH_SIZE]).digest()
                for i in range(0, pairs * 2 * HASH_SIZE, 2 * HASH_SIZE)
            )
            self.levels.append(level)

    def get(self, level: int, index: int) -> bytes:
        """The perfect subtree ``(level, index)``."""
        start = index * HASH_SIZE
        if level >= len(self.levels) or start + HASH_SIZE > len(self.levels[level]):
            raise ProofError(f"no complete subtree at level {level}, index {index}")
        return self.levels[level][start : start + HASH_SIZE]

    def leaf(self, index: int) -> bytes:
        """Leaf hash ``index``."""
        return self.get(0, index)

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all)."""
        return root_from(self.size if size is None else size, self.get)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof of leaf ``index`` in the first ``size`` leaves."""
        return inclusion_proof(index, self.size if size is None else size, self.get)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Consistency proof between the first ``old_size`` and ``new_size`` leaves."""
        return consistency_proof(old_size, self.size if new_size is None else new_size, self.get)
