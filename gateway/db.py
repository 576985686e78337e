"""Database plumbing: the declarative base, shared column types, engine and sessions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from sqlalchemy import Engine, MetaData, String, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker

from audit import NAMING_CONVENTION, UTCDateTime

# The audit package defines the naming convention and the UTC timestamp type for its own tables; the
# gateway's tables use the same, so both sets of tables are named and store time alike.


def utcnow() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """The one declarative base of the gateway's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


Id = Annotated[str, mapped_column(String(64), primary_key=True)]
Timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime(), default=utcnow)]
AgencyId = Annotated[str, mapped_column(String(32))]


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, full sync and foreign keys."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with factory() as session, session.begin():
        yield session
