"""SqlAuditStore on real SQLite files and PostgreSQL: appends, proofs, checkpoints, search, triggers."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

import audit
from audit import (
    AuditStore,
    AuditWriteError,
    EntryNotFound,
    InvalidEntry,
    SearchFilters,
    SqlAuditStore,
    canonical_json,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_hash,
    verify_checkpoint,
    verify_consistency,
    verify_inclusion,
    verify_log,
)
from tests.audit.conftest import create_log, make_entry, pg_engine, sqlite_engine


def test_is_an_audit_store(store: SqlAuditStore) -> None:
    assert isinstance(store, AuditStore)


def test_append_assigns_consecutive_indexes_and_stores_canonical_bytes(store: SqlAuditStore) -> None:
    assert store.size() == 0
    assert store.root() == audit.EMPTY_ROOT
    assert store.append([]) == []
    assert store.append([make_entry(0), make_entry(1)]) == [0, 1]
    assert store.append([make_entry(2)]) == [2]
    assert store.size() == 3
    got = store.entry(1)
    assert got is not None
    assert got.index == 1 and got.leaf_data == canonical_json(make_entry(1)) and got.entry == make_entry(1)
    assert store.entry(3) is None
    assert [e.index for e in store.entries(0, 10)] == [0, 1, 2]
    assert [e.index for e in store.iter_entries(1, batch_size=1)] == [1, 2]
    assert store.root() == root_hash([leaf_hash(canonical_json(make_entry(i))) for i in range(3)])


def test_an_invalid_entry_writes_nothing(store: SqlAuditStore) -> None:
    store.append([make_entry(0)])
    with pytest.raises(InvalidEntry):
        store.append([make_entry(1), {"bad": float("nan")}])
    with pytest.raises(InvalidEntry):
        store.append(["not an object"])  # type: ignore[list-item]
    assert store.size() == 1
    assert store.append([make_entry(1)]) == [1]


def test_entries_with_missing_or_odd_fields_are_logged(store: SqlAuditStore) -> None:
    odd = [
        {},
        {"actor": "politie", "counterpart": ["om", 7, None], "subjects": "x", "time": "yesterday"},
        {"caseId": "x" * 10_000, "time": "2026-11-28T18:00:00", "subjects": [{"pseudonym": "p1"}, 3]},
        {"actor": {"agency": ["politie"]}, "counterpart": {"agency": "rvdk"}, "type": 5},
    ]
    assert store.append(odd) == [0, 1, 2, 3]
    items, _ = store.search({"agency": "om"})
    assert [i.index for i in items] == [1]
    items, _ = store.search({"agency": "rvdk"})
    assert [i.index for i in items] == [3]
    items, _ = store.search({"subject": "p1"})
    assert [i.index for i in items] == [2]
    assert verify_log(store, store.verifier_key()).ok


def test_proofs_from_stored_nodes_match_the_in_memory_tree(store: SqlAuditStore) -> None:
    n = 37
    store.append([make_entry(i) for i in range(n)])
    hashes = [leaf_hash(canonical_json(make_entry(i))) for i in range(n)]
    pairs = [(1, 1), (1, 2), (3, 7), (8, 8), (13, 37), (16, 32), (21, 22), (36, 37), (0, 37), (37, 37)]
    for size1, size2 in pairs:
        proof = store.consistency_proof(size1, size2)
        assert proof == consistency_proof(hashes, size1, size2)
        verify_consistency(size1, size2, proof, store.root(size1), store.root(size2))
    for index, size in [(0, 1), (0, 37), (5, 6), (16, 17), (31, 32), (32, 37), (36, 37), (20, 33)]:
        proof = store.inclusion_proof(index, size)
        assert proof == inclusion_proof(hashes, index, size)
        verify_inclusion(hashes[index], index, size, proof, store.root(size))
    with pytest.raises(EntryNotFound):
        store.inclusion_proof(37, 37)
    with pytest.raises(EntryNotFound):
        store.inclusion_proof(0, 38)
    with pytest.raises(EntryNotFound):
        store.consistency_proof(5, 38)
    with pytest.raises(EntryNotFound):
        store.root(38)


def test_every_proof_of_a_stored_log(sqlite_log: Engine, signer: audit.LogSigner) -> None:
    store = SqlAuditStore(sqlite_log, signer)
    n = 33
    for i in range(n):  # one leaf per commit: the stored nodes grow the way they do in production
        store.append([make_entry(i)])
    hashes = [leaf_hash(canonical_json(make_entry(i))) for i in range(n)]
    for size in range(1, n + 1):
        root = root_hash(hashes[:size])
        assert store.root(size) == root
        for index in range(size):
            assert store.inclusion_proof(index, size) == inclusion_proof(hashes, index, size)
        for size1 in range(size + 1):
            assert store.consistency_proof(size1, size) == consistency_proof(hashes, size1, size)


def test_proofs_read_log_n_rows(sqlite_log: Engine, signer: audit.LogSigner) -> None:
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(1000)])
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    sa.event.listen(sqlite_log, "before_cursor_execute", count)
    try:
        store.inclusion_proof(437, 1000)
        store.consistency_proof(300, 1000)
    finally:
        sa.event.remove(sqlite_log, "before_cursor_execute", count)
    # size + leaf lookups + node lookups, per proof: a handful of statements, no scan of the log
    assert len(statements) <= 6


def test_concurrent_appends_get_consecutive_indexes(store: SqlAuditStore) -> None:
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(t: int) -> None:
        barrier.wait()
        got: list[int] = []
        try:
            for i in range(50):
                indexes = store.append([make_entry(t * 100 + i)])
                if i % 10 == 0:
                    # Returned only after the commit: another connection sees the entry at once.
                    assert store.entry(indexes[0]) is not None
                got += indexes
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        results[t] = got

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    everything = sorted(i for got in results.values() for i in got)
    assert everything == list(range(400))
    for t, got in results.items():
        assert got == sorted(got)
        # Each caller's index really holds its entry.
        entry = store.entry(got[7])
        assert entry is not None and entry.entry["traceId"] == f"{t * 100 + 7:032x}"
    assert verify_log(store, store.verifier_key()).ok


def test_group_commit_batches_concurrent_callers(sqlite_log: Engine, signer: audit.LogSigner) -> None:
    store = SqlAuditStore(sqlite_log, signer)
    commits: list[int] = []
    first_insert = threading.Event()
    sa.event.listen(sqlite_log, "commit", lambda conn: commits.append(1))

    def slow_first_insert(conn: object, cursor: object, statement: str, *args: object) -> None:
        # Hold the first leader in its transaction so that the other callers queue up behind it.
        if statement.startswith("INSERT INTO audit_entries") and not first_insert.is_set():
            first_insert.set()
            threading.Event().wait(0.3)

    sa.event.listen(sqlite_log, "before_cursor_execute", slow_first_insert)
    results: list[list[int]] = []
    first = threading.Thread(target=lambda: results.append(store.append([make_entry(0)])))
    first.start()
    first_insert.wait(5)
    others = [
        threading.Thread(target=lambda n=n: results.append(store.append([make_entry(n)])))
        for n in range(1, 8)
    ]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join()
    assert sorted(i for r in results for i in r) == list(range(8))
    assert len(commits) == 2  # the first caller alone, then the seven that queued meanwhile together


def test_the_wal_is_checkpointed_by_the_log_and_starts_over_under_a_stream_of_appends(
    sqlite_log: Engine, signer: audit.LogSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log's commits do not checkpoint; the log does, and a long WAL is caught up so it starts over."""
    from audit._internal import store as store_module

    monkeypatch.setattr(store_module, "_CHECKPOINT_EVERY", 8)
    monkeypatch.setattr(store_module, "_WAL_RESET_FRAMES", 100)
    store = SqlAuditStore(sqlite_log, signer)
    seen: list[int] = []
    checkpoint = store._checkpoint_wal

    def recorded() -> None:
        checkpoint()
        seen.append(store._group.wal_frames)

    monkeypatch.setattr(store, "_checkpoint_wal", recorded)
    # Eight writers that never pause: checkpoints beside a stream of commits alone never reach its end.
    threads = [
        threading.Thread(target=lambda t=t: [store.append([make_entry(t * 100 + i)]) for i in range(40)])
        for t in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.size() == 320
    assert len(seen) >= 2  # the log checkpointed (its commits did not)
    assert any(later < earlier for earlier, later in itertools.pairwise(seen)), seen  # it started over
    # The pooled connections checkpoint on their own again for whoever uses them next.
    with sqlite_log.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    assert verify_log(store, store.verifier_key()).ok


def test_a_quiet_log_holds_no_connection(sqlite_log: Engine, signer: audit.LogSigner) -> None:
    """The write connection kept between busy batches goes back to the pool, checkpointing again."""
    store = SqlAuditStore(sqlite_log, signer)
    threads = [
        threading.Thread(target=lambda t=t: [store.append([make_entry(t * 100 + i)]) for i in range(20)])
        for t in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.append([make_entry(999)])  # a lone call that finds nobody queued
    assert store.size() == 161
    pool = sqlite_log.pool
    assert isinstance(pool, sa.pool.QueuePool) and pool.checkedout() == 0
    for _ in range(pool.checkedin()):  # every pooled connection, the one that wrote included
        with sqlite_log.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    assert verify_log(store, store.verifier_key()).ok


def test_two_stores_on_one_database_serialise(tmp_path: Path, signer: audit.LogSigner) -> None:
    """Like two gateway processes on one SQLite file: the database lock orders them, not the Python one."""
    path = tmp_path / "shared.db"
    create_log(sqlite_engine(path)).dispose()
    stores = [SqlAuditStore(sqlite_engine(path), signer) for _ in range(2)]
    try:
        _hammer_two(stores)
    finally:
        for s in stores:
            s.engine.dispose()


def test_two_stores_on_one_postgresql_serialise(pg_schema: str, signer: audit.LogSigner) -> None:
    create_log(pg_engine(pg_schema)).dispose()
    stores = [SqlAuditStore(pg_engine(pg_schema), signer) for _ in range(2)]
    try:
        _hammer_two(stores)
    finally:
        for s in stores:
            s.engine.dispose()


def _hammer_two(stores: list[SqlAuditStore]) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def writer(store: SqlAuditStore, base: int) -> None:
        for i in range(40):
            indexes = store.append([make_entry(base + i), make_entry(base + i + 1000)])
            with lock:
                got.extend(indexes)

    threads = [
        threading.Thread(target=writer, args=(s, k * 100)) for k, s in enumerate(stores) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(480))
    result = verify_log(stores[0], stores[0].verifier_key())
    assert result.ok, result.reason
    assert stores[0].root() == stores[1].root()


def test_a_failed_commit_writes_nothing_and_the_log_goes_on(
    sqlite_log: Engine, signer: audit.LogSigner
) -> None:
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(5)])
    with sqlite_log.begin() as conn:  # a real database error in the middle of the transaction
        conn.exec_driver_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON audit_entry_subjects WHEN NEW.pseudonym = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    with pytest.raises(AuditWriteError):
        store.append([make_entry(5), make_entry(6, subjects=["boom"]), make_entry(7)])
    assert store.size() == 5
    with sqlite_log.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_nodes").scalar() == 5 - 2
        assert conn.exec_driver_sql("SELECT max(idx) FROM audit_entry_agencies").scalar() == 4
    assert store.append([make_entry(5)]) == [5]
    assert verify_log(store, signer.verifier_key()).ok


def test_checkpoint_signs_the_current_tree_and_is_recorded(store: SqlAuditStore) -> None:
    assert store.latest_checkpoint() is None
    empty = verify_checkpoint(store.checkpoint(), store.verifier_key())
    assert (empty.size, empty.root) == (0, audit.EMPTY_ROOT)
    store.append([make_entry(i) for i in range(10)])
    note = store.checkpoint()
    cp = verify_checkpoint(note, store.verifier_key())
    assert (cp.origin, cp.size, cp.root) == (store.signer.origin, 10, store.root())
    latest = store.latest_checkpoint()
    assert latest is not None and (latest.size, latest.root, latest.note) == (10, cp.root, note)
    assert latest.created_at.tzinfo is not None
    assert store.checkpoint() == note  # nothing new: the same checkpoint, not another row
    store.append([make_entry(10)])
    assert verify_checkpoint(store.checkpoint(), store.verifier_key()).size == 11
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_checkpoints").scalar() == 3


def test_search_filters_and_paging(store: SqlAuditStore) -> None:
    entries = [make_entry(i) for i in range(60)]
    store.append(entries)

    def indexes(filters: SearchFilters | dict[str, object]) -> list[int]:
        out: list[int] = []
        cursor = None
        while True:
            items, cursor = store.search(filters, limit=7, cursor=cursor)
            assert len(items) <= 7
            out += [i.index for i in items]
            if cursor is None:
                return out

    def expect(pred: object) -> list[int]:
        return [i for i, e in enumerate(entries) if pred(e)]  # type: ignore[operator]

    assert indexes({}) == list(range(60))
    assert indexes({"case_id": "case-3"}) == expect(lambda e: e["caseId"] == "case-3")
    assert indexes(SearchFilters(agency="om")) == expect(
        lambda e: "om" in (e["actor"]["agency"], e["counterpart"])
    )
    assert indexes({"purpose": "melding_behandelen", "type": "case"}) == expect(
        lambda e: e["purpose"] == "melding_behandelen" and e["type"] == "case"
    )
    assert indexes({"information_type": "veiligheidsplan"}) == expect(
        lambda e: e["informationType"] == "veiligheidsplan"
    )
    subject = f"{2:064x}"
    assert indexes({"subject": subject}) == expect(lambda e: subject in e["subjects"])
    assert indexes({"trace_id": f"{42:032x}"}) == [42]
    t0 = dt.datetime(2026, 11, 28, 18, 0, 10, tzinfo=dt.UTC)
    t1 = dt.datetime(2026, 11, 28, 18, 0, 20, 123456, tzinfo=dt.UTC)
    assert indexes({"time_from": t0, "time_to": t1}) == list(range(10, 20))
    assert indexes(
        {"time_from": "2026-11-28T19:00:10+01:00", "time_to": "2026-11-28T18:00:20.123456Z"}
    ) == list(range(10, 20))
    both = indexes(SearchFilters(agency="politie", visible_to="veilig_thuis"))
    assert both == expect(lambda e: {"politie", "veilig_thuis"} <= {e["actor"]["agency"], e["counterpart"]})
    assert indexes({"case_id": "nope"}) == []

    page, cursor = store.search(limit=10)
    assert [i.index for i in page] == list(range(10)) and cursor == "10"
    page, cursor = store.search(limit=10, cursor=cursor)
    assert page[0].index == 10
    assert store.search(limit=5000)[0][-1].index == 59
    for bad_cursor in ["abc", "-1", "1e3", -1]:
        with pytest.raises(ValueError):
            store.search(cursor=bad_cursor)
    with pytest.raises(ValueError):
        store.search({"colour": "red"})
    with pytest.raises(ValueError):
        store.search({"time_from": "yesterday"})
    with pytest.raises(ValueError):
        store.search(limit=0)


def test_a_person_is_found_in_the_sealed_runs_and_after_them(
    store: SqlAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends seal subject runs as the log passes multiples of SUBJECT_RUN; a search reads runs and tail."""
    from audit._internal import schema

    monkeypatch.setattr(schema, "SUBJECT_RUN", 8)
    made: list[dict[str, object]] = []
    # Calls of varied sizes: some cross no multiple of 8, some two at once.
    for size in (1, 3, 5, 2, 16, 7, 1, 1, 13, 4):
        batch = [make_entry(len(made) + i) for i in range(size)]
        store.append(batch)
        made += batch
    assert len(made) == 53
    with store.engine.connect() as conn:
        sealed = [
            (int(e), str(p), int(i))
            for e, p, i in conn.exec_driver_sql("SELECT run_end, pseudonym, idx FROM audit_subject_runs")
        ]
        every = sorted(
            (str(p), int(i))
            for p, i in conn.exec_driver_sql("SELECT pseudonym, idx FROM audit_entry_subjects")
        )
    ends = sorted({e for e, _p, _i in sealed})
    # Sizes after each call: 1, 4, 9, 11, 27, 34, 35, 36, 49, 53. The call of 16 went from 11 to 27, past
    # 16 and 24: the runs ending at 16 and 24; that of 13 those ending at 40 and 48. A run a block each.
    assert ends == [8, 16, 24, 32, 40, 48]
    assert all(e - 8 <= i < e for e, _p, i in sealed)  # each row in the run of its entry
    assert sorted((p, i) for _e, p, i in sealed) == [(p, i) for p, i in every if i < 48]

    def pages(filters: dict[str, object], limit: int) -> list[int]:
        out: list[int] = []
        cursor = None
        while True:
            items, cursor = store.search(filters, limit=limit, cursor=cursor)
            out += [i.index for i in items]
            if cursor is None:
                return out

    for n in range(4):
        person = f"{n:064x}"
        expected = [i for i, e in enumerate(made) if person in e["subjects"]]  # type: ignore[operator]
        assert expected and expected[-1] >= 48  # in runs and in the tail
        for limit in (1, 3, 100):
            assert pages({"subject": person}, limit) == expected
        by_agency = [i for i in expected if "om" in (made[i]["actor"]["agency"], made[i]["counterpart"])]  # type: ignore[index]
        assert pages({"subject": person, "visible_to": "om"}, 2) == by_agency
    # A time range: bounds inside runs (entries 10..44).
    t0 = dt.datetime(2026, 11, 28, 18, 0, 10, tzinfo=dt.UTC)
    t1 = dt.datetime(2026, 11, 28, 18, 0, 45, tzinfo=dt.UTC)
    person = f"{1:064x}"
    within = [i for i in range(10, 45) if person in made[i]["subjects"]]  # type: ignore[operator]
    assert pages({"subject": person, "time_from": t0, "time_to": t1}, 2) == within
    assert pages({"subject": "0" * 63 + "9"}, 5) == []
    assert verify_log(store, store.verifier_key()).ok
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_subject_runs")


def test_a_failed_seal_fails_its_batch_whole(
    sqlite_log: Engine, signer: audit.LogSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is written in the append's transaction: if it fails, neither the run nor the entries land."""
    from audit._internal import schema

    monkeypatch.setattr(schema, "SUBJECT_RUN", 8)
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(5)])
    with sqlite_log.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER boom BEFORE INSERT ON audit_subject_runs "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    with pytest.raises(AuditWriteError):
        store.append([make_entry(i) for i in range(5, 9)])
    assert store.size() == 5
    with sqlite_log.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_subject_runs").scalar() == 0
        assert conn.exec_driver_sql("SELECT max(idx) FROM audit_entry_subjects").scalar() == 4
    assert store.append([make_entry(5)]) == [5]  # below the next multiple: no run, no trigger
    assert verify_log(store, signer.verifier_key()).ok


# (audit_subject_runs: its rows need 4,096 entries; its triggers are tested with the runs themselves.)
TABLES = ["audit_entries", "audit_entry_agencies", "audit_entry_subjects", "audit_nodes", "audit_checkpoints"]


def test_triggers_refuse_update_and_delete(store: SqlAuditStore) -> None:
    store.append([make_entry(i) for i in range(4)])
    store.checkpoint()
    statements = [f"DELETE FROM {t}" for t in TABLES] + [
        "UPDATE audit_entries SET leaf_data = leaf_data",
        "UPDATE audit_entry_agencies SET agency = 'om'",
        "UPDATE audit_entry_subjects SET pseudonym = 'x'",
        "UPDATE audit_nodes SET hash = hash",
        "UPDATE audit_checkpoints SET note = note",
    ]
    if store.engine.dialect.name == "postgresql":
        statements += [f"TRUNCATE {t} CASCADE" for t in TABLES]
    for statement in statements:
        with store.engine.connect() as conn, pytest.raises(sa.exc.DatabaseError, match="append-only"):
            conn.exec_driver_sql(statement)
    assert store.size() == 4
    assert verify_log(store, store.verifier_key()).ok


def test_trigger_ddl_is_idempotent_and_removable(engine: Engine) -> None:
    with engine.begin() as conn:
        audit.install_append_only_triggers(conn)  # a second time: no error
    with engine.begin() as conn:
        audit.remove_append_only_triggers(conn)
    node = sa.insert(sa.table("audit_nodes", sa.column("level"), sa.column("idx"), sa.column("hash")))
    with engine.begin() as conn:
        conn.execute(node, {"level": 1, "idx": 0, "hash": bytes(32)})
        conn.exec_driver_sql("DELETE FROM audit_nodes")  # allowed again
        conn.execute(node, {"level": 1, "idx": 0, "hash": bytes(32)})
        audit.install_append_only_triggers(conn)
    # Row triggers fire only for rows that exist, hence the row above.
    with engine.connect() as conn, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        conn.exec_driver_sql("DELETE FROM audit_nodes")
