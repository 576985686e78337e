"""RFC 8785 (JSON Canonicalization Scheme) serialisation of audit entries."""

from __future__ import annotations

from typing import Any

import rfc8785

from audit._internal.errors import InvalidEntry


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as RFC 8785 canonical JSON (UTF-8 bytes).

    These exact bytes are what the log hashes, so two producers of the same entry always produce the
    same leaf. Raises ``InvalidEntry`` for values JSON cannot carry exactly: NaN or infinite floats,
    integers beyond +-(2**53 - 1), non-string keys, lone surrogates, or non-JSON types.
    """
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as e:
        raise InvalidEntry(f"not representable as canonical JSON: {e}") from e
