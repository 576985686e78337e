"""Tamper evidence: edit the stored log behind the store's back and expect the verifier to say where.

The triggers are dropped first (an operator with table-owner rights can do that): the triggers make
tampering harder, the tree and the signed checkpoints make it evident.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

import audit
from audit import (
    InvalidNote,
    InvalidProof,
    LogCorrupted,
    LogSigner,
    SqlAuditStore,
    check_consistency,
    export_lines,
    leaf_hash,
    verify_checkpoint,
    verify_export,
    verify_log,
)
from audit._internal import schema
from audit._internal import verify as verify_module
from audit._internal.columns import extract
from tests.audit import tamper
from tests.audit.conftest import ORIGIN, create_log, make_entry, sqlite_engine


@pytest.fixture
def log(sqlite_log: Engine, signer: LogSigner) -> Iterator[SqlAuditStore]:
    """20 entries with checkpoints at sizes 10 and 20, triggers removed so the test can tamper."""
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(10)])
    store.checkpoint()
    store.append([make_entry(i) for i in range(10, 20)])
    store.checkpoint()
    assert verify_log(store, signer.verifier_key()).ok
    with sqlite_log.begin() as conn:
        audit.remove_append_only_triggers(conn)
    yield store


def sql(store: SqlAuditStore, statement: str, **params: object) -> None:
    tamper.sql(store.engine, statement, **params)


def leaf(store: SqlAuditStore, index: int) -> bytes:
    return tamper.leaf(store.engine, index)


def rebuild_tree(store: SqlAuditStore) -> None:
    """What a careful forger does after editing leaf_data: fix every leaf hash and stored node."""
    tamper.rebuild_tree(store.engine)


def check(store: SqlAuditStore, **kwargs: object) -> audit.VerifyResult:
    """``verify_log`` in this process, and again over two worker processes with chunks of 4 entries.

    Both must give the same verdict, index, reason and root: the parallel check is the same check.
    """
    serial = verify_log(store, store.verifier_key(), workers=1, **kwargs)  # type: ignore[arg-type]
    saved = verify_module._CHUNK_LEVEL
    verify_module._CHUNK_LEVEL = 2
    try:
        parallel = verify_log(store, store.verifier_key(), workers=2, **kwargs)  # type: ignore[arg-type]
    finally:
        verify_module._CHUNK_LEVEL = saved
    assert (parallel.ok, parallel.first_bad_index, parallel.reason, parallel.root, parallel.size) == (
        serial.ok,
        serial.first_bad_index,
        serial.reason,
        serial.root,
        serial.size,
    )
    return serial


def test_an_edited_entry_is_named(log: SqlAuditStore) -> None:
    sql(
        log,
        "UPDATE audit_entries SET leaf_data = :d WHERE idx = 5",
        d=leaf(log, 5).replace(b"delivered", b"withdrawn"),
    )
    result = check(log)
    assert not result.ok
    assert result.first_bad_index == 5
    assert "leaf hash does not match its data" in result.reason


def test_a_deleted_entry_is_named(log: SqlAuditStore) -> None:
    for table in ("audit_entry_agencies", "audit_entry_subjects", "audit_entries"):
        sql(log, f"DELETE FROM {table} WHERE idx = 7")
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 7)
    assert "entry 7 is missing" in result.reason


def test_reordered_entries_are_named(log: SqlAuditStore) -> None:
    three, five = leaf(log, 3), leaf(log, 5)
    sql(log, "UPDATE audit_entries SET leaf_data = :d WHERE idx = 3", d=five)
    sql(log, "UPDATE audit_entries SET leaf_data = :d WHERE idx = 5", d=three)
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 3)


def test_swapped_rows_with_their_hashes_are_caught_by_the_stored_nodes(log: SqlAuditStore) -> None:
    with log.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # outside a transaction, or SQLite ignores it
        conn.commit()
        for table in ("audit_entries", "audit_entry_agencies", "audit_entry_subjects"):
            conn.exec_driver_sql(f"UPDATE {table} SET idx = 1000 WHERE idx = 3")
            conn.exec_driver_sql(f"UPDATE {table} SET idx = 3 WHERE idx = 5")
            conn.exec_driver_sql(f"UPDATE {table} SET idx = 5 WHERE idx = 1000")
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.commit()
    result = check(log)
    assert not result.ok
    # Each row is self-consistent; only the subtree over entries 2..3 shows the change, and a hash
    # cannot say which of its two leaves moved: the verdict is the subtree's first entry.
    assert result.first_bad_index == 2
    assert "entries 2..3" in result.reason


def test_an_inserted_entry_is_named(log: SqlAuditStore) -> None:
    """A forged entry slipped in at index 4, later entries moved up one, its row fully consistent."""
    forged = audit.canonical_json(make_entry(4, outcome="withdrawn"))
    cols = extract(json.loads(forged))
    with log.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # outside a transaction, or SQLite ignores it
        conn.commit()
        for table in ("audit_entries", "audit_entry_agencies", "audit_entry_subjects"):
            conn.exec_driver_sql(f"UPDATE {table} SET idx = idx + 1000 WHERE idx >= 4")
            conn.exec_driver_sql(f"UPDATE {table} SET idx = idx - 999 WHERE idx >= 1000")
        conn.execute(
            sa.insert(schema.entries).values(idx=4, leaf_data=forged, leaf_hash=leaf_hash(forged), **cols.row)
        )
        for agency, role in cols.agencies:
            conn.execute(sa.insert(schema.entry_agencies).values(idx=4, agency=agency, role=role))
        for pseudonym in cols.subjects:
            conn.execute(sa.insert(schema.entry_subjects).values(idx=4, pseudonym=pseudonym))
        conn.commit()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.commit()
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 4)
    assert "stored tree node over entries 4..5" in result.reason
    # Recomputing the tree hides it from the tree, not from the checkpoints signed before.
    rebuild_tree(log)
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 0)
    assert "[0, 10)" in result.reason


def test_a_log_rewritten_with_a_new_key_is_caught_by_the_pinned_key(
    log: SqlAuditStore, signer: LogSigner
) -> None:
    kept = log.latest_checkpoint()
    assert kept is not None
    sql(
        log,
        "UPDATE audit_entries SET leaf_data = :d WHERE idx = 3",
        d=audit.canonical_json(make_entry(3, v=2)),
    )
    rebuild_tree(log)
    sql(log, "DELETE FROM audit_checkpoints")
    # The attacker has no old key: they make a new one, put it where the gateway reads it, and sign.
    forger = SqlAuditStore(log.engine, LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
    forged = forger.checkpoint()
    assert verify_log(forger, forger.verifier_key()).ok  # the database agrees with itself and its key
    pinned = verify_log(forger, signer.verifier_key())
    assert not pinned.ok and "does not verify" in pinned.reason
    both = verify_log(forger, [signer.verifier_key(), forger.verifier_key()], trusted_checkpoints=[kept.note])
    assert (both.ok, both.first_bad_index) == (False, 0)
    assert "trusted checkpoint 1" in both.reason
    proof = forger.consistency_proof(kept.size, forger.size())
    with pytest.raises(InvalidNote):
        check_consistency(kept.note, forged, proof, signer.verifier_key())
    with pytest.raises(InvalidProof):
        check_consistency(kept.note, forged, proof, [signer.verifier_key(), forger.verifier_key()])


def test_an_edited_search_column_is_named(log: SqlAuditStore) -> None:
    """Hiding an entry from a privacy officer's search by editing the index is tampering too."""
    sql(log, "UPDATE audit_entries SET case_id = 'other' WHERE idx = 9")
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 9)
    assert "case_id" in result.reason
    sql(log, "UPDATE audit_entries SET case_id = :c WHERE idx = 9", c=make_entry(9)["caseId"])
    sql(log, "DELETE FROM audit_entry_subjects WHERE idx = 11")
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 11)
    assert "subjects" in result.reason


def test_a_sealed_subject_run_that_differs_from_its_entries_is_named(
    sqlite_log: Engine, signer: LogSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search by person reads the sealed runs: a row taken out hides an entry from it, a row added or
    moved names an entry that is not the person's (runs of 4 entries, so also within check's chunks)."""
    monkeypatch.setattr(schema, "SUBJECT_RUN", 4)
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(10)])
    store.append([make_entry(i) for i in range(10, 22)])
    store.checkpoint()
    with sqlite_log.connect() as conn:
        ends = sorted({e for (e,) in conn.exec_driver_sql("SELECT run_end FROM audit_subject_runs")})
        (person,) = conn.exec_driver_sql(
            "SELECT pseudonym FROM audit_entry_subjects WHERE idx = 9"
        ).first() or ("",)
    assert ends == [4, 8, 12, 16, 20]
    assert check(store).ok
    with sqlite_log.begin() as conn:
        audit.remove_append_only_triggers(conn)
    sql(store, "DELETE FROM audit_subject_runs WHERE idx = 9 AND pseudonym = :p", p=person)
    result = check(store)
    assert (result.ok, result.first_bad_index) == (False, 9)
    assert "audit_subject_runs: the run ending at 12 differs" in result.reason
    sql(store, "INSERT INTO audit_subject_runs VALUES (12, :p, 10)", p=person)  # moved to entry 10
    assert (check(store).ok, check(store).first_bad_index) == (False, 9)
    sql(store, "DELETE FROM audit_subject_runs WHERE idx = 10 AND pseudonym = :p", p=person)
    sql(store, "INSERT INTO audit_subject_runs VALUES (12, :p, 9)", p=person)
    assert check(store).ok
    sql(store, "INSERT INTO audit_subject_runs VALUES (16, 'someone-else', 13)")
    result = check(store)
    assert (result.ok, result.first_bad_index) == (False, 13)
    sql(store, "DELETE FROM audit_subject_runs WHERE pseudonym = 'someone-else'")
    sql(store, "DELETE FROM audit_subject_runs WHERE run_end = 4")  # a whole run gone
    assert (check(store).ok, check(store).first_bad_index) == (False, 0)


def test_an_added_search_row_is_named(log: SqlAuditStore) -> None:
    """A row that makes an entry turn up in another agency's or person's search is tampering too."""
    sql(log, "INSERT INTO audit_entry_agencies (idx, agency, role) VALUES (13, 'nobody', 'actor')")
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 13)
    assert result.reason == "entry 13: its search columns (agencies) do not match its data"
    sql(log, "DELETE FROM audit_entry_agencies WHERE agency = 'nobody'")
    sql(log, "INSERT INTO audit_entry_subjects (idx, pseudonym) VALUES (4, 'someone-else')")
    result = check(log, batch_size=3)  # the row in the middle of a batch, not at its start
    assert (result.ok, result.first_bad_index) == (False, 4)
    assert result.reason == "entry 4: its search columns (subjects) do not match its data"


def test_a_row_outside_the_tree_is_reported(log: SqlAuditStore) -> None:
    fake = audit.canonical_json(make_entry(99))
    with log.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA ignore_check_constraints = ON")
        conn.execute(
            sa.text("INSERT INTO audit_entries (idx, leaf_data, leaf_hash) VALUES (-1, :d, :h)"),
            {"d": fake, "h": leaf_hash(fake)},
        )
        conn.commit()
        conn.exec_driver_sql("PRAGMA ignore_check_constraints = OFF")
    result = check(log)
    assert not result.ok and "negative index" in result.reason


def test_a_truncated_log_is_caught_by_its_checkpoint(log: SqlAuditStore) -> None:
    for table in ("audit_entry_agencies", "audit_entry_subjects", "audit_entries"):
        sql(log, f"DELETE FROM {table} WHERE idx >= 15")
    sql(log, "DELETE FROM audit_nodes WHERE ((idx + 1) << level) > 15")
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 15)
    assert "covers 20 entries" in result.reason


def test_a_consistent_rewrite_is_caught_by_the_stored_checkpoints(log: SqlAuditStore) -> None:
    entry = make_entry(12, outcome="withdrawn")
    sql(log, "UPDATE audit_entries SET leaf_data = :d WHERE idx = 12", d=audit.canonical_json(entry))
    rebuild_tree(log)
    result = check(log)
    assert not result.ok
    # The checkpoint of 10 entries still matches, that of 20 does not: the change is in [10, 20).
    assert result.first_bad_index == 10
    assert "[10, 20)" in result.reason
    # And the log refuses to sign a checkpoint that contradicts what it signed before.
    log.append([make_entry(20)])
    with pytest.raises(LogCorrupted):
        log.checkpoint()


def test_a_rewrite_that_also_drops_the_checkpoints_needs_an_outside_checkpoint(log: SqlAuditStore) -> None:
    kept_by_a_witness = log.latest_checkpoint()
    assert kept_by_a_witness is not None
    sql(
        log,
        "UPDATE audit_entries SET leaf_data = :d WHERE idx = 3",
        d=audit.canonical_json(make_entry(3, v=2)),
    )
    rebuild_tree(log)
    sql(log, "DELETE FROM audit_checkpoints")
    # With nothing signed left inside the database, the database agrees with itself...
    assert check(log).ok
    # ...but not with the checkpoint the witness kept.
    result = check(log, trusted_checkpoints=[kept_by_a_witness.note])
    assert (result.ok, result.first_bad_index) == (False, 0)
    assert "trusted checkpoint 1" in result.reason
    # A compromised gateway (it has the key) can sign the forged tree; the witness still catches it.
    forged = log.checkpoint()
    proof = log.consistency_proof(kept_by_a_witness.size, log.size())
    with pytest.raises(InvalidProof):
        check_consistency(kept_by_a_witness.note, forged, proof, log.verifier_key())


def test_forged_or_edited_checkpoint_rows_are_reported(log: SqlAuditStore) -> None:
    forger = LogSigner(Ed25519PrivateKey.generate(), ORIGIN)
    note = forger.sign_checkpoint(20, log.root())
    sql(
        log,
        "INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) "
        "VALUES (20, :r, :n, '2026-01-01')",
        r=log.root(),
        n=note,
    )
    result = check(log)
    assert not result.ok and result.first_bad_index is None
    assert "does not verify" in result.reason
    sql(log, "DELETE FROM audit_checkpoints WHERE note = :n", n=note)
    sql(log, "UPDATE audit_checkpoints SET tree_size = 3 WHERE tree_size = 10")
    result = check(log)
    assert not result.ok and "differ from its signed note" in result.reason


def test_a_stored_node_edit_is_named(log: SqlAuditStore) -> None:
    sql(log, "UPDATE audit_nodes SET hash = :h WHERE level = 2 AND idx = 3", h=bytes(32))
    result = check(log)
    assert (result.ok, result.first_bad_index) == (False, 12)
    assert "entries 12..15" in result.reason


def test_rotated_keys_verify_with_both_keys(log: SqlAuditStore, signer: LogSigner) -> None:
    rotated = SqlAuditStore(log.engine, LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
    rotated.append([make_entry(20)])
    rotated.checkpoint()
    assert not verify_log(rotated, rotated.verifier_key()).ok  # old checkpoints: another key
    assert verify_log(rotated, [signer.verifier_key(), rotated.verifier_key()]).ok


def test_tampering_is_found_on_each_database(store: SqlAuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "SUBJECT_RUN", 4)  # sealed runs to check, with the database's own SQL
    store.append([make_entry(i) for i in range(12)])
    store.checkpoint()
    assert verify_log(store.engine, store.verifier_key()).ok
    with store.engine.begin() as conn:
        audit.remove_append_only_triggers(conn)
        conn.execute(sa.text("DELETE FROM audit_subject_runs WHERE idx = 5"))
    result = verify_log(store.engine, store.verifier_key())
    assert (result.ok, result.first_bad_index) == (False, 5)
    assert result.reason.startswith("audit_subject_runs: the run ending at 8 differs")
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_entries SET leaf_data = :d WHERE idx = 3"),
            {"d": audit.canonical_json(make_entry(3, outcome="withdrawn"))},
        )
    result = verify_log(store.engine, store.verifier_key())
    assert (result.ok, result.first_bad_index) == (False, 3)


# -- offline export ----------------------------------------------------------------------------------


def exported(store: SqlAuditStore) -> tuple[list[str], str]:
    note = store.checkpoint()
    return list(export_lines(store.iter_entries())), note


def test_export_round_trip(store: SqlAuditStore) -> None:
    store.append([make_entry(i) for i in range(25)])
    lines, note = exported(store)
    assert json.loads(lines[3]) == {
        "index": 3,
        "leafData": base64.b64encode(audit.canonical_json(make_entry(3))).decode(),
    }
    seen: list[int] = []
    result = verify_export(lines, note, store.verifier_key(), progress=seen.append)
    assert result.ok and result.size == 25 and result.root == store.root(), result.reason
    assert seen[-1] == 25
    # bytes lines, blank lines and lines newer than the checkpoint are fine
    store.append([make_entry(25)])
    newer = [line.encode() for line in export_lines(store.iter_entries())] + [b"\n"]
    result = verify_export(newer, note, store.verifier_key())
    assert result.ok and "1 later entries are not covered" in result.reason


def test_export_tampering(sqlite_log: Engine, signer: LogSigner) -> None:
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(25)])
    lines, note = exported(store)
    key = signer.verifier_key()

    edited = list(lines)
    edited[4] = json.dumps({"index": 4, "leafData": base64.b64encode(b'{"v":2}').decode()})
    result = verify_export(edited, note, key)
    assert not result.ok and "do not hash to the checkpoint's root" in result.reason

    result = verify_export(lines[:6] + lines[7:], note, key)
    assert (result.ok, result.first_bad_index) == (False, 6)

    result = verify_export(lines[:20], note, key)
    assert (result.ok, result.first_bad_index) == (False, 20)
    assert "ends after 20 entries" in result.reason

    result = verify_export([*lines[:2], "not json", *lines[3:]], note, key)
    assert (result.ok, result.first_bad_index) == (False, 2)

    other = LogSigner(Ed25519PrivateKey.generate(), ORIGIN)
    result = verify_export(lines, note, other.verifier_key())
    assert not result.ok and "checkpoint does not verify" in result.reason


# -- witnesses ---------------------------------------------------------------------------------------


def test_check_consistency_between_checkpoints(sqlite_log: Engine, signer: LogSigner) -> None:
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(10)])
    old = store.checkpoint()
    store.append([make_entry(i) for i in range(10, 23)])
    new = store.checkpoint()
    key = signer.verifier_key()
    assert check_consistency(old, new, store.consistency_proof(10, 23), key).size == 23
    assert check_consistency(old, old, [], key).size == 10
    with pytest.raises(InvalidProof):
        check_consistency(new, old, [], key)  # a log never shrinks
    with pytest.raises(InvalidProof):
        check_consistency(old, new, store.consistency_proof(9, 23), key)
    elsewhere = LogSigner(Ed25519PrivateKey.generate(), "other.example/log")
    with pytest.raises(InvalidNote):
        check_consistency(old, new, store.consistency_proof(10, 23), elsewhere.verifier_key())


def test_a_forked_log_is_caught_by_a_witness(tmp_path: Path, signer: LogSigner, sqlite_log: Engine) -> None:
    honest = SqlAuditStore(sqlite_log, signer)
    fork_engine = create_log(sqlite_engine(tmp_path / "fork.db"))
    fork = SqlAuditStore(fork_engine, signer)
    shared = [make_entry(i) for i in range(6)]
    honest.append([*shared, *[make_entry(i) for i in range(6, 12)]])
    fork.append([*shared, *[make_entry(i, outcome="withdrawn") for i in range(6, 16)]])
    seen_by_witness = honest.checkpoint()
    shown_later = fork.checkpoint()
    with pytest.raises(InvalidProof):
        check_consistency(seen_by_witness, shown_later, fork.consistency_proof(12, 16), signer.verifier_key())
    # Up to the fork the two agree.
    early_honest = signer.sign_checkpoint(6, honest.root(6))
    check_consistency(early_honest, shown_later, fork.consistency_proof(6, 16), signer.verifier_key())
    fork_engine.dispose()


def test_verify_while_the_log_grows(store: SqlAuditStore) -> None:
    """Verifications overlap a writer that appends and signs checkpoints; each sees a consistent log.

    No timing is assumed: before each verification the writer must have appended since the previous
    one started (waited for, with a deadline only as a hang guard), so the log provably grows between
    and during the runs however slowly either thread is scheduled.
    """
    store.append([make_entry(i) for i in range(50)])
    store.checkpoint()
    stop = threading.Event()
    grown = threading.Condition()
    appended = [0]
    failures: list[BaseException] = []

    def grow() -> None:
        n = 50
        try:
            while not stop.is_set():
                store.append([make_entry(n)])
                if n % 7 == 0:
                    store.checkpoint()
                n += 1
                with grown:
                    appended[0] += 1
                    grown.notify_all()
        except BaseException as e:  # reported by the main thread
            failures.append(e)
            with grown:
                grown.notify_all()

    writer = threading.Thread(target=grow)
    writer.start()
    results = []
    try:
        for _ in range(5):
            seen = appended[0]
            with grown:
                assert grown.wait_for(lambda: appended[0] > seen or failures, timeout=120), "writer hung"
            assert not failures, failures
            results.append(verify_log(store, store.verifier_key(), batch_size=16))
    finally:
        stop.set()
        writer.join(timeout=120)
    assert not failures, failures
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    sizes = [r.size for r in results]
    assert sizes == sorted(sizes) and sizes[0] > 50 and sizes[-1] > sizes[0], sizes


def test_an_append_between_the_verifiers_reads_is_no_false_alarm(
    sqlite_log: Engine, signer: LogSigner
) -> None:
    store = SqlAuditStore(sqlite_log, signer)
    store.append([make_entry(i) for i in range(9)])
    store.checkpoint()
    armed = [True]

    def append_right_after_the_size_is_read(
        conn: object, cursor: object, statement: str, *args: object
    ) -> None:
        if armed[0] and statement.startswith("SELECT max(audit_entries.idx)"):
            armed[0] = False
            store.append([make_entry(9), make_entry(10), make_entry(11)])  # completes nodes over 8..11
            store.checkpoint()

    sa.event.listen(sqlite_log, "after_cursor_execute", append_right_after_the_size_is_read)
    try:
        result = verify_log(store, signer.verifier_key())
    finally:
        sa.event.remove(sqlite_log, "after_cursor_execute", append_right_after_the_size_is_read)
    assert not armed[0]
    assert result.ok, result.reason
    assert result.size == 9


# -- garbage in any column: a finding naming the index, never a traceback -----------------------------
#
# SQLite stores whatever is written to a column. The log never writes text into a BLOB, NULL into a
# leaf, or a float into an index; someone with the file can. Each example copies a template log,
# writes one raw value into one column of one row with sqlite3 (triggers gone, NOT NULL and CHECK
# constraints stripped from the schema, as the file's owner can), and expects a verdict.

GARBAGE = st.one_of(
    st.binary(max_size=40),
    # A marker no finding uses, so "never repeats the value" cannot be fooled by text such as "leaf"
    # that a finding contains by its own wording.
    st.text(max_size=40).map(lambda s: "\u00a7" + s),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)
ENTRY_TABLES = ("audit_entries", "audit_entry_agencies", "audit_entry_subjects")
# A checkpoint's id is SQLite's rowid: only another integer fits, and renumbering a checkpoint is harmless.
COLUMNS = [
    (t.name, c.name)
    for t in audit.metadata.sorted_tables
    for c in t.columns
    if (t.name, c.name) != ("audit_checkpoints", "id")
]
TEMPLATE_SIZE = 20
_TEMPLATE_KEY = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log of 20 entries and two checkpoints whose schema no longer refuses anything."""
    path = tmp_path_factory.mktemp("garbage") / "template.db"
    engine = create_log(sqlite_engine(path))
    store = SqlAuditStore(engine, LogSigner(_TEMPLATE_KEY, ORIGIN))
    store.append([make_entry(i) for i in range(8)])
    store.checkpoint()
    store.append([make_entry(i) for i in range(8, TEMPLATE_SIZE)])
    store.checkpoint()
    tamper.drop_triggers(engine)
    engine.dispose()
    db = sqlite3.connect(path)
    db.execute("PRAGMA writable_schema = ON")
    for name, ddl in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall():
        # A WITHOUT ROWID table keeps that (and its primary key columns stay NOT NULL regardless).
        body, rowid_clause = re.fullmatch(r"(.*?\))(\s*WITHOUT ROWID)?\s*", ddl, re.S).groups()  # type: ignore[union-attr]
        loose = re.sub(r"CONSTRAINT \w+ CHECK \((?:[^()]|\([^()]*\))*\)", "", body.replace(" NOT NULL", ""))
        loose = re.sub(r",\s*,", ",", re.sub(r",\s*\)\s*$", ")", loose)) + (rowid_clause or "")
        db.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (loose, name))
    db.commit()
    db.close()
    check = sqlite_engine(path)
    assert verify_log(check, str(LogSigner(_TEMPLATE_KEY, ORIGIN).verifier)).ok
    check.dispose()
    return path


def _write_garbage(db: Path, table: str, column: str, row: int, value: object) -> dict[str, object] | None:
    """Set one column of the row-th row of ``table``; returns the row before, or None if refused."""
    conn = sqlite3.connect(db)
    try:
        # A row by its rowid, or by its primary key in a WITHOUT ROWID table (which has no rowid).
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        key = [name for _cid, name, _type, _nn, _default, pk in sorted(info, key=lambda c: c[5]) if pk]
        rowid_table = conn.execute(
            "SELECT sql NOT LIKE '%WITHOUT ROWID' FROM sqlite_master WHERE type = 'table' AND name = ?",
            (table,),
        ).fetchone()[0]
        key = ["rowid"] if rowid_table else key
        columns = ", ".join(f'"{k}"' for k in key)
        keys = conn.execute(f'SELECT {columns} FROM "{table}" ORDER BY {columns}').fetchall()
        if not keys:
            return None  # a table this log has no rows in yet (cosignatures without witnesses)
        chosen = keys[row % len(keys)]
        where = " AND ".join(f'"{k}" IS ?' for k in key)
        cursor = conn.execute(f'SELECT * FROM "{table}" WHERE {where}', chosen)
        before = dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))
        same = conn.execute(
            f'SELECT "{column}" IS ? FROM "{table}" WHERE {where}', (value, *chosen)
        ).fetchone()
        if same[0]:
            return None
        conn.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE {where}', (value, *chosen))
        conn.commit()
    except sqlite3.DatabaseError:
        return None  # the file refused this value (a duplicate key, an index that is not an integer)
    finally:
        conn.close()
    return before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(COLUMNS), row=st.integers(min_value=0, max_value=200), value=GARBAGE)
def test_garbage_in_any_column_is_a_finding_that_names_where(
    template: Path, target: tuple[str, str], row: int, value: object
) -> None:
    table, column = target
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "audit.db"
        shutil.copyfile(template, db)
        before = _write_garbage(db, table, column, row, value)
        if before is None:
            return
        engine = sqlite_engine(db)
        try:
            result = verify_log(engine, str(LogSigner(_TEMPLATE_KEY, ORIGIN).verifier))
        finally:
            engine.dispose()
    assert not result.ok
    if table in ENTRY_TABLES:
        index = before["idx"]
        assert isinstance(index, int)
        assert result.first_bad_index is not None and result.first_bad_index <= index, result.reason
        assert f"{result.first_bad_index}" in result.reason
    elif table == "audit_nodes":
        first = int(before["idx"]) << int(before["level"])  # type: ignore[call-overload]
        assert result.first_bad_index is not None and result.first_bad_index <= first, result.reason
    else:
        assert any(f"checkpoint #{before['id']}" in p for p in result.problems), result.problems
    # Garbage may be someone's personal data: the verdict describes it, never repeats it.
    if isinstance(value, str) and len(value) > 3:
        assert all(value not in p for p in result.problems)


@pytest.mark.parametrize(
    ("column", "value", "said"),
    [
        ("leaf_data", "text instead of bytes", "leaf_data is text, not bytes"),
        ("leaf_data", None, "leaf_data is NULL, not bytes"),
        ("leaf_hash", 12345, "leaf_hash is an integer, not bytes"),
        ("leaf_hash", 1.5, "leaf_hash is a real number, not bytes"),
        ("entry_time", b"\x00\xff", "search columns (entry_time)"),
        ("entry_time", "not a time", "search columns (entry_time)"),
    ],
)
def test_a_wrong_type_in_an_entry_says_which_column(
    template: Path, tmp_path: Path, column: str, value: object, said: str
) -> None:
    db = tmp_path / "audit.db"
    shutil.copyfile(template, db)
    assert _write_garbage(db, "audit_entries", column, 7, value) is not None
    engine = sqlite_engine(db)
    result = verify_log(engine, str(LogSigner(_TEMPLATE_KEY, ORIGIN).verifier))
    assert not result.ok
    assert result.first_bad_index == 7
    assert result.reason.startswith("entry 7: ") and said in result.reason, result.reason
    # The store's own reads name the entry too, rather than failing with a TypeError.
    if column == "leaf_data":
        store = SqlAuditStore(engine, LogSigner(_TEMPLATE_KEY, ORIGIN))
        with pytest.raises(LogCorrupted, match="entry 7"):
            store.entry(7)
        with pytest.raises(LogCorrupted, match="entry 7"):
            store.search({"case_id": make_entry(7)["caseId"]})
    engine.dispose()


def test_a_leaf_that_is_not_a_json_object_is_refused_by_reads(template: Path, tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    shutil.copyfile(template, db)
    for data in (b"\xff\xfe not json", b"[1, 2]", b"[" * 100_000):
        assert _write_garbage(db, "audit_entries", "leaf_data", 3, data) is not None
        engine = sqlite_engine(db)
        with pytest.raises(LogCorrupted, match="entry 3"):
            SqlAuditStore(engine, LogSigner(_TEMPLATE_KEY, ORIGIN)).entry(3)
        result = verify_log(engine, str(LogSigner(_TEMPLATE_KEY, ORIGIN).verifier))
        assert result.first_bad_index == 3, result.reason
        engine.dispose()


@pytest.mark.parametrize(
    ("column", "value"), [("hash", "text"), ("hash", None), ("hash", b"short"), ("hash", 7)]
)
def test_a_garbage_tree_node_is_logcorrupted_for_proofs_and_checkpoints(
    template: Path, tmp_path: Path, column: str, value: object
) -> None:
    db = tmp_path / "audit.db"
    shutil.copyfile(template, db)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE audit_nodes SET hash = ? WHERE level = 4 AND idx = 0", (value,))
    conn.commit()
    conn.close()
    engine = sqlite_engine(db)
    store = SqlAuditStore(engine, LogSigner(_TEMPLATE_KEY, ORIGIN))
    with pytest.raises(LogCorrupted, match="entry 0"):
        store.inclusion_proof(17, TEMPLATE_SIZE)  # its path takes the subtree over 0..15
    with pytest.raises(audit.AuditWriteError):
        store.append([make_entry(99)])  # the tree's right edge is read from the same node
    result = verify_log(engine, store.verifier_key())
    assert not result.ok and result.first_bad_index == 0, result.reason
    engine.dispose()


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("note", b"bytes"),
        ("note", None),
        ("note", 3),
        ("root_hash", "text"),
        ("tree_size", "twenty"),
        ("created_at", "yesterday"),
        ("created_at", 1.5),
    ],
)
def test_a_garbage_checkpoint_row_is_named_and_never_crashes(
    template: Path, tmp_path: Path, column: str, value: object
) -> None:
    db = tmp_path / "audit.db"
    shutil.copyfile(template, db)
    assert _write_garbage(db, "audit_checkpoints", column, 1, value) is not None
    engine = sqlite_engine(db)
    signer = LogSigner(_TEMPLATE_KEY, ORIGIN)
    result = verify_log(engine, signer.verifier_key())
    assert not result.ok
    assert any("checkpoint #2" in p for p in result.problems), result.problems
    store = SqlAuditStore(engine, signer)
    # Signing goes on from the last checkpoint a known key signed (#1): garbage anchors nothing.
    assert verify_checkpoint(store.checkpoint(), signer.verifier).size == TEMPLATE_SIZE
    engine.dispose()
