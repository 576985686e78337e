"""``append(entries, writes=...)``: a caller's own rows commit in the transaction of its audit entries.

Faults are injected at the connection (SQLAlchemy cursor and commit events raising the driver's own
error), never by mocking the store: the failing caller's entries and rows must be absent, the other
callers' present, and the log must verify.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import audit
from audit import AuditWriteError, InvalidEntry, SqlAuditStore, leaf_hash, root_hash, verify_log
from tests.audit.conftest import create_log, make_entry, pg_engine, sqlite_engine

caller_md = sa.MetaData()
rows = sa.Table(
    "caller_rows",
    caller_md,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)


class _Base(DeclarativeBase):
    metadata = caller_md


class Message(_Base):
    __tablename__ = "caller_messages"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)


@pytest.fixture
def log(engine: Engine, signer: audit.LogSigner) -> Iterator[SqlAuditStore]:
    caller_md.create_all(engine)
    yield SqlAuditStore(engine, signer)


def insert_row(row_id: str, n: int = 0) -> Callable[[Connection], None]:
    return lambda conn: conn.execute(sa.insert(rows).values(id=row_id, n=n)) and None


def stored_rows(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(rows.c.id)).scalars())


def logged_traces(store: SqlAuditStore) -> set[str]:
    return {e.entry["traceId"] for e in store.entries(0, store.size())}


def driver_fault(engine: Engine, message: str = "disk I/O error") -> Exception:
    """The error the driver itself raises for a failing database."""
    if engine.dialect.name == "sqlite":
        return sqlite3.OperationalError(message)
    return psycopg.OperationalError(message)


def assert_log_sound(store: SqlAuditStore) -> None:
    result = verify_log(store, store.verifier_key())
    assert result.ok, result.reason
    # The store's cached right edge of the tree agrees with the leaves actually stored.
    leaves = [leaf_hash(e.leaf_data) for e in store.entries(0, store.size())]
    assert store.root() == root_hash(leaves)


def run_batched(
    store: SqlAuditStore, calls: list[tuple[int, Callable[[Connection], object] | None]]
) -> dict[int, list[int] | BaseException]:
    """Append ``calls`` (entry number, writes) so that all but the first share one group commit.

    The first caller's writes hold the log's lock until every other caller has queued behind it;
    they then form one batch. Returns each entry number's indexes or the exception it raised.
    """
    outcome: dict[int, list[int] | BaseException] = {}
    n_others = len(calls) - 1

    def hold(conn: Connection) -> None:
        deadline = time.monotonic() + 20
        while len(store._group.queue) < n_others and time.monotonic() < deadline:
            time.sleep(0.005)

    def call(n: int, writes: Callable[[Connection], object] | None) -> None:
        try:
            outcome[n] = store.append([make_entry(n, traceId=f"t-{n}")], writes=writes)
        except BaseException as e:
            outcome[n] = e

    first_n, first_writes = calls[0]

    def first_call(conn: Connection) -> None:
        hold(conn)
        if first_writes is not None:
            first_writes(conn)

    first = threading.Thread(target=call, args=(first_n, first_call))
    first.start()
    while not store._group.leading:
        time.sleep(0.001)
    others = [threading.Thread(target=call, args=c) for c in calls[1:]]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(60)
    return outcome


def test_writes_commit_with_the_entries(log: SqlAuditStore) -> None:
    [index] = log.append([make_entry(0, traceId="t-0")], writes=insert_row("r-0"))
    assert index == 0 and stored_rows(log.engine) == {"r-0"} and logged_traces(log) == {"t-0"}
    assert_log_sound(log)


def test_writes_need_an_entry(log: SqlAuditStore) -> None:
    with pytest.raises(InvalidEntry):
        log.append([], writes=insert_row("r-0"))
    assert stored_rows(log.engine) == set()


def test_a_failing_writes_alone_commits_nothing(log: SqlAuditStore) -> None:
    log.append([make_entry(0, traceId="t-0")], writes=insert_row("dup"))

    def two_rows(conn: Connection) -> None:
        conn.execute(sa.insert(rows).values(id="mine", n=1))
        conn.execute(sa.insert(rows).values(id="dup", n=1))  # IntegrityError

    with pytest.raises(AuditWriteError) as caught:
        log.append([make_entry(1, traceId="t-1")], writes=two_rows)
    assert caught.value.writes_failed and isinstance(caught.value.__cause__, sa.exc.IntegrityError)
    assert stored_rows(log.engine) == {"dup"} and logged_traces(log) == {"t-0"}
    assert log.append([make_entry(2, traceId="t-2")]) == [1]  # the cached frontier is still right
    assert_log_sound(log)


def test_one_callers_integrity_error_fails_only_that_caller(log: SqlAuditStore) -> None:
    log.append([make_entry(99, traceId="t-99")], writes=insert_row("taken"))

    def conflicting(conn: Connection) -> None:
        conn.execute(sa.insert(rows).values(id="r-3", n=3))
        conn.execute(sa.insert(rows).values(id="taken", n=3))

    calls: list[tuple[int, Callable[[Connection], object] | None]] = [
        (0, insert_row("r-0")),
        (1, insert_row("r-1")),
        (2, None),
        (3, conflicting),
        (4, insert_row("r-4")),
    ]
    commits: list[int] = []
    sa.event.listen(log.engine, "commit", lambda conn: commits.append(1))
    outcome = run_batched(log, calls)
    failed = outcome[3]
    assert isinstance(failed, AuditWriteError) and failed.writes_failed
    assert isinstance(failed.__cause__, sa.exc.IntegrityError)
    assert all(isinstance(outcome[n], list) for n in (0, 1, 2, 4))
    assert stored_rows(log.engine) == {"taken", "r-0", "r-1", "r-4"}
    assert logged_traces(log) == {"t-99", "t-0", "t-1", "t-2", "t-4"}
    # A savepoint kept the batch together: the first caller alone, then the other four in one commit.
    assert len(commits) == 2
    assert_log_sound(log)


def test_a_driver_fault_in_one_callers_writes_fails_only_that_caller(log: SqlAuditStore) -> None:
    engine = log.engine

    def fail_marked(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("INSERT INTO caller_rows") and "poison" in repr(params):
            raise driver_fault(engine)

    sa.event.listen(engine, "before_cursor_execute", fail_marked)
    outcome = run_batched(
        log, [(0, insert_row("r-0")), (1, insert_row("r-1")), (2, insert_row("poison")), (3, None)]
    )
    assert isinstance(outcome[2], AuditWriteError) and outcome[2].writes_failed
    assert "disk I/O error" in str(outcome[2].__cause__)
    assert all(isinstance(outcome[n], list) for n in (0, 1, 3))
    assert stored_rows(engine) == {"r-0", "r-1"}
    assert logged_traces(log) == {"t-0", "t-1", "t-3"}
    assert_log_sound(log)


def test_a_batch_whose_entry_insert_fails_is_retried_call_by_call(log: SqlAuditStore) -> None:
    """The database fails the batch's INSERT of entries whenever caller 2's entry is among them."""
    engine = log.engine

    def fail_with_t2(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("INSERT INTO audit_entries") and b'"traceId":"t-2"' in repr(params).encode():
            raise driver_fault(engine)

    def fail_with_t2_pg(conn: Any, *_: Any) -> None:
        # psycopg's COPY does not pass through the cursor events: fail its commit instead.
        if conn.info.pop("t-2", False):
            raise driver_fault(engine)

    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "before_cursor_execute", fail_with_t2)
    else:
        original = SqlAuditStore._run_writes

        def mark(self: SqlAuditStore, conn: Connection, batch: list[Any]) -> list[Any]:
            if any(b'"traceId":"t-2"' in item.leaf_data for p in batch for item in p.items):
                conn.info["t-2"] = True
            return original(self, conn, batch)

        log._run_writes = mark.__get__(log)  # type: ignore[method-assign]
        sa.event.listen(engine, "commit", fail_with_t2_pg)
    outcome = run_batched(
        log, [(0, insert_row("r-0")), (1, insert_row("r-1")), (2, insert_row("r-2")), (3, insert_row("r-3"))]
    )
    assert isinstance(outcome[2], AuditWriteError) and not outcome[2].writes_failed
    assert all(isinstance(outcome[n], list) for n in (0, 1, 3))
    assert stored_rows(engine) == {"r-0", "r-1", "r-3"}
    assert logged_traces(log) == {"t-0", "t-1", "t-3"}
    assert_log_sound(log)


def test_a_failing_commit_fails_only_the_caller_whose_rows_it_carried(log: SqlAuditStore) -> None:
    """COMMIT fails whenever the transaction wrote caller 2's row: it alone is refused."""
    engine = log.engine

    def note(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("INSERT INTO caller_rows") and "r-2" in repr(params):
            conn.info["poisoned"] = True

    def commit(conn: Any) -> None:
        if conn.info.pop("poisoned", False):
            raise driver_fault(engine, "database or disk is full")

    sa.event.listen(engine, "after_cursor_execute", note)
    sa.event.listen(engine, "commit", commit)
    sa.event.listen(engine, "rollback", lambda conn: conn.info.pop("poisoned", None))
    outcome = run_batched(
        log, [(0, insert_row("r-0")), (1, insert_row("r-1")), (2, insert_row("r-2")), (3, None)]
    )
    assert isinstance(outcome[2], AuditWriteError) and not outcome[2].writes_failed
    assert "disk is full" in str(outcome[2].__cause__)
    assert all(isinstance(outcome[n], list) for n in (0, 1, 3))
    assert stored_rows(engine) == {"r-0", "r-1"}
    assert logged_traces(log) == {"t-0", "t-1", "t-3"}
    assert log.append([make_entry(5, traceId="t-5")], writes=insert_row("r-5")) == [log.size() - 1]
    assert_log_sound(log)


def test_a_one_off_commit_failure_costs_no_caller_its_exchange(log: SqlAuditStore) -> None:
    engine = log.engine
    failures = [driver_fault(engine, "database is locked")]
    batch_started = threading.Event()

    def commit(conn: Any) -> None:
        if batch_started.is_set() and failures:
            raise failures.pop()

    sa.event.listen(engine, "commit", commit)

    def start(conn: Connection) -> None:
        batch_started.set()

    outcome = run_batched(log, [(0, None), (1, insert_row("r-1")), (2, start), (3, insert_row("r-3"))])
    assert not failures  # the fault did fire, on the shared batch's commit
    assert all(isinstance(outcome[n], list) for n in range(4)), outcome
    assert stored_rows(engine) == {"r-1", "r-3"} and logged_traces(log) == {"t-0", "t-1", "t-2", "t-3"}
    assert_log_sound(log)


def test_a_session_can_write_in_the_append(log: SqlAuditStore) -> None:
    """The pattern for ORM callers: a session on the append's connection, in a savepoint of its own."""

    def write(message_id: str) -> Callable[[Connection], None]:
        def writes(conn: Connection) -> None:
            with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
                session.add(Message(id=message_id))
                session.commit()  # releases the session's savepoint; the log's transaction commits it

        return writes

    log.append([make_entry(0)], writes=write("m-0"))
    outcome = run_batched(log, [(1, write("m-1")), (2, write("m-0")), (3, write("m-3"))])
    assert isinstance(outcome[2], AuditWriteError) and outcome[2].writes_failed
    with log.engine.connect() as conn:
        assert set(conn.execute(sa.select(Message.id)).scalars()) == {"m-0", "m-1", "m-3"}
    assert log.size() == 3
    assert_log_sound(log)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_writes_run_under_the_logs_lock_across_processes(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Any, signer: audit.LogSigner
) -> None:
    """A read-modify-write in ``writes`` loses no update, with two stores (two processes) on one database."""
    if dialect == "sqlite":
        path = tmp_path / "shared.db"
        create_log(sqlite_engine(path)).dispose()
        engines = [sqlite_engine(path) for _ in range(2)]
    else:
        schema = request.getfixturevalue("pg_schema")
        create_log(pg_engine(schema)).dispose()
        engines = [pg_engine(schema) for _ in range(2)]
    caller_md.create_all(engines[0])
    with engines[0].begin() as conn:
        conn.execute(sa.insert(rows).values(id="counter", n=0))
    stores = [SqlAuditStore(e, signer) for e in engines]

    def increment(conn: Connection) -> None:
        n = conn.execute(sa.select(rows.c.n).where(rows.c.id == "counter")).scalar_one()
        time.sleep(0.001)  # widen the window a lost update would need
        conn.execute(sa.update(rows).where(rows.c.id == "counter").values(n=n + 1))

    def worker(store: SqlAuditStore, base: int) -> None:
        for i in range(15):
            store.append([make_entry(base + i)], writes=increment)

    threads = [threading.Thread(target=worker, args=(s, 100 * k)) for k, s in enumerate(stores * 3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        with engines[0].connect() as conn:
            n = conn.execute(sa.select(rows.c.n).where(rows.c.id == "counter")).scalar_one()
        assert n == 90 == stores[0].size()
        assert_log_sound(stores[0])
    finally:
        for e in engines:
            e.dispose()
