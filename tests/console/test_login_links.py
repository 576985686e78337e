"""One-time console login links in the database, on SQLite and PostgreSQL (``db_url``): spent once, by
one caller of many at once, also when the callers are different gateway processes' connections."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway.console import sessions
from gateway.db import make_engine


@pytest.fixture(scope="module")
def db(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_a_link_logs_in_once_then_says_used(db: sa.Engine) -> None:
    token = sessions.mint_login_token(db, "politie", "privacy_officer", subject="j.jansen")
    user = sessions.spend_login_token(db, token)
    assert (user.agency, user.role, user.subject) == ("politie", "privacy_officer", "j.jansen")
    with pytest.raises(sessions.LinkRefused) as again:
        sessions.spend_login_token(db, token)
    assert again.value.reason == "used"
    with db.connect() as conn:
        stored = conn.execute(sa.select(sessions.login_links.c.token_hash)).scalars().all()
    assert token not in stored and all(len(h) == 64 for h in stored)  # only the digest is kept


def test_an_expired_or_unknown_link_is_refused_with_its_reason(db: sa.Engine) -> None:
    token = sessions.mint_login_token(db, "rvdk", "auditor")
    with db.begin() as conn:
        conn.execute(
            sa.update(sessions.login_links)
            .where(sessions.login_links.c.token_hash == sessions._digest(token))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    for candidate, reason in ((token, "expired"), ("not-a-token", "unknown")):
        with pytest.raises(sessions.LinkRefused) as refused:
            sessions.spend_login_token(db, candidate)
        assert refused.value.reason == reason


def test_eight_spends_at_once_log_in_exactly_one(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(2)]  # two "processes", each with its own pool
    try:
        token = sessions.mint_login_token(engines[0], "om", "auditor")
        barrier = threading.Barrier(8)
        outcomes: list[str] = []

        def spend(engine: sa.Engine) -> None:
            barrier.wait()
            try:
                outcomes.append(sessions.spend_login_token(engine, token).agency)
            except sessions.LinkRefused as e:
                outcomes.append(e.reason)

        threads = [threading.Thread(target=spend, args=(engines[i % 2],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["om"] + ["used"] * 7
    finally:
        for engine in engines:
            engine.dispose()
