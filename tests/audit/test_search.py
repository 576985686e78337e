"""Search against a naive filter over every entry, for random combinations of filters and cursors.

The store answers with different query shapes (a driving selective filter, merged index streams,
time bounds); whatever the shape, a page must be exactly the next matching entries in index order.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit import LogSigner, SearchFilters, SqlAuditStore
from audit._internal.columns import extract
from tests.audit.conftest import (
    ORIGIN,
    PG_URL,
    create_log,
    make_entry,
    pg_engine,
    require_postgresql,
    sqlite_engine,
)

AGENCIES = ["politie", "veilig_thuis", "om", "reclassering", "rvdk"]
SIZE = 240
BASE = dt.datetime(2026, 11, 28, 18, 0, tzinfo=dt.UTC)


def entry(n: int) -> dict[str, Any]:
    """Varied entries: some name one agency twice, some have their time out of order, some lack fields."""
    e = make_entry(n)
    # Times run with the index, with a few entries a minute early or late (clocks, slow requests).
    skew = {7: -60, 8: 60, 100: -90}.get(n % 120, 0)
    e["time"] = (BASE + dt.timedelta(seconds=n * 10 + skew)).isoformat().replace("+00:00", "Z")
    if n % 11 == 0:
        e["counterpart"] = e["actor"]["agency"]  # the same agency as actor and counterpart
    if n % 13 == 0:
        del e["purpose"]
    if n % 17 == 0:
        e["subjects"] = []
    return e


ENTRIES = [entry(n) for n in range(SIZE)]
COLUMNS = [extract(e) for e in ENTRIES]


def naive(f: SearchFilters) -> list[int]:
    out = []
    for i, c in enumerate(COLUMNS):
        row, agencies = c.row, {a for a, _ in c.agencies}
        checks = [
            f.case_id is None or row["case_id"] == f.case_id,
            f.purpose is None or row["purpose"] == f.purpose,
            f.type is None or row["entry_type"] == f.type,
            f.information_type is None or row["information_type"] == f.information_type,
            f.trace_id is None or row["trace_id"] == f.trace_id,
            f.agency is None or f.agency in agencies,
            f.visible_to is None or f.visible_to in agencies,
            f.subject is None or f.subject in c.subjects,
            f.time_from is None or row["entry_time"] >= f.time_from,
            f.time_to is None or row["entry_time"] < f.time_to,
        ]
        if all(checks):
            out.append(i)
    return out


def _store(engine: sa.Engine) -> SqlAuditStore:
    store = SqlAuditStore(create_log(engine), LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
    store.append(ENTRIES)
    return store


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlAuditStore]:
    if request.param == "sqlite":
        engine = sqlite_engine(Path(tmp_path_factory.mktemp("search")) / "audit.db")
        yield _store(engine)
        engine.dispose()
        return
    require_postgresql()  # fails, not skips, without the server (tests/databases.py)
    schema = f"audit_search_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = pg_engine(schema)
    try:
        yield _store(engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


times = st.integers(min_value=-5, max_value=SIZE + 5).map(lambda n: BASE + dt.timedelta(seconds=n * 10 - 3))
filters = st.builds(
    SearchFilters,
    case_id=st.none() | st.sampled_from([f"case-{i}" for i in range(8)]),
    agency=st.none() | st.sampled_from(AGENCIES),
    visible_to=st.none() | st.sampled_from(AGENCIES),
    purpose=st.none() | st.sampled_from(["melding_behandelen", "veiligheid_beoordelen", "elders"]),
    type=st.none() | st.sampled_from(["exchange", "case"]),
    information_type=st.none() | st.sampled_from(["melding", "veiligheidsplan"]),
    trace_id=st.none() | st.integers(0, SIZE).map(lambda n: f"{n:032x}"),
    subject=st.none() | st.integers(0, 4).map(lambda n: f"{n:064x}"),
    time_from=st.none() | times,
    time_to=st.none() | times,
)


# Without a person, case or trace, SQLite merges index streams: give that path its own share of examples.
broad = st.builds(
    SearchFilters,
    agency=st.none() | st.sampled_from(AGENCIES),
    visible_to=st.none() | st.sampled_from(AGENCIES),
    purpose=st.none() | st.sampled_from(["melding_behandelen", "veiligheid_beoordelen"]),
    type=st.none() | st.sampled_from(["exchange", "case"]),
    information_type=st.none() | st.sampled_from(["melding", "veiligheidsplan"]),
    time_from=st.none() | times,
    time_to=st.none() | times,
)
# Entry 8 is a minute late: it lies inside the index bounds of "before 137 s" but is not before it.
LATE = SearchFilters(time_to=BASE + dt.timedelta(seconds=137))
EARLY = SearchFilters(time_from=BASE + dt.timedelta(seconds=17), visible_to="om")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filters | broad, st.integers(1, 40), st.integers(0, SIZE + 3))
@example(LATE, 40, 0)
@example(EARLY, 40, 0)
def test_pages_are_the_next_matching_entries(
    store: SqlAuditStore, f: SearchFilters, limit: int, start: int
) -> None:
    expected = [i for i in naive(f) if i >= start]
    items, cursor = store.search(f, limit=limit, cursor=str(start) if start else None)
    assert [i.index for i in items] == expected[:limit]
    assert [i.leaf_data for i in items] == [store.entry(i).leaf_data for i in expected[:limit]]  # type: ignore[union-attr]
    if len(expected) > limit:
        assert cursor == str(expected[limit])
    else:
        assert cursor is None


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filters)
def test_paging_to_the_end_returns_every_match_once(store: SqlAuditStore, f: SearchFilters) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        items, cursor = store.search(f, limit=9, cursor=cursor)
        seen += [i.index for i in items]
        if cursor is None:
            break
    assert seen == naive(f)


@pytest.mark.parametrize(
    "cursor", ["9223372036854775808", "9999999999999999999", 2**63, 2**64, -1, "1e3", "x"]
)
def test_a_cursor_no_database_can_hold_is_a_value_error(store: SqlAuditStore, cursor: Any) -> None:
    # Used without the API in front, the store must refuse what SQLite or PostgreSQL would overflow on.
    with pytest.raises(ValueError):
        store.search({}, cursor=cursor)


def test_the_largest_cursor_and_index_find_nothing(store: SqlAuditStore) -> None:
    assert store.search({}, cursor=str(2**63 - 1)) == ([], None)
    assert store.entry(2**63 - 1) is None
    assert store.entry(2**63) is None
    assert store.entries(2**63 - 5, 2**64) == []
