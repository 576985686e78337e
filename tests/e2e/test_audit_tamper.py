"""``gateway audit verify`` on a tampered database file: it fails and names the first bad index.

The data directory is the gateway's own (migrated schema, audit key, origin from the settings). The
attacker has the file: drops the triggers with sqlite3 and edits rows; the careful attacker recomputes
every hash, deletes the stored checkpoints and signs with a key of their own. Only what is kept outside
the data directory (the verifier key, a checkpoint) catches that last one.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from audit import LogSigner, SqlAuditStore, canonical_json, leaf_hash, load_or_create_signing_key, witness
from audit._internal.columns import extract
from gateway.cli import app as cli
from gateway.db import make_engine
from gateway.migrations import upgrade
from gateway.settings import Settings
from tests.audit import tamper
from tests.audit.conftest import make_entry


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with 20 entries and checkpoints signed at 10 and 20."""
    data = tmp_path_factory.mktemp("template") / "data"
    data.mkdir()
    settings = Settings(data_dir=data)
    engine = make_engine(settings.effective_database_url)
    upgrade(engine)
    signer = LogSigner(load_or_create_signing_key(data / "audit-log.key"), settings.log_origin)
    store = SqlAuditStore(engine, signer)
    store.append([make_entry(i) for i in range(10)])
    store.checkpoint()
    store.append([make_entry(i) for i in range(10, 20)])
    store.checkpoint()
    engine.dispose()
    return data


@pytest.fixture
def data(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(template, copy)
    return copy


def verify(data: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", "verify", "--data-dir", str(data), *extra])
    return result.exit_code, result.output


def attack(data: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """What someone with the database file does: drop the triggers, then edit rows."""
    db = sqlite3.connect(data / "gateway.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f'DROP TRIGGER "{name}"')
    for statement, params in statements:
        db.execute(statement, params)
    db.commit()
    db.close()


def leaf(data: Path, index: int) -> bytes:
    db = sqlite3.connect(data / "gateway.db")
    (value,) = db.execute("SELECT leaf_data FROM audit_entries WHERE idx = ?", (index,)).fetchone()
    db.close()
    assert isinstance(value, bytes)
    return value


def change(data: Path) -> None:
    edited = leaf(data, 5).replace(b'"allowed":false', b'"allowed":true')  # a refusal made a permit
    assert edited != leaf(data, 5)
    attack(data, ("UPDATE audit_entries SET leaf_data = ? WHERE idx = 5", (edited,)))


def delete(data: Path) -> None:
    attack(
        data,
        *((f"DELETE FROM {t} WHERE idx = 7", ()) for t in ("audit_entry_agencies", "audit_entry_subjects")),
        ("DELETE FROM audit_entries WHERE idx = 7", ()),
    )


def reorder(data: Path) -> None:
    three, five = leaf(data, 3), leaf(data, 5)
    attack(
        data,
        ("UPDATE audit_entries SET leaf_data = ? WHERE idx = 3", (five,)),
        ("UPDATE audit_entries SET leaf_data = ? WHERE idx = 5", (three,)),
    )


def insert(data: Path) -> None:
    """A forged entry at 4, its hash and search rows right; the entries after it moved up one."""
    forged = canonical_json(make_entry(4, outcome="withdrawn"))
    cols = extract(json.loads(forged))
    shift = [
        stmt
        for t in ("audit_entries", "audit_entry_agencies", "audit_entry_subjects")
        for stmt in (
            (f"UPDATE {t} SET idx = idx + 1000 WHERE idx >= 4", ()),
            (f"UPDATE {t} SET idx = idx - 999 WHERE idx >= 1000", ()),
        )
    ]
    row = {"idx": 4, "leaf_data": forged, "leaf_hash": leaf_hash(forged), **cols.row}
    row["entry_time"] = row["entry_time"].strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy stores it
    attack(
        data,
        *shift,
        (
            f"INSERT INTO audit_entries ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        ),
        *(
            ("INSERT INTO audit_entry_agencies (idx, agency, role) VALUES (4, ?, ?)", (a, r))
            for a, r in cols.agencies
        ),
        *(("INSERT INTO audit_entry_subjects (idx, pseudonym) VALUES (4, ?)", (p,)) for p in cols.subjects),
    )


def truncate(data: Path) -> None:
    attack(
        data,
        *((f"DELETE FROM {t} WHERE idx >= 15", ()) for t in ("audit_entry_agencies", "audit_entry_subjects")),
        ("DELETE FROM audit_entries WHERE idx >= 15", ()),
        ("DELETE FROM audit_nodes WHERE ((idx + 1) << level) > 15", ()),
    )


@pytest.mark.parametrize(
    ("tampering", "index", "reason"),
    [
        (change, 5, "entry 5: its stored leaf hash does not match its data"),
        (delete, 7, "entry 7 is missing"),
        (reorder, 3, "entry 3: its stored leaf hash does not match its data"),
        (insert, 4, "stored tree node over entries 4..5 does not match the entries"),
        (truncate, 15, "covers 20 entries but the log holds 15"),
    ],
)
def test_verify_names_the_first_bad_index(
    data: Path, tampering: Callable[[Path], None], index: int, reason: str
) -> None:
    assert verify(data) == (0, "audit log OK: 20 entries, root and checkpoints verified\n")
    tampering(data)
    code, out = verify(data)
    assert code == 1
    assert f"audit log FAILED at index {index}: " in out
    assert reason in out


def test_a_log_rewritten_under_a_new_key_is_caught_by_what_was_kept_outside(
    data: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=data)
    engine = make_engine(settings.effective_database_url)
    honest = SqlAuditStore(
        engine, LogSigner(load_or_create_signing_key(data / "audit-log.key"), settings.log_origin)
    )
    pinned_key = honest.verifier_key()
    kept = tmp_path / "kept.checkpoint"  # a checkpoint an agency saved, outside the data directory
    kept.write_text(honest.checkpoint())
    state = tmp_path / "witness.json"
    witness(honest, state, verifier_keys=[pinned_key])

    # The attacker edits entry 3, recomputes the tree, deletes the signed checkpoints, and, without the
    # old private key, makes a new key, puts it where the gateway reads it, and signs the forged tree.
    attack(
        data, ("UPDATE audit_entries SET leaf_data = ? WHERE idx = 3", (canonical_json(make_entry(3, v=2)),))
    )
    tamper.rebuild_tree(engine)
    tamper.sql(engine, "DELETE FROM audit_checkpoints")
    new_key = Ed25519PrivateKey.generate()
    (data / "audit-log.key").write_bytes(
        new_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    SqlAuditStore(engine, LogSigner(new_key, settings.log_origin)).checkpoint()
    engine.dispose()

    # Against the data directory's own (replaced) key, the database agrees with itself.
    assert verify(data)[0] == 0
    # The key pinned outside shows the checkpoints were not signed by the log.
    code, out = verify(data, "--key", pinned_key)
    assert code == 1
    assert "audit log FAILED: stored checkpoint" in out and "does not verify" in out
    # A kept checkpoint, or a witness's state, shows the history itself changed.
    code, out = verify(data, "--key", pinned_key, "--checkpoint", str(kept))
    assert code == 1
    assert "FAILED at index 0" in out and "trusted checkpoint 1" in out
    # Once as an operator runs it: the installed command in its own process, with the witness's state.
    command = [sys.executable, "-m", "gateway.cli", "audit", "verify", "--data-dir", str(data)]
    caught = subprocess.run(
        [*command, "--key", pinned_key, "--checkpoint", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert caught.returncode == 1
    assert "FAILED at index 0" in caught.stderr and "trusted checkpoint 1" in caught.stderr
