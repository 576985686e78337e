"""The search columns: the fast extraction agrees with the reference rules, the fast parse with json."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from audit._internal.columns import (
    ACTOR,
    COUNTERPART,
    ENTRY_COLUMNS,
    extract,
    extract_rows,
    parse_leaf,
    sqlite_time_text,
)
from audit._internal.schema import entries

# Values the columns look at, in the shapes a caller or an attacker may give them: strings of every
# length around the column limits, the other JSON types, and objects and lists where strings belong.
_TEXT = st.one_of(st.text(max_size=3), st.text(min_size=60, max_size=70), st.text(min_size=125, max_size=132))
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT)
_AGENCY = st.one_of(_SCALAR, st.dictionaries(st.sampled_from(["agency", "clientId", "x"]), _SCALAR))
_TIME = st.one_of(
    _SCALAR,
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat()),
    # The gateway's own form, which extract_rows turns into the stored text without formatting, and
    # strings of that shape that are no time, or another time, or parse only with a lenient parser.
    st.datetimes().map(lambda t: t.isoformat(timespec="microseconds") + "Z"),
    st.sampled_from(
        [
            "2026-02-30T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "0000-01-01T00:00:00.000000Z",
            "2026-01-01T00:00:60.000000Z",
            "2026-W01-1T00:00:00.000000Z",
            "2026-01-01t00:00:00.000000Z",
            "2026-01-01T00:00:00,000000Z",
            "\uff12026-01-01T00:00:00.000000Z",
            "2026-01-01T00:00:00.000000z",
            "9999-12-31T23:59:59.999999Z",
        ]
    ),
)
_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "type": _SCALAR,
        "caseId": _SCALAR,
        "purpose": _SCALAR,
        "informationType": _SCALAR,
        "traceId": _SCALAR,
        "time": _TIME,
        "actor": _AGENCY,
        "counterpart": st.one_of(_AGENCY, st.lists(_AGENCY, max_size=3)),
        "counterparts": st.one_of(_AGENCY, st.lists(_AGENCY, max_size=3)),
        "subjects": st.one_of(
            _SCALAR,
            st.lists(
                st.one_of(_SCALAR, st.dictionaries(st.sampled_from(["pseudonym", "role"]), _SCALAR)),
                max_size=4,
            ),
        ),
    },
)


@settings(max_examples=500, deadline=None)
@given(entry=_ENTRY)
def test_extract_rows_follows_the_reference_rules(entry: dict[str, Any]) -> None:
    values, agencies, subjects = extract_rows(entry)
    reference = extract(entry)
    assert dict(zip(ENTRY_COLUMNS, values, strict=True)) == reference.row
    assert agencies == sorted(reference.agencies) and subjects == sorted(reference.subjects)
    as_stored, *rest = extract_rows(entry, sqlite_time=True)
    time = ENTRY_COLUMNS.index("entry_time")
    assert as_stored[time] == sqlite_time_text(values[time])
    assert (*as_stored[:time], *as_stored[time + 1 :]) == (*values[:time], *values[time + 1 :])
    assert rest == [agencies, subjects]


def test_extract_rows_of_a_gateway_entry() -> None:
    entry = {
        "type": "exchange",
        "time": "2026-03-01T10:00:00+01:00",
        "actor": {"agency": "politie", "clientId": "politie-system"},
        "counterpart": ["om", {"agency": "rvdk"}],
        "subjects": ["p2", {"pseudonym": "p1"}, "p2"],
    }
    values, agencies, subjects = extract_rows(entry)
    row = dict(zip(ENTRY_COLUMNS, values, strict=True))
    assert row["entry_time"] == dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    assert (row["actor_agency"], row["actor_client"], row["counterpart_agency"]) == (
        "politie",
        "politie-system",
        "om",
    )
    assert agencies == [("om", COUNTERPART), ("politie", ACTOR), ("rvdk", COUNTERPART)]
    assert subjects == ["p1", "p2"]


_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        # orjson reads an integer beyond 64 bits as a float: no leaf holds one (canonical JSON keeps
        # integers within 2**53), and a leaf changed to hold one fails its hash before it is parsed
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON)
def test_parse_leaf_agrees_with_json_loads(value: Any) -> None:
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert _same_json(parse_leaf(data), json.loads(data))


def test_parse_leaf_leaves_what_orjson_refuses_to_json_loads() -> None:
    # NaN, a lone surrogate, UTF-16: orjson refuses them and json.loads reads them, so parse_leaf does.
    for data in (b'{"a":NaN}', b'{"caseId":"\\ud800"}'):
        assert _same_json(parse_leaf(data), json.loads(data))
    assert parse_leaf('{"caseId":"c"}'.encode("utf-16")) == {"caseId": "c"}
    assert parse_leaf(b'{"caseId":"a","caseId":"b"}') == {"caseId": "b"}  # the last one, as json does
    # An integer beyond 64 bits is a float to orjson: no column reads a number, so the rows agree.
    huge = b'{"caseId":123456789012345678901234567890,"type":"x"}'
    assert extract_rows(parse_leaf(huge)) == extract_rows(json.loads(huge))


def _same_json(a: Any, b: Any) -> bool:
    """Equal, with numbers compared as numbers (orjson reads a huge integer as a float)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    if isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    return bool(a == b or (a != a and b != b))


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=dt.datetime(2, 1, 1), max_value=dt.datetime(9998, 12, 31), timezones=st.timezones()
    )
)
def test_sqlite_time_text_is_what_the_column_type_stores(moment: dt.datetime) -> None:
    dialect = sa.create_engine("sqlite://").dialect
    bind = entries.c.entry_time.type.dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    utc = moment.astimezone(dt.UTC)
    assert sqlite_time_text(utc) == bind(utc)
    assert sqlite_time_text(None) is None


def test_a_time_past_the_last_utc_datetime_is_no_time() -> None:
    from audit._internal.columns import parse_time

    assert parse_time("9999-12-31T23:59:59-01:00") is None
    assert parse_time("9999-12-31T23:59:59+01:00") is not None
