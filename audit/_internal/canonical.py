"""RFC 8785 (JSON Canonicalization Scheme) serialisation of audit entries."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from audit._internal.errors import InvalidEntry

_MAX_SAFE_INT = 2**53 - 1
_MAX_NODES = 10_000
"""Values the fast path's type check visits before it leaves an entry to the reference implementation
(so that a cyclic or absurdly large object is refused there, with its reason)."""

_FAST = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False, check_circular=False
)


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as RFC 8785 canonical JSON (UTF-8 bytes).

    These exact bytes are what the log hashes, so two producers of the same entry always produce the
    same leaf. Raises ``InvalidEntry`` for values JSON cannot carry exactly: NaN or infinite floats,
    integers that an IEEE 754 double would round, non-string keys, lone surrogates, or non-JSON types.
    """
    fast = fast_canonical_json(obj)
    return fast if fast is not None else reference_canonical_json(obj)


def fast_canonical_json(obj: Any) -> bytes | None:
    """The RFC 8785 bytes of ``obj`` by the standard library's C encoder, or None when it cannot tell.

    For an object made only of ``dict`` (string keys without characters beyond the Basic Multilingual
    Plane), ``list``, ``str``, ``int`` within ±(2**53 - 1), ``bool`` and ``None`` (exactly those types,
    no subclasses), the C encoder writes exactly the RFC 8785 bytes: the same escapes (``\\"``, ``\\\\``,
    ``\\b\\f\\n\\r\\t``, other controls as lowercase ``\\u00xx``, everything else as itself), no
    whitespace, integers in decimal, and keys sorted by code point, which for BMP-only keys is RFC 8785's
    order by UTF-16 code unit. Floats (ECMAScript number formatting), astral-plane keys, lone surrogates
    and other types return None: the caller uses ``reference_canonical_json``. ``tests/audit/
    test_canonical.py`` checks the equality with hypothesis against ``rfc8785``.
    """
    if not plain_json(obj):
        return None
    try:
        return _FAST.encode(obj).encode("utf-8")
    except (UnicodeEncodeError, RecursionError, ValueError):
        return None  # a lone surrogate, or nesting too deep: the reference refuses it with its reason


def plain_json(obj: Any) -> bool:
    """True when ``obj`` holds only what ``fast_canonical_json`` encodes exactly like RFC 8785.

    Exact types only: a ``str`` or ``int`` subclass (an enum) may encode differently in the two
    implementations, and a parsed copy of the bytes would no longer be equal to the object in type.
    """
    stack = [obj]
    pop, extend = stack.pop, stack.extend
    budget = _MAX_NODES
    while stack:
        value = pop()
        kind = type(value)
        if kind is str or kind is bool or value is None:
            continue
        budget -= 1
        if budget < 0:
            return False
        if kind is dict:
            for key in value:
                # ASCII and BMP keys sort the same by code point and by UTF-16 code unit.
                if type(key) is not str or not (key.isascii() or max(key) <= "\uffff"):
                    return False
            extend(value.values())
        elif kind is list:
            extend(value)
        elif kind is int:
            if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                return False
        else:
            return False  # floats, tuples, subclasses and anything else: the reference path
    return True


def reference_canonical_json(obj: Any) -> bytes:
    """``canonical_json`` by the reference implementation (``rfc8785``), for any value."""
    try:
        return rfc8785.dumps(obj)
    except rfc8785.IntegerDomainError:
        # rfc8785 refuses every integer beyond 2**53 - 1, but JSON numbers are doubles, and parsing our
        # own output of a large float (1e20) gives back such an integer: without this, the log's bytes
        # could not always be re-canonicalised from the parsed entry.
        try:
            return rfc8785.dumps(_as_doubles(obj))
        except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as e:
            raise InvalidEntry(f"not representable as canonical JSON: {e}") from e
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as e:
        raise InvalidEntry(f"not representable as canonical JSON: {e}") from e


def _as_doubles(obj: Any) -> Any:
    """``obj`` with every integer that is the canonical text of a double turned into that double."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | float):
        return obj
    if isinstance(obj, int):
        try:
            as_float = float(obj)
        except OverflowError as e:
            raise InvalidEntry(f"{obj} is too large for a JSON number") from e
        # Accept the integer only if it is the canonical text of a double, so nothing is silently
        # rounded: 2**53 + 1 is refused, the 17-digit text of a large float is accepted.
        if rfc8785.dumps(as_float) != str(obj).encode("ascii"):
            raise InvalidEntry(f"{obj} cannot be held exactly by a JSON number")
        return as_float
    if isinstance(obj, list | tuple):
        return [_as_doubles(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _as_doubles(v) for k, v in obj.items()}
    return obj
