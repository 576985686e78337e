"""Plain, bounded JSON: the one parser for request bodies and for stored payloads shown again.

``strict_json`` accepts RFC 8259 JSON within RFC 7493's (I-JSON) limits and the gateway's own: UTF-8,
no duplicate keys, at most ``MAX_JSON_DEPTH`` nested containers, finite numbers, integers that a
double holds exactly, no lone surrogates. Anything else is an ``InvalidInput`` naming the field, so
what passes can always be stored, digested (RFC 8785), and answered again as JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gateway.errors import InvalidInput
from gateway.settings import MAX_JSON_DEPTH

MAX_SAFE_INTEGER = 2**53 - 1
"""Numbers beyond +-(2^53 - 1) are refused: not every reader keeps such integers (RFC 7493 2.2), the
audit digest's canonical JSON (RFC 8785) cannot hold them exactly, and JSON Schema cannot tell an
integer from a float of the same value (1e300 is an ``integer`` to it), so the one bound that the
OpenAPI document can state is on every number."""
_MAX_INT_DIGITS = len(str(MAX_SAFE_INTEGER)) + 1  # longer text is out of range without converting it
_SURROGATE = re.compile("[\ud800-\udfff]")
_FIELD_MAX = 200  # characters of a field name in an error: keys are the caller's, and unbounded


class _Refused:
    """A value the parse hooks could not accept; the walk reports it with its place."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


_NOT_FINITE = _Refused("not a finite number")
_OUT_OF_RANGE = _Refused("a number outside the range a double holds exactly (-(2^53-1)..2^53-1)")


class _Duplicated(dict[str, Any]):
    """An object that had a key twice (JSON leaves this undefined; we refuse it rather than pick one)."""

    __slots__ = ("key",)

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


class _Bad(Exception):
    """Raised by the walk; ``path`` grows as it unwinds, innermost first."""

    def __init__(self, message: str, path: list[str | int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path or []


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                return _Duplicated(pairs, k)
            seen.add(k)
    return d


def _float(text: str) -> float | _Refused:
    value = float(text)
    if not math.isfinite(value):
        return _NOT_FINITE
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else _OUT_OF_RANGE


def _int(text: str) -> int | _Refused:
    if len(text) > _MAX_INT_DIGITS:
        return _OUT_OF_RANGE  # refused before int() would spend time on thousands of digits
    value = int(text)
    return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else _OUT_OF_RANGE


def _constant(_name: str) -> _Refused:
    return _NOT_FINITE  # NaN, Infinity, -Infinity: Python's extension of JSON, not JSON


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_float=_float, parse_int=_int, parse_constant=_constant
)


def _walk(value: Any, depth: int) -> None:
    """Check what the hooks could not: depth, surrogates, and the values they marked."""
    kind = type(value)
    if kind is str:
        if not value.isascii() and _SURROGATE.search(value):
            raise _Bad("a lone surrogate is not text")
    elif kind is dict or kind is _Duplicated:
        if depth > MAX_JSON_DEPTH:
            raise _Bad(f"nested deeper than {MAX_JSON_DEPTH} levels")
        if kind is _Duplicated:
            raise _Bad("duplicate key", [value.key])
        for k, v in value.items():
            if not k.isascii() and _SURROGATE.search(k):
                raise _Bad("a key holds a lone surrogate")
            try:
                _walk(v, depth + 1)
            except _Bad as e:
                e.path.append(k)
                raise
    elif kind is list:
        if depth > MAX_JSON_DEPTH:
            raise _Bad(f"nested deeper than {MAX_JSON_DEPTH} levels")
        for i, v in enumerate(value):
            try:
                _walk(v, depth + 1)
            except _Bad as e:
                e.path.append(i)
                raise
    elif kind is _Refused:
        raise _Bad(value.message)


def _field(path: list[str | int]) -> str:
    """``["x", "payload"]`` (innermost first) -> ``payload.x``, the way ``problems.field_name`` names."""
    out = ""
    for p in reversed(path):
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            # A key is the caller's text: no lone surrogate may reach our answer (it would not encode).
            out += ("." if out else "") + p.encode("utf-8", "replace").decode("utf-8")
    if len(out) > _FIELD_MAX:
        out = out[: _FIELD_MAX - 1] + "…"
    return out or "body"


def strict_json(data: bytes | str) -> Any:
    """Parse JSON as the gateway accepts it, or raise ``InvalidInput`` naming the field.

    Plain and exact JSON only (RFC 8259 with RFC 7493's limits): UTF-8, no duplicate keys, at most
    ``MAX_JSON_DEPTH`` nested containers, finite numbers, integers within +-(2^53 - 1), no lone
    surrogates. Used on every request body and on stored payloads before they are shown again.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise InvalidInput.field("body", "the body is not valid UTF-8") from e
    try:
        value = _DECODER.decode(text)
    except RecursionError as e:
        raise InvalidInput.field("body", f"nested deeper than {MAX_JSON_DEPTH} levels") from e
    except ValueError as e:  # JSONDecodeError is one
        raise InvalidInput.field("body", "the body is not valid JSON") from e
    try:
        _walk(value, 1)
    except _Bad as e:
        raise InvalidInput.field(_field(e.path), e.message) from None
    return value
