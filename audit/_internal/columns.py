"""The search columns derived from an entry.

The leaf bytes are the record; these columns only make it searchable. Extraction is defensive (any
field may be absent or of the wrong type: then the column is NULL) and deterministic, so the verifier
can re-derive them from the leaf bytes and catch an index edited to hide entries from a search.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
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
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
        return None


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
    row = dict(zip(ENTRY_COLUMNS, extract_values(entry), strict=True))
    agencies, subjects = _agencies(entry, row), _subjects(entry)
    return EntryColumns(row=row, agencies=frozenset(agencies), subjects=frozenset(subjects))


ENTRY_COLUMNS = (
    "entry_type",
    "case_id",
    "purpose",
    "information_type",
    "trace_id",
    "entry_time",
    "actor_agency",
    "actor_client",
    "counterpart_agency",
)
"""The search columns of ``audit_entries``, in the order ``extract_values`` returns them."""

_TYPE_LIMIT, _CASE_LIMIT, _PURPOSE_LIMIT, _INFO_LIMIT, _TRACE_LIMIT, _CLIENT_LIMIT = (
    _limit(c) for c in ("entry_type", "case_id", "purpose", "information_type", "trace_id", "actor_client")
)


def extract_values(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values of ``ENTRY_COLUMNS`` for an entry: ``extract(entry).row`` as a tuple, but faster."""
    return _values(entry, _counterparts(entry))


def _values(entry: Mapping[str, Any], counterparts: list[str]) -> tuple[Any, ...]:
    # The hot path of every append and of the verifier, so written out rather than looped: the same
    # rules for every field (a string that fits its column, else NULL).
    get = entry.get
    actor = get("actor")
    if isinstance(actor, Mapping):
        actor_agency = _text(actor.get("agency"), _AGENCY_LIMIT)
        actor_client = _text(actor.get("clientId"), _CLIENT_LIMIT)
    else:
        actor_agency, actor_client = _text(actor, _AGENCY_LIMIT), None
    return (
        _text(get("type"), _TYPE_LIMIT),
        _text(get("caseId"), _CASE_LIMIT),
        _text(get("purpose"), _PURPOSE_LIMIT),
        _text(get("informationType"), _INFO_LIMIT),
        _text(get("traceId"), _TRACE_LIMIT),
        parse_time(get("time")),
        actor_agency,
        actor_client,
        counterparts[0] if counterparts else None,
    )


def _counterparts(entry: Mapping[str, Any]) -> list[str]:
    # "counterpart" is one agency in the usual case, but accept a list (and "counterparts") too.
    found: list[str] = []
    for key in ("counterpart", "counterparts"):
        value = entry.get(key)
        for v in value if isinstance(value, list) else (value,):
            a = _agency(v)
            if a is not None:
                found.append(a)
    return found


def _agencies(entry: Mapping[str, Any], row: Mapping[str, Any]) -> set[tuple[str, str]]:
    agencies = {(a, COUNTERPART) for a in _counterparts(entry)}
    actor_agency = row["actor_agency"]
    if actor_agency is not None:
        agencies.add((actor_agency, ACTOR))
    return agencies


def _subjects(entry: Mapping[str, Any]) -> set[str]:
    subjects: set[str] = set()
    raw_subjects = entry.get("subjects")
    if isinstance(raw_subjects, list):
        for s in raw_subjects:
            if isinstance(s, Mapping):
                s = s.get("pseudonym")
            p = _text(s, _PSEUDONYM_LIMIT)
            if p is not None:
                subjects.add(p)
    return subjects


def extract_rows(
    entry: Mapping[str, Any], *, sqlite_time: bool = False
) -> tuple[tuple[Any, ...], list[tuple[str, str]], list[str]]:
    """``extract`` as the store writes it: the column values, then the sorted agency and subject rows.

    With ``sqlite_time`` the ``entry_time`` value is the text SQLite stores (``sqlite_time_text``)
    rather than a datetime.

    The hot path of every append and of the verifier (once per entry of the log), so ``extract``'s
    rules are written out here without helper calls; ``tests/audit/test_columns.py`` checks with
    hypothesis that the two agree on any JSON object.
    """
    get = entry.get
    counterparts: list[str] = []
    for key in _COUNTERPART_KEYS:
        value = get(key)
        if value is None:
            continue
        if type(value) is str:  # the usual case: one agency, by name
            if 0 < len(value) <= _AGENCY_LIMIT:
                counterparts.append(value)
            continue
        for v in value if isinstance(value, list) else (value,):
            if not isinstance(v, str) and isinstance(v, Mapping):
                v = v.get("agency")
            if isinstance(v, str) and 0 < len(v) <= _AGENCY_LIMIT:
                counterparts.append(v)
    actor = get("actor")
    if isinstance(actor, dict) or (not isinstance(actor, str) and isinstance(actor, Mapping)):
        actor_agency = actor.get("agency")
        actor_client = actor.get("clientId")
        if not (isinstance(actor_client, str) and 0 < len(actor_client) <= _CLIENT_LIMIT):
            actor_client = None
    else:
        actor_agency, actor_client = actor, None
    if not (isinstance(actor_agency, str) and 0 < len(actor_agency) <= _AGENCY_LIMIT):
        actor_agency = None
    kind, case, purpose, info, trace = (
        get("type"),
        get("caseId"),
        get("purpose"),
        get("informationType"),
        get("traceId"),
    )
    time: Any = get("time")
    if sqlite_time and type(time) is str and _UTC_TEXT.fullmatch(time) is not None:
        # The usual case, already in the stored form but for the T and Z: the parser still decides
        # whether it is a time at all (a 30 February is not), as parse_time would for this form (it
        # is UTC already, so parse_time's other checks and its conversion change nothing). Then
        # sqlite_time_text, without formatting.
        try:
            _from_iso(time)
        except ValueError:
            time = None
        else:
            time = time[:26].replace("T", " ", 1)
    else:
        time = parse_time(time)
        if sqlite_time and time is not None:
            time = time.isoformat(" ", "microseconds")[:26]  # sqlite_time_text, without the call
    values = (
        kind if isinstance(kind, str) and 0 < len(kind) <= _TYPE_LIMIT else None,
        case if isinstance(case, str) and 0 < len(case) <= _CASE_LIMIT else None,
        purpose if isinstance(purpose, str) and 0 < len(purpose) <= _PURPOSE_LIMIT else None,
        info if isinstance(info, str) and 0 < len(info) <= _INFO_LIMIT else None,
        trace if isinstance(trace, str) and 0 < len(trace) <= _TRACE_LIMIT else None,
        time,
        actor_agency,
        actor_client,
        counterparts[0] if counterparts else None,
    )
    agencies: list[tuple[str, str]]
    if actor_agency is None:
        agencies = sorted({(a, COUNTERPART) for a in counterparts}) if counterparts else []
    elif len(counterparts) == 1 and type(actor_agency) is str and type(counterparts[0]) is str:
        # The usual case, sorted by hand: by agency, and "actor" before "counterpart" for one agency.
        other = counterparts[0]
        if other < actor_agency:
            agencies = [(other, COUNTERPART), (actor_agency, ACTOR)]
        else:
            agencies = [(actor_agency, ACTOR), (other, COUNTERPART)]
    else:
        agencies = sorted({(actor_agency, ACTOR), *((a, COUNTERPART) for a in counterparts)})
    subjects: list[str] = []
    raw_subjects = get("subjects")
    if isinstance(raw_subjects, list):
        for s in raw_subjects:
            if type(s) is not str and isinstance(s, Mapping):
                s = s.get("pseudonym")
            if isinstance(s, str) and 0 < len(s) <= _PSEUDONYM_LIMIT:
                subjects.append(s)
        if len(subjects) == 2 and type(subjects[0]) is str and type(subjects[1]) is str:
            # The usual case (two people, or three below), sorted and made distinct by hand.
            first, second = subjects
            if second < first:
                subjects = [second, first]
            elif second == first:
                subjects = [first]
        elif len(subjects) > 1:
            subjects = sorted(set(subjects))
    return values, agencies, subjects


_COUNTERPART_KEYS = ("counterpart", "counterparts")
_from_iso = dt.datetime.fromisoformat

# A UTC time as the gateway writes it (RFC 3339, microseconds, Z): its stored text is its first 26
# characters with a space for the T. ASCII digits only, hours to 23 (a parser that reads 24:00 as the
# next day's midnight would give another text), so that the text is exactly what formatting the parsed
# time gives; whether the date exists is left to parse_time.
_UTC_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z")


def parse_leaf(data: bytes) -> Any:
    """Stored leaf bytes parsed as JSON, as ``json.loads`` parses them (integers beyond 64 bits aside).

    orjson first, about three times faster (the verifier parses every leaf of the log). Where the two
    could differ, orjson refuses (NaN, lone surrogates, numbers beyond a double, other encodings than
    UTF-8, nesting beyond 1024) and ``json.loads`` decides; on what both accept they agree on every
    string, list and object, the only values the search columns are made of (an integer beyond 64 bits
    becomes a float in orjson, which no column reads). Raises ``ValueError`` or ``RecursionError``.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def sqlite_time_text(value: dt.datetime | None) -> str | None:
    """A UTC ``entry_time`` as SQLAlchemy's SQLite ``DateTime`` stores it (``YYYY-MM-DD HH:MM:SS.ffffff``).

    The same text as the column type's bind processor, in a tenth of its time (it formats a dict);
    ``tests/audit/test_columns.py`` checks the two agree. ``value`` is what ``parse_time`` returns.
    """
    if value is None:
        return None
    return value.isoformat(" ", "microseconds")[:26]


def extract_from_leaf(leaf_data: bytes) -> EntryColumns:
    """``extract`` on stored leaf bytes; a leaf that is not a JSON object has no search columns."""
    try:
        parsed = parse_leaf(leaf_data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        parsed = None
    return extract(parsed if isinstance(parsed, dict) else {})
