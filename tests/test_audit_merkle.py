"""RFC 9162 hashing against Certificate Transparency's reference vectors, and the leaf encoding."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from uuid import UUID

import pytest

from audit import merkle
from audit.leaf import event_leaf_hash, leaf_bytes, leaf_hashes

VECTORS_PATH = Path(
    os.environ.get("HARBOR_RFC6962_VECTORS")
    or Path(__file__).resolve().parents[2] / "shared" / "vectors" / "rfc6962.json"
)
VECTORS = json.loads(VECTORS_PATH.read_text())
LEAVES = [merkle.leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaf_inputs_hex"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["root_by_tree_size_hex"]]
TREE = merkle.MemoryTree(LEAVES)


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, literally recursive (the definition the fast code must equal)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def test_every_leaf_hash_vector() -> None:
    assert [h.hex() for h in LEAVES] == VECTORS["leaf_hashes_hex"]


@pytest.mark.parametrize("size", range(len(VECTORS["root_by_tree_size_hex"])))
def test_root_of_every_tree_size_vector(size: int) -> None:
    incremental = merkle.CompactRange()
    for h in LEAVES[:size]:
        incremental.append(h)

    assert merkle.root(LEAVES[:size]) == ROOTS[size]
    assert incremental.root() == ROOTS[size]
    assert TREE.root(size) == ROOTS[size]


@pytest.mark.parametrize(
    "vector", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['leaf_index']}of{v['tree_size']}"
)
def test_inclusion_proof_vector(vector: dict[str, object]) -> None:
    index, size = int(str(vector["leaf_index"])), int(str(vector["tree_size"]))
    expected = [bytes.fromhex(str(h)) for h in vector["proof_hex"]]  # type: ignore[attr-defined]

    proof = TREE.inclusion_proof(index, size)

    assert proof == expected
    assert merkle.verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


@pytest.mark.parametrize(
    "vector", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['leaf_index']}of{v['tree_size']}"
)
def test_tampered_inclusion_proofs_are_rejected(vector: dict[str, object]) -> None:
    index, size = int(str(vector["leaf_index"])), int(str(vector["tree_size"]))
    proof = [bytes.fromhex(str(h)) for h in vector["proof_hex"]]  # type: ignore[attr-defined]
    root = ROOTS[size]
    other = (index + 1) % size

    for i in range(len(proof)):
        assert not merkle.verify_inclusion(
            LEAVES[index], index, size, [*proof[:i], _flip(proof[i]), *proof[i + 1 :]], root
        )
    assert not merkle.verify_inclusion(LEAVES[other], index, size, proof, root)  # another leaf
    assert not merkle.verify_inclusion(LEAVES[index], other, size, proof, root)  # another index
    assert not merkle.verify_inclusion(LEAVES[index], index, size, proof[:-1], root)
    assert not merkle.verify_inclusion(LEAVES[index], index, size, [*proof, root], root)
    assert not merkle.verify_inclusion(LEAVES[index], index, size, proof, _flip(root))
    assert not merkle.verify_inclusion(LEAVES[index], size, size, proof, root)  # out of range


@pytest.mark.parametrize(
    "vector", VECTORS["consistency_proofs"], ids=lambda v: f"{v['old_size']}to{v['new_size']}"
)
def test_consistency_proof_vector(vector: dict[str, object]) -> None:
    old, new = int(str(vector["old_size"])), int(str(vector["new_size"]))
    expected = [bytes.fromhex(str(h)) for h in vector["proof_hex"]]  # type: ignore[attr-defined]

    proof = TREE.consistency_proof(old, new)

    assert proof == expected
    assert merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


@pytest.mark.parametrize(
    "vector", VECTORS["consistency_proofs"], ids=lambda v: f"{v['old_size']}to{v['new_size']}"
)
def test_tampered_consistency_proofs_are_rejected(vector: dict[str, object]) -> None:
    old, new = int(str(vector["old_size"])), int(str(vector["new_size"]))
    proof = [bytes.fromhex(str(h)) for h in vector["proof_hex"]]  # type: ignore[attr-defined]

    for i in range(len(proof)):
        assert not merkle.verify_consistency(
            old, new, ROOTS[old], ROOTS[new], [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]
        )
    assert not merkle.verify_consistency(old, new, _flip(ROOTS[old]), ROOTS[new], proof)
    assert not merkle.verify_consistency(old, new, ROOTS[old], _flip(ROOTS[new]), proof)
    if old != new:
        assert not merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], proof[:-1])
        assert not merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], [])
        assert not merkle.verify_consistency(new, old, ROOTS[new], ROOTS[old], proof)
    assert not merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], [*proof, ROOTS[new]])


def test_every_proof_up_to_33_leaves_matches_the_rfc_definition() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(33)]
    tree = merkle.MemoryTree(leaves)

    for size in range(1, 34):
        root = _reference_root(leaves[:size])
        assert tree.root(size) == root
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert merkle.verify_inclusion(leaves[index], index, size, proof, root)
        for old in range(size + 1):
            proof = tree.consistency_proof(old, size)
            assert merkle.verify_consistency(old, size, _reference_root(leaves[:old]), root, proof)


def test_a_compact_range_resumed_from_stored_subtrees_continues_the_same_tree() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(21)]
    first = merkle.CompactRange()
    stored: dict[tuple[int, int], bytes] = {(0, i): h for i, h in enumerate(leaves[:13])}
    for h in leaves[:13]:
        stored.update({(lvl, idx): node for lvl, idx, node in first.append(h)})

    resumed = merkle.CompactRange(13, [stored[k] for k in merkle.perfect_subtrees(13)])
    resumed.extend(leaves[13:])

    assert resumed.root() == _reference_root(leaves)
    assert merkle.root_from(13, lambda lvl, idx: stored[(lvl, idx)]) == _reference_root(leaves[:13])


EVENT = UUID("dbbc208f-76ad-8168-9d56-a1913601ec26")


def test_leaf_bytes_are_length_prefixed_so_fields_cannot_slide_into_each_other() -> None:
    assert leaf_bytes(EVENT, 1, "ab", b"c") != leaf_bytes(EVENT, 1, "a", b"bc")
    assert leaf_bytes(EVENT, 1, "t", b"s") != leaf_bytes(EVENT, 2, "t", b"s")
    assert leaf_bytes(EVENT, 1, "t", b"s")[:2] == b"\x01\x01"  # format 1, a UUID id


def test_both_backends_stored_ids_give_the_same_leaf_and_odd_text_never_passes_for_one() -> None:
    as_uuid = event_leaf_hash(EVENT, 3, "m:E", b"{}")

    assert event_leaf_hash(EVENT.hex, 3, "m:E", b"{}") == as_uuid  # SQLite's 32 hex digits
    assert event_leaf_hash(EVENT.bytes, 3, "m:E", b"{}") == as_uuid  # PostgreSQL's uuid_send
    assert event_leaf_hash(EVENT.hex.upper(), 3, "m:E", b"{}") != as_uuid
    assert event_leaf_hash(str(EVENT), 3, "m:E", b"{}") != as_uuid
    rows = [(1, EVENT.bytes, 3, "m:E", b"{}"), (2, EVENT.hex, 3, "m:E", b""), (3, "x", 3, "", b"")]
    assert list(leaf_hashes(rows)) == [event_leaf_hash(o, v, t, s) for _, o, v, t, s in rows]
