"""RFC 8785 canonical JSON: the bytes the log hashes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import InvalidEntry, canonical_json


def test_keys_sorted_no_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "x"]}) == b'{"a":[true,null,"x"],"b":1}'


def test_rfc8785_examples() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units, so U+1F600 (a surrogate pair) sorts before U+FB33.
    obj = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(obj)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    # §3.2.2.3 numbers, ECMAScript style.
    assert (
        canonical_json([1e21, 1e-7, 0.000001, 333333333.33333329, -0.0])
        == b"[1e+21,1e-7,0.000001,333333333.3333333,0]"
    )
    assert canonical_json("\u20ac\n\x1f") == '"\u20ac\\n\\u001f"'.encode()


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), 2**53 + 1, 10**400, {1: "x"}, object(), "\ud800", {"a": {1, 2}}]
)
def test_unrepresentable_values_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidEntry):
        canonical_json(bad)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.text(max_size=8) | st.from_regex(r"[a-zA-Z]{0,8}", fullmatch=True), inner, max_size=5
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_canonical_bytes_are_stable_under_a_parse(value: Any) -> None:
    data = canonical_json(value)
    # What a privacy officer re-canonicalises from the parsed entry is exactly what was hashed.
    assert canonical_json(json.loads(data)) == data


def test_large_integers_a_double_holds_exactly_are_numbers() -> None:
    assert canonical_json(2**53) == b"9007199254740992"
    assert (
        canonical_json({"n": [10**20]}) == canonical_json({"n": [1e20]}) == b'{"n":[100000000000000000000]}'
    )


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_the_fast_path_writes_the_reference_bytes(value: Any) -> None:
    """Whatever path canonical_json takes, its bytes are those of the reference implementation."""
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        return
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {
            "b": 1,
            "a": {
                "\u00e9": "\x00\x1f\x7f\u2028\ud7ff\ue000\U0001f600",
                "z": [True, False, None, -(2**53) + 1],
            },
        },
        {"\u00e9": 1, "e": 2, "\ue000": 3, "\U0001f600": 4},  # non-ASCII keys take the reference path
        ['"\\\b\f\n\r\t', 0, -0, 2**53 - 1],
        (1, 2),
    ],
)
def test_escapes_and_key_order_match_the_reference(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


# Exactly what the fast path takes: no floats, keys from the whole BMP (and some astral ones, which it
# must leave to the reference), strings with controls, quotes and non-ASCII characters.
_bmp_text = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=8)
plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text() | _bmp_text,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            _bmp_text | st.text(max_size=4) | st.sampled_from(["a", "B", "\ue000"]), inner, max_size=6
        )
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(plain_values)
def test_fast_canonical_json_is_rfc8785_byte_for_byte(value: Any) -> None:
    from audit._internal.canonical import fast_canonical_json, plain_json

    fast = fast_canonical_json(value)
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        assert fast is None  # a lone surrogate: refused by both, the reference says why
        return
    if fast is None:
        # Left to the reference only for what it cannot order: keys beyond the BMP, or a surrogate.
        assert not plain_json(value) or any(
            "\ud800" <= c <= "\udfff" for c in json.dumps(value, ensure_ascii=False)
        )
        return
    assert fast == expected
    # The search columns are taken from the object itself on this path: it must be exactly what a
    # parse of the bytes gives back (same values, same types), as the verifier only has the bytes.
    assert json.loads(fast) == value


def test_the_fast_path_leaves_floats_subclasses_and_astral_keys_to_the_reference() -> None:
    import enum

    from audit._internal.canonical import fast_canonical_json

    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    for value in (1.0, {"a": [0.5]}, {"\U0001f600": 1}, [Colour.RED], {"k": Name("x")}, (1, 2), 2**53):
        assert fast_canonical_json(value) is None
    assert fast_canonical_json({"\ufb33": 1, "\u20ac": 2}) == '{"\u20ac":2,"\ufb33":1}'.encode()
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidEntry):
        canonical_json(cyclic)
