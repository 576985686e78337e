"""Database plumbing: the declarative base, shared column types, engine and sessions.

Also the database's side of DESIGN 7 "any dependency down: 503": which errors are faults of the
database rather than bugs (`fault_kind`), bounded waits for locks, pool and connect
(``GATEWAY_DB_BUSY_TIMEOUT``), and the readiness probe `/readyz` asks (`database_health`).
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from sqlalchemy import Engine, MetaData, String, create_engine, event, make_url, text
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker

from audit import NAMING_CONVENTION, UTCDateTime, create_private_file, private_directory

# The audit package defines the naming convention and the UTC timestamp type for its own tables; the
# gateway's tables use the same, so both sets of tables are named and store time alike.

DEFAULT_BUSY_TIMEOUT: Final = 5.0
"""Seconds a call waits for a lock, a pool connection or a connect (``GATEWAY_DB_BUSY_TIMEOUT``)."""

SQLITE_POOL_SIZE: Final = 20
"""Connections a SQLite file engine keeps open (10 more may be opened, and closed, beyond them)."""

PROBE_TIMEOUT: Final = 1.0
"""Longest wait of the readiness probe for the write lock: an append holds it for milliseconds."""

FULL_REMEMBERED: Final = 60.0
"""Seconds a "database full" write failure keeps ``/readyz`` at 503 unless a write succeeds first.

A bound, so that a gateway taken out of rotation (and so written to by nobody) becomes ready again
by itself once space is back; a write that fails again renews it."""

DISK_FLOOR: Final = 1 << 20
"""Free bytes below which the filesystem of a SQLite database counts as full for ``/readyz``."""

FaultKind = Literal["locked", "full", "unavailable"]

#: SQLite primary result codes of an OperationalError that are a bug in the statement, not a fault of
#: the database: SQLITE_ERROR (e.g. no such table), SQLITE_MISUSE, SQLITE_RANGE.
_SQLITE_BUGS: Final = frozenset({1, 21, 25})
_SQLITE_LOCKED: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
#: PostgreSQL SQLSTATEs: disk_full; lock_not_available (``lock_timeout``), deadlock_detected.
_PG_FULL: Final = frozenset({"53100"})
_PG_LOCKED: Final = frozenset({"55P03", "40P01"})


def utcnow() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """The one declarative base of the gateway's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


Id = Annotated[str, mapped_column(String(64), primary_key=True)]
Timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime(), default=utcnow)]
AgencyId = Annotated[str, mapped_column(String(32))]


def fault_kind(exc: BaseException | None) -> FaultKind | None:
    """What kind of database fault ``exc`` is (``locked``, ``full``, ``unavailable``), or None when it is
    not one (an integrity error or a bad statement is a bug, and stays a 500).

    Covers SQLAlchemy's wrappers (``OperationalError``, ``InterfaceError``, a dropped connection, a pool
    checkout that timed out) and a bare ``sqlite3.OperationalError``; the cause chain is followed, so an
    audit write error raised from one counts too.
    """
    seen = 0
    while exc is not None and seen < 8:
        kind = _own_fault_kind(exc)
        if kind is not None:
            return kind
        exc, seen = exc.__cause__, seen + 1
    return None


def _own_fault_kind(exc: BaseException) -> FaultKind | None:
    if isinstance(exc, PoolTimeout | DisconnectionError):
        return "unavailable"
    if isinstance(exc, DBAPIError):
        if not (isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated):
            return None
        orig: BaseException | None = exc.orig
    elif isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
        orig = exc
    else:
        return None
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        primary = code & 0xFF
        if primary in _SQLITE_BUGS:
            return None
        if primary == sqlite3.SQLITE_FULL:
            return "full"
        return "locked" if primary in _SQLITE_LOCKED else "unavailable"
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _PG_FULL:
        return "full"
    if sqlstate in _PG_LOCKED:
        return "locked"
    return "unavailable"


class DatabaseHealth:
    """What ``/readyz`` knows of one engine's database: a probe, and the last "full" write failure.

    A locked or unreachable database shows in a probe. A full one often does not (a rolled-back
    probe writes nothing), so every write failure of that kind on the engine is remembered until a
    write on it commits again, or for `FULL_REMEMBERED` seconds.
    """

    def __init__(self, engine: Engine, busy_timeout: float) -> None:
        self._engine = weakref.ref(engine)
        url = engine.url
        database = url.database
        self._sqlite_path: Path | None = (
            Path(database) if url.get_backend_name() == "sqlite" and database and _is_file(database) else None
        )
        self._probe_timeout = min(PROBE_TIMEOUT, busy_timeout)
        self._lock = threading.Lock()
        self._full_at: float | None = None

    def note_fault(self, exc: BaseException | None) -> None:
        """Remember a "full" failure (other kinds show in the probe)."""
        if fault_kind(exc) == "full":
            with self._lock:
                self._full_at = time.monotonic()

    def note_write_committed(self) -> None:
        """A write is being committed: space was found (if its commit fails, `note_fault` runs after)."""
        with self._lock:
            self._full_at = None

    def full(self) -> bool:
        """Whether a write failed for want of space lately and none has succeeded since."""
        with self._lock:
            at = self._full_at
        return at is not None and time.monotonic() - at < FULL_REMEMBERED

    def problem(self) -> str | None:
        """None when the database can be read and written now; else ``locked``, ``full`` or
        ``unavailable: <type>``. Waits at most `PROBE_TIMEOUT` for a lock; never raises."""
        try:
            reason = self._probe()
        except Exception as e:  # a probe must answer, whatever broke
            reason = f"unavailable: {type(e).__name__}"
        if reason is None and self.full():
            reason = "full"
        return reason

    def _probe(self) -> str | None:
        if self._sqlite_path is not None:
            return self._probe_sqlite(self._sqlite_path)
        engine = self._engine()
        if engine is None:
            return "unavailable: engine closed"
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as e:
            kind = fault_kind(e)
            return kind if kind in ("locked", "full") else f"unavailable: {type(e).__name__}"
        return None

    def _probe_sqlite(self, path: Path) -> str | None:
        # Its own short-lived connection, not one from the pool: when every pooled connection waits on
        # a lock, the probe must still answer within its own bound. ``mode=rw`` never creates the file.
        if not path.exists():
            return "unavailable: no database file"
        if shutil.disk_usage(path.parent).free < DISK_FLOOR:
            return "full"
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw",
                uri=True,
                timeout=self._probe_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            return f"unavailable: {type(e).__name__}"
        try:
            # A read still passes under a held write lock in WAL mode; taking the write lock (and
            # giving it back at once, writing nothing) shows whether a write could proceed.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error as e:
            kind = fault_kind(e)
            return kind if kind in ("locked", "full") else f"unavailable: {type(e).__name__}"
        finally:
            conn.close()
        return None


_HEALTH: weakref.WeakKeyDictionary[Engine, DatabaseHealth] = weakref.WeakKeyDictionary()


def database_health(engine: Engine) -> DatabaseHealth:
    """The health record of ``engine`` (kept since `make_engine`; made on first use otherwise)."""
    health = _HEALTH.get(engine)
    if health is None:
        health = _HEALTH.setdefault(engine, DatabaseHealth(engine, DEFAULT_BUSY_TIMEOUT))
    return health


def _is_file(database: str | None) -> bool:
    return bool(database) and database != ":memory:" and not str(database).startswith("file::memory:")


def _private_sqlite_files(database: str) -> None:
    """Create the database file 0600 before SQLite does, and tighten the files an older version left.

    SQLite would create it 0644 minus the umask (world-readable, or worse under umask 0) and gives its
    ``-wal`` and ``-shm`` files the database file's mode, so a private main file keeps those private.
    """
    if database.startswith("file:"):
        return  # a URI filename: SQLite's to interpret
    path = Path(database)
    if not path.parent.exists():
        private_directory(path.parent)
    create_private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            create_private_file(side)  # exists: only its mode changes


def make_engine(url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    """An engine; SQLite gets WAL, full sync and foreign keys. Every wait (lock, pool, connect) is
    bounded by ``busy_timeout`` seconds, after which the call fails with a `fault_kind` error.

    Statement parameters are kept out of error messages (``hide_parameters``): an error may be
    logged, and a parameter may be case content.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    pool: dict[str, Any] = {}
    if backend == "sqlite":
        if parsed.database and _is_file(parsed.database):
            _private_sqlite_files(parsed.database)
        if _is_file(parsed.database):
            pool["pool_timeout"] = busy_timeout  # an in-memory database has no queue to wait in
            # As many kept connections as requests a worker serves at once: with SQLAlchemy's default 5,
            # 16 concurrent requests opened (and closed again) a new connection, with its PRAGMAs, for a
            # third of all requests, the overflow beyond the pool.
            pool["pool_size"] = SQLITE_POOL_SIZE
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout},
            hide_parameters=True,
            **pool,
        )
        busy_ms = max(1, round(busy_timeout * 1000))

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Erased content (an acknowledged message, a shredded case key) is overwritten, not only freed.
            cur.execute("PRAGMA secure_delete=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

    else:
        connect_args: dict[str, Any] = {}
        if backend == "postgresql":
            # libpq's connect_timeout is whole seconds; lock_timeout also bounds the audit log's
            # advisory lock, so a stuck appender elsewhere is a 503 here rather than a hung request.
            connect_args = {
                "connect_timeout": max(1, math.ceil(busy_timeout)),
                "options": f"-c lock_timeout={max(1, round(busy_timeout * 1000))}",
            }
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            pool_timeout=busy_timeout,
            hide_parameters=True,
            connect_args=connect_args,
        )
    _watch(engine, DatabaseHealth(engine, busy_timeout))
    return engine


_WRITES: Final = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _watch(engine: Engine, health: DatabaseHealth) -> None:
    """Keep ``health`` told of "full" failures and of writes that commit."""
    _HEALTH[engine] = health

    @event.listens_for(engine, "handle_error")
    def _fault(context: ExceptionContext) -> None:
        health.note_fault(context.sqlalchemy_exception or context.original_exception)

    @event.listens_for(engine, "after_cursor_execute")
    def _wrote(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip()[:7].upper().startswith(_WRITES):
            conn.info["wrote"] = True

    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        if conn.info.pop("wrote", False):
            health.note_write_committed()

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Connection) -> None:
        conn.info.pop("wrote", None)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    with factory() as session, session.begin():
        yield session
