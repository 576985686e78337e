"""The search columns derived from an entry.

The leaf bytes are the record; these columns only make it searchable. Extraction is defensive (any
field may be absent or of the wrong type: then the column is NULL) and deterministic, so the verifier
can re-derive them from the leaf bytes and catch an index edited to hide entries from a search.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from audit._internal.schema import entries, entry_agencies, entry_subjects

ACTOR = "actor"
COUNTERPART = "counterpart"


def _length(table: Table, column: str) -> int:
    length = getattr(table.c[column].type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{table.name}.{column} has no length")
    return length


_LIMITS = {c.name: _length(entries, c.name) for c in entries.c if getattr(c.type, "length", None) is not None}


def _limit(column: str) -> int:
    return _LIMITS[column]


_AGENCY_LIMIT = _length(entry_agencies, "agency")
_PSEUDONYM_LIMIT = _length(entry_subjects, "pseudonym")

# entry key -> column; the value must be a string that fits the column.
_TEXT_FIELDS = {
    "type": "entry_type",
    "caseId": "case_id",
    "purpose": "purpose",
    "informationType": "information_type",
    "traceId": "trace_id",
}


def _text(value: Any, limit: int) -> str | None:
    # Too long for the column means NULL rather than a truncated value that would match wrongly,
    # or a failed insert that would refuse the whole exchange.
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp with an offset, as UTC; None when absent, naive or malformed."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(dt.UTC)


def _agency(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("agency")
    return _text(value, _AGENCY_LIMIT)


@dataclass(frozen=True)
class EntryColumns:
    """Search columns of one entry: the main row, the agencies it names, its subject pseudonyms."""

    row: dict[str, Any]
    agencies: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    subjects: frozenset[str] = field(default_factory=frozenset)


def extract(entry: Mapping[str, Any]) -> EntryColumns:
    """Derive the search columns from an entry (a parsed JSON object)."""
    row: dict[str, Any] = {col: _text(entry.get(key), _limit(col)) for key, col in _TEXT_FIELDS.items()}
    row["entry_time"] = parse_time(entry.get("time"))

    actor = entry.get("actor")
    actor_agency = _agency(actor)
    row["actor_agency"] = actor_agency
    row["actor_client"] = (
        _text(actor.get("clientId"), _limit("actor_client")) if isinstance(actor, Mapping) else None
    )

    # "counterpart" is one agency in the usual case, but accept a list (and "counterparts") too.
    raw: list[Any] = []
    for key in ("counterpart", "counterparts"):
        value = entry.get(key)
        raw.extend(value if isinstance(value, list) else [value])
    counterparts = [a for a in (_agency(v) for v in raw) if a is not None]
    row["counterpart_agency"] = counterparts[0] if counterparts else None

    agencies = {(a, COUNTERPART) for a in counterparts}
    if actor_agency is not None:
        agencies.add((actor_agency, ACTOR))

    subjects: set[str] = set()
    raw_subjects = entry.get("subjects")
    if isinstance(raw_subjects, list):
        for s in raw_subjects:
            if isinstance(s, Mapping):
                s = s.get("pseudonym")
            p = _text(s, _PSEUDONYM_LIMIT)
            if p is not None:
                subjects.add(p)
    return EntryColumns(row=row, agencies=frozenset(agencies), subjects=frozenset(subjects))


def extract_from_leaf(leaf_data: bytes) -> EntryColumns:
    """``extract`` on stored leaf bytes; a leaf that is not a JSON object has no search columns."""
    try:
        parsed = json.loads(leaf_data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        parsed = None
    return extract(parsed if isinstance(parsed, dict) else {})
