"""The spent-jti store over real SQLite and real PostgreSQL (``db_url``, tests/databases.py)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.auth.replay import ReplayGuard, jti_key
from gateway.db import make_engine, make_sessionmaker
from gateway.models import UsedAssertion


@pytest.fixture(scope="module")
def database(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def sessions(database: sessionmaker[Session]) -> sessionmaker[Session]:
    """The module's database with no spent assertion in it (one database per module and dialect)."""
    with database() as s, s.begin():
        s.execute(delete(UsedAssertion))
    return database


def later(seconds: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(UsedAssertion)) or 0)


def test_a_jti_is_spent_once_per_client(sessions: sessionmaker[Session]) -> None:
    guard = ReplayGuard(sessions)
    assert guard.spend("a", "j1", later(60)) is True
    assert guard.spend("a", "j1", later(60)) is False
    assert guard.spend("b", "j1", later(60)) is True


def test_a_long_jti_is_stored_as_a_hash_that_fits_the_column(sessions: sessionmaker[Session]) -> None:
    key = jti_key("c" * 64, "j" * 1000)
    assert len(key) <= 128
    assert key != jti_key("c" * 64, "j" * 999)
    assert jti_key("a", "short") == "a:short"


def test_expired_rows_are_purged(sessions: sessionmaker[Session]) -> None:
    guard = ReplayGuard(sessions)
    guard.spend("a", "old-1", later(-10))
    guard.spend("a", "old-2", later(-10))
    guard.spend("a", "live", later(60))
    assert count(sessions) == 3
    assert guard.purge() == 2
    assert count(sessions) == 1
    assert guard.spend("a", "live", later(60)) is False


def test_purging_happens_along_the_way(sessions: sessionmaker[Session]) -> None:
    guard = ReplayGuard(sessions)
    with sessions() as s, s.begin():
        s.add(UsedAssertion(jti_key="a:stale", expires_at=later(-10)))
    assert guard.spend("a", "fresh", later(60)) is True  # the first spend purges
    assert count(sessions) == 1


def test_concurrent_spends_of_one_jti_admit_exactly_one(sessions: sessionmaker[Session]) -> None:
    guard = ReplayGuard(sessions)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def spend() -> None:
        barrier.wait()
        results.append(guard.spend("a", "raced", later(60)))

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
