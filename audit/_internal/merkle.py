"""RFC 6962 / RFC 9162 Merkle tree: hashing, proofs, and proof verification.

Leaf hash ``SHA-256(0x00 || data)``, interior node ``SHA-256(0x01 || left || right)``, and the root of
the empty tree is ``SHA-256("")`` (RFC 9162 §2.1.1). Verification follows RFC 9162 §2.1.3.2 and
§2.1.4.2 step by step, so that any RFC 9162 client checks our proofs and we check theirs.

Proof *generation* is expressed over "perfect nodes": the hash of an aligned, complete subtree of
``2**level`` leaves, named ``(level, index)`` and covering leaves ``[index << level, (index + 1) << level)``.
Every subtree the RFC recursion visits is a run of such nodes, so a store that keeps every perfect node
(which is what ``SqlAuditStore`` does) answers any proof with O(log n) lookups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from audit._internal.errors import InvalidProof

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root hash of the empty tree, SHA-256 of the empty string (not the hash of an empty leaf)."""

NodeKey = tuple[int, int]
"""``(level, index)`` of a perfect subtree: leaves ``[index << level, (index + 1) << level)``."""

NodeReader = Callable[[Iterable[NodeKey]], Mapping[NodeKey, bytes]]
"""Looks up perfect-node hashes; must return every key asked for."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162 §2.1.1: the largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The perfect subtrees that make up leaves ``[0, size)``, largest first: O(log n) hashes.

    Appending a leaf merges equal-sized neighbours, which yields exactly the new perfect nodes the store
    must persist; folding the range from the right gives the RFC 6962 root.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(
                f"a compact range of size {size} has {size.bit_count()} hashes, not {len(hashes)}"
            )
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    def copy(self) -> CompactRange:
        """An independent copy (the store appends to a copy and keeps it only after the commit)."""
        return CompactRange(self._size, self._hashes)

    def hashes(self) -> list[bytes]:
        """The perfect subtrees' hashes, largest first (a copy)."""
        return list(self._hashes)

    def append_subtree(self, level: int, subtree: bytes) -> list[tuple[int, int, bytes]]:
        """Add the hash of a perfect subtree of ``2**level`` leaves; the size must be a multiple of that.

        Returns the new perfect nodes above ``level``. ``append`` is the case ``level == 0``.
        """
        if self._size & ((1 << level) - 1):
            raise ValueError(f"a subtree of level {level} cannot start at leaf {self._size}")
        self._hashes.append(subtree)
        self._size += 1 << level
        created: list[tuple[int, int, bytes]] = []
        while (self._size >> level) & 1 == 0:
            right = self._hashes.pop()
            left = self._hashes.pop()
            level += 1
            merged = node_hash(left, right)
            self._hashes.append(merged)
            created.append((level, (self._size >> level) - 1, merged))
        return created

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns the new perfect nodes ``(level, index, hash)`` of level >= 1."""
        self._hashes.append(leaf)
        self._size += 1
        created: list[tuple[int, int, bytes]] = []
        level = 0
        # Each trailing 1-bit of the old size is a same-sized subtree to merge with.
        while (self._size >> level) & 1 == 0:
            right = self._hashes.pop()
            left = self._hashes.pop()
            level += 1
            merged = node_hash(left, right)
            self._hashes.append(merged)
            created.append((level, (self._size >> level) - 1, merged))
        return created

    def root(self) -> bytes:
        """The RFC 6962 root of ``[0, size)``."""
        return fold(self._hashes) if self._hashes else EMPTY_ROOT


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash a run of perfect subtrees (largest first) into the RFC 6962 hash of their union."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def perfect_levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    """Every perfect subtree over a run of leaf hashes that starts aligned, level by level.

    ``levels[k][i]`` is the hash of leaves ``[i << k, (i + 1) << k)`` of the run (``levels[0]`` is the
    run itself), for every such subtree the run holds whole; the run must start at a multiple of the
    largest power of two not above its length for these to be the tree's own perfect nodes. The same
    hashes as ``CompactRange.append`` yields leaf by leaf, a level at a time (the verifier's hot path).
    """
    levels = [leaf_hashes]
    below = leaf_hashes
    sha256 = hashlib.sha256
    while len(below) > 1:
        # An odd last hash has no partner yet: it is in no perfect subtree above its own.
        pairs = zip(below[0::2], below[1::2], strict=False)
        below = [sha256(b"\x01" + left + right).digest() for left, right in pairs]
        levels.append(below)
    return levels


def root_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of a list of leaf hashes (``EMPTY_ROOT`` for none)."""
    cr = CompactRange()
    for h in leaf_hashes:
        cr.append(h)
    return cr.root()


def range_nodes(start: int, end: int) -> list[NodeKey]:
    """The perfect nodes, largest first, whose union is the subtree ``[start, end)``.

    Valid for every subtree the RFC recursion produces: its start is aligned to the largest
    power of two not above its size.
    """
    nodes: list[NodeKey] = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def frontier_nodes(size: int) -> list[NodeKey]:
    """The perfect nodes of a ``CompactRange`` of ``size`` leaves."""
    return range_nodes(0, size)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Subtrees whose hashes form PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), leaf end first."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Subtrees whose hashes form PROOF(size1, D[0:size2]) (RFC 9162 §2.1.4.1), in proof order."""
    if not 0 <= size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == 0 or size1 == size2:
        return []
    ranges: list[tuple[int, int]] = []
    start, end, m = 0, size2, size1
    whole = True  # SUBPROOF's b: the subtree is still the old tree's root, known to the verifier
    while m != end:
        k = _largest_power_of_two_below(end - start)
        if m - start <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def hashes_for_ranges(ranges: Sequence[tuple[int, int]], read: NodeReader) -> list[bytes]:
    """Hash each subtree from stored perfect nodes, with one ``read`` call for all of them."""
    decomposed = [range_nodes(s, e) for s, e in ranges]
    wanted = {key for keys in decomposed for key in keys}
    found = read(wanted) if wanted else {}
    return [fold([found[key] for key in keys]) for keys in decomposed]


def _memory_reader(leaf_hashes: Sequence[bytes]) -> NodeReader:
    def read(keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        return {(lv, i): root_hash(leaf_hashes[i << lv : (i + 1) << lv]) for lv, i in keys}

    return read


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, tree_size: int | None = None) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf ``index`` in the first ``tree_size`` of ``leaf_hashes``.

    An in-memory helper for small trees and tests; the store answers proofs from stored nodes.
    """
    size = len(leaf_hashes) if tree_size is None else tree_size
    if size > len(leaf_hashes):
        raise ValueError(f"tree size {size} exceeds the {len(leaf_hashes)} leaves given")
    return hashes_for_ranges(inclusion_ranges(index, size), _memory_reader(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int | None = None) -> list[bytes]:
    """RFC 9162 consistency proof between the trees of the first ``size1`` and ``size2`` leaves."""
    size = len(leaf_hashes) if size2 is None else size2
    if size > len(leaf_hashes):
        raise ValueError(f"tree size {size} exceeds the {len(leaf_hashes)} leaves given")
    return hashes_for_ranges(consistency_ranges(size1, size), _memory_reader(leaf_hashes))


def _require_hash(what: str, value: bytes) -> None:
    # A short "hash" can never match a real one, but refusing it early gives a clear reason and keeps
    # truncated or padded encodings from reaching the comparison.
    if len(value) != HASH_SIZE:
        raise InvalidProof(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Check an RFC 9162 §2.1.3.2 inclusion proof: True, or ``InvalidProof`` with the reason.

    Never returns False, so both ``assert verify_inclusion(...)`` and a bare call fail closed.
    ``leaf`` is the leaf *hash* (``leaf_hash(leaf_data)``), not the data.
    """
    _require_hash("leaf hash", leaf)
    _require_hash("root hash", root)
    for i, p in enumerate(proof):
        _require_hash(f"proof[{i}]", p)
    # 1. leaf_index must be inside the tree.
    if not 0 <= index < tree_size:
        raise InvalidProof(f"leaf index {index} is not in a tree of size {tree_size}")
    # 2. fn = leaf_index, sn = tree_size - 1; 3. r = leaf hash.
    fn, sn = index, tree_size - 1
    r = leaf
    # 4. walk the path.
    for p in proof:
        # a. a path longer than the tree is tall fails.
        if sn == 0:
            raise InvalidProof("inclusion proof is longer than the tree is tall")
        # b. p is a left sibling when fn is odd, or when fn is the last node of its level.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # The RFC's inner shift: skip levels where this node has no right sibling. Leaving it
            # out (as one public Python copy does) rejects valid proofs whenever fn == sn and fn is even.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # c. up one level.
        fn >>= 1
        sn >>= 1
    # 5. sn must have reached 0 and r must equal the root.
    if sn != 0:
        raise InvalidProof("inclusion proof is shorter than the tree is tall")
    if r != root:
        raise InvalidProof("inclusion proof does not lead to the root hash")
    return True


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """Check an RFC 9162 §2.1.4.2 consistency proof: True, or ``InvalidProof`` with the reason.

    Never returns False, so both ``assert verify_consistency(...)`` and a bare call fail closed.

    Edge cases the RFC leaves to the caller: equal sizes need an empty proof and equal roots; size 0
    needs an empty proof and ``root1 == EMPTY_ROOT`` (stricter than accepting any root1).
    """
    _require_hash("root1", root1)
    _require_hash("root2", root2)
    for i, c in enumerate(proof):
        _require_hash(f"proof[{i}]", c)
    if not 0 <= size1 <= size2:
        raise InvalidProof(f"no consistency from size {size1} to size {size2}")
    if size1 == 0:
        if proof:
            raise InvalidProof("a consistency proof from the empty tree must be empty")
        if root1 != EMPTY_ROOT:
            raise InvalidProof("root1 of the empty tree is not SHA-256 of the empty string")
        if size2 == 0 and root2 != EMPTY_ROOT:
            raise InvalidProof("root2 of the empty tree is not SHA-256 of the empty string")
        return True
    if size1 == size2:
        if proof:
            raise InvalidProof("a consistency proof between equal sizes must be empty")
        if root1 != root2:
            raise InvalidProof("equal tree sizes with different roots")
        return True
    # 1. an empty path fails.
    if not proof:
        raise InvalidProof("consistency proof is empty")
    path = list(proof)
    # 2. when the old tree is a perfect subtree, its root is the path's implicit first element.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # 3.
    fn, sn = size1 - 1, size2 - 1
    # 4. skip the levels where the old tree's last node is a right child.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        # a.
        if sn == 0:
            raise InvalidProof("consistency proof is longer than the tree is tall")
        # b.
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        # c.
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise InvalidProof("consistency proof is shorter than the tree is tall")
    if fr != root1:
        raise InvalidProof("consistency proof does not lead to root1")
    if sr != root2:
        raise InvalidProof("consistency proof does not lead to root2")
    return True
