"""The Merkle tree against RFC 6962 known answers, transparency-dev/merkle's vectors, and properties.

Vectors are copied from github.com/transparency-dev/merkle: ``rfc6962/rfc6962_test.go`` (hasher
constants), ``proof/verify_test.go`` (the 8-leaf reference tree, its roots and proofs, and the corruption
probes), ``testdata/consistency/1/happy-path.json``. The properties compare against a naive transcription
of the RFC 9162 §2.1 definitions (MTH, PATH, PROOF) that shares no code with ``audit``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import (
    EMPTY_ROOT,
    InvalidProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from audit._internal.merkle import CompactRange, perfect_levels


def dh(h: str) -> bytes:
    return bytes.fromhex(h)


# -- the RFC, naively ---------------------------------------------------------------------------------


def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *data*, straight from RFC 9162 §2.1.1."""
    if not leaves:
        return _sha(b"")
    if len(leaves) == 1:
        return _sha(b"\x00" + leaves[0])
    k = _k(len(leaves))
    return _sha(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:]))


def naive_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 §2.1.3.1)."""
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*naive_path(m, leaves[:k]), naive_mth(leaves[k:])]
    return [*naive_path(m - k, leaves[k:]), naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) (RFC 9162 §2.1.4.1)."""
    n = len(leaves)
    if m == n:
        return [] if b else [naive_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*naive_subproof(m, leaves[:k], b), naive_mth(leaves[k:])]
    return [*naive_subproof(m - k, leaves[k:], False), naive_mth(leaves[:k])]


def flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    wrong = list(proof)
    b = bytearray(wrong[i])
    b[bit // 8] ^= 1 << (bit % 8)
    wrong[i] = bytes(b)
    return wrong


# -- RFC 6962 hasher constants (rfc6962_test.go) -----------------------------------------------------


def test_hasher_known_answers() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_hash([]) == EMPTY_ROOT
    # The empty tree's root is not the hash of an empty leaf.
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert (
        node_hash(b"N123", b"N456").hex()
        == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_hasher_collisions() -> None:
    h1, h2 = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert h1 != h2
    # Domain separation: an interior node is not the leaf hash of its children's concatenation.
    assert node_hash(h1, h2) != leaf_hash(h1 + h2)
    assert node_hash(h1, h2) != node_hash(h2, h1)


# -- the 8-leaf reference tree (verify_test.go) ------------------------------------------------------

LEAVES = [
    dh(x)
    for x in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    dh("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    dh("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    dh("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    dh("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    dh("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    dh("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (leaf index counting from 1, tree size, proof) as in the Go table.
INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        [
            dh("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            dh("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            dh("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [dh("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            dh("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            dh("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            dh("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            dh("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            dh("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            dh("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            dh("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            dh("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            dh("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            dh("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
SOME_HASH = dh("abacaba000000000000000000000000000000000000000000060061e00123456")
HASHES = [leaf_hash(x) for x in LEAVES]


def test_reference_tree_roots() -> None:
    for size in range(1, 9):
        assert root_hash(HASHES[:size]) == ROOTS[size - 1], size
    assert ROOTS[7].hex().startswith("5dc9da79")


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_vectors(leaf: int, size: int, proof: list[bytes]) -> None:
    index, root = leaf - 1, ROOTS[size - 1]
    assert inclusion_proof(HASHES, index, size) == proof
    assert verify_inclusion(HASHES[index], index, size, proof, root) is True
    # The corruption probes of corruptInclusionProof: each one must fail.
    probes: list[tuple[int, int, bytes, list[bytes], bytes]] = [
        (index - 1, size, HASHES[index], proof, root),
        (index + 1, size, HASHES[index], proof, root),
        (index ^ 2, size, HASHES[index], proof, root),
        (index, size * 2, HASHES[index], proof, root),
        (index, size // 2, HASHES[index], proof, root),
        (index, size, leaf_hash(b"WrongLeaf"), proof, root),
        (index, size, HASHES[index], proof, EMPTY_ROOT),
        (index, size, HASHES[index], proof, SOME_HASH),
        (index, size, HASHES[index], [*proof, root], root),
        (index, size, HASHES[index], [root, *proof], root),
    ]
    probes += [(index, size, HASHES[index], flip(proof, i, 3), root) for i in range(len(proof))]
    if proof:
        probes.append((index, size, HASHES[index], proof[:-1], root))
    if len(proof) > 1:
        probes.append((index, size, HASHES[index], [proof[0], SOME_HASH, *proof[1:]], root))
    for i, (pi, ps, pl, pp, pr) in enumerate(probes):
        with pytest.raises(InvalidProof):
            verify_inclusion(pl, pi, ps, pp, pr)
            pytest.fail(f"probe {i} verified")


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_consistency_vectors(size1: int, size2: int, proof: list[bytes]) -> None:
    root1, root2 = ROOTS[size1 - 1], ROOTS[size2 - 1]
    assert consistency_proof(HASHES, size1, size2) == proof
    assert verify_consistency(size1, size2, proof, root1, root2) is True
    if not proof:
        return
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (size1 - 1, size2, root1, root2, proof),
        (size1 + 1, size2, root1, root2, proof),
        (size1 ^ 2, size2, root1, root2, proof),
        (size1, size2 * 2, root1, root2, proof),
        (size1, size2 // 2, root1, root2, proof),
        (size1, size2, SOME_HASH, root2, proof),
        (size1, size2, root1, SOME_HASH, proof),
        (size1, size2, root2, root1, proof),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*proof, root1]),
        (size1, size2, root1, root2, [*proof, root2]),
        (size1, size2, root1, root2, [root1, *proof]),
        (size1, size2, root1, root2, [root2, *proof]),
        (size1, size2, root1, root2, [proof[0], *proof]),
        (size1, size2, root1, root2, proof[:-1]),
    ]
    probes += [(size1, size2, root1, root2, flip(proof, i, 4)) for i in range(len(proof))]
    for i, (s1, s2, r1, r2, p) in enumerate(probes):
        with pytest.raises(InvalidProof):
            verify_consistency(s1, s2, p, r1, r2)
            pytest.fail(f"probe {i} verified")


def test_consistency_json_vector_1_to_8() -> None:
    """testdata/consistency/1/happy-path.json, and its modified-proof[1]-bit-4 sibling."""
    root1 = base64.b64decode("bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=")
    root2 = base64.b64decode("XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=")
    proof = [
        base64.b64decode(p)
        for p in [
            "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ=",
        ]
    ]
    assert (root1, root2) == (ROOTS[0], ROOTS[7])
    verify_consistency(1, 8, proof, root1, root2)
    with pytest.raises(InvalidProof):
        verify_consistency(1, 8, flip(proof, 1, 4), root1, root2)


def test_inclusion_single_entry_and_bad_sizes() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(h, 0, 1, [], h)
    for leaf, root in [(h, b""), (b"", h), (b"", b"")]:
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, 0, 1, [], root)
    for index, size in [(0, 0), (1, 0), (2, 1)]:
        with pytest.raises(InvalidProof):
            verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


def test_consistency_edge_cases() -> None:
    r = ROOTS[0]
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, ROOTS[4])
    verify_consistency(1, 1, [], r, r)
    failing = [
        (1, 1, [], r, ROOTS[1]),  # equal sizes, different roots
        (1, 0, [], r, EMPTY_ROOT),  # time travel
        (2, 1, [], ROOTS[1], r),
        (1, 2, [], r, ROOTS[1]),  # empty proof
        (0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT),  # non-empty proof where none is needed
        (0, 1, [EMPTY_ROOT], EMPTY_ROOT, r),
        (1, 1, [EMPTY_ROOT], r, r),
        (0, 3, [], r, ROOTS[2]),  # the empty tree has one root only (stricter than Go)
    ]
    for s1, s2, p, r1, r2 in failing:
        with pytest.raises(InvalidProof):
            verify_consistency(s1, s2, p, r1, r2)


def test_inner_shift_case() -> None:
    """fn == sn with fn even: the step a public Python copy gets wrong. Leaf 4 of 5 is such a case."""
    proof = inclusion_proof(HASHES, 4, 5)
    assert proof == naive_path(4, LEAVES[:5])
    verify_inclusion(HASHES[4], 4, 5, proof, ROOTS[4])
    proof = inclusion_proof(HASHES, 4, 7)
    verify_inclusion(HASHES[4], 4, 7, proof, ROOTS[6])


# -- properties --------------------------------------------------------------------------------------

leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=24)


@settings(max_examples=40, deadline=None)
@given(leaf_lists)
def test_every_proof_of_a_random_tree_verifies(leaves: list[bytes]) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    for size in range(1, len(leaves) + 1):
        root = naive_mth(leaves[:size])
        assert root_hash(hashes[:size]) == root
        for index in range(size):
            proof = inclusion_proof(hashes, index, size)
            assert proof == naive_path(index, leaves[:size])
            verify_inclusion(hashes[index], index, size, proof, root)
        for size1 in range(1, size + 1):
            proof = consistency_proof(hashes, size1, size)
            assert proof == (naive_subproof(size1, leaves[:size], True) if size1 < size else [])
            verify_consistency(size1, size, proof, naive_mth(leaves[:size1]), root)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(min_value=2, max_value=300))
def test_a_flipped_bit_fails(data: st.DataObject, n: int) -> None:
    leaves = [i.to_bytes(2, "big") for i in range(n)]
    hashes = [leaf_hash(x) for x in leaves]
    size = data.draw(st.integers(2, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = root_hash(hashes[:size])
    proof = inclusion_proof(hashes, index, size)
    verify_inclusion(hashes[index], index, size, proof, root)
    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(InvalidProof):
        verify_inclusion(
            hashes[index], index, size, flip(proof, data.draw(st.integers(0, len(proof) - 1)), bit), root
        )
    with pytest.raises(InvalidProof):
        verify_inclusion(flip([hashes[index]], 0, bit)[0], index, size, proof, root)
    with pytest.raises(InvalidProof):
        verify_inclusion(hashes[index], index, size, proof, flip([root], 0, bit)[0])

    size1 = data.draw(st.integers(1, size - 1), label="size1")
    root1 = root_hash(hashes[:size1])
    cproof = consistency_proof(hashes, size1, size)
    verify_consistency(size1, size, cproof, root1, root)
    with pytest.raises(InvalidProof):
        verify_consistency(
            size1, size, flip(cproof, data.draw(st.integers(0, len(cproof) - 1)), bit), root1, root
        )
    with pytest.raises(InvalidProof):
        verify_consistency(size1, size, cproof, flip([root1], 0, bit)[0], root)
    with pytest.raises(InvalidProof):
        verify_consistency(size1, size, cproof, root1, flip([root], 0, bit)[0])


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=2000), st.data())
def test_proofs_of_large_trees_match_the_rfc(n: int, data: st.DataObject) -> None:
    leaves = [i.to_bytes(2, "big") for i in range(n)]
    hashes = [leaf_hash(x) for x in leaves]
    index = data.draw(st.integers(0, n - 1))
    assert root_hash(hashes) == naive_mth(leaves)
    assert inclusion_proof(hashes, index) == naive_path(index, leaves)
    size1 = data.draw(st.integers(1, n))
    expected = naive_subproof(size1, leaves, True) if size1 < n else []
    assert consistency_proof(hashes, size1) == expected


def test_every_proof_up_to_64_leaves() -> None:
    leaves = [bytes([i]) for i in range(64)]
    hashes = [leaf_hash(x) for x in leaves]
    for size in range(1, 65):
        root = naive_mth(leaves[:size])
        for index in range(size):
            verify_inclusion(hashes[index], index, size, inclusion_proof(hashes, index, size), root)
        for size1 in range(1, size + 1):
            proof = consistency_proof(hashes, size1, size)
            verify_consistency(size1, size, proof, naive_mth(leaves[:size1]), root)


def test_perfect_levels_are_the_rfc_subtrees_and_what_appends_make() -> None:
    """Each level holds MTH of every whole aligned subtree (RFC 9162 §2.1.1), the nodes appends yield."""
    leaves = [bytes([i]) for i in range(45)]
    hashes = [leaf_hash(x) for x in leaves]
    levels = perfect_levels(hashes)
    assert [len(level) for level in levels] == [45, 22, 11, 5, 2, 1]
    for k, level in enumerate(levels):
        for i, h in enumerate(level):
            assert h == naive_mth(leaves[i << k : (i + 1) << k]), (k, i)
    appended = CompactRange()
    made = {(k, i): h for leaf in hashes for k, i, h in appended.append(leaf)}
    assert made == {(k, i): h for k, level in enumerate(levels[1:], 1) for i, h in enumerate(level)}
    assert perfect_levels([]) == [[]]
    assert perfect_levels(hashes[:1]) == [hashes[:1]]
