"""A restored backup of the log still verifies against the checkpoints witnesses kept (issue 12 item 5).

The procedure of docs/operations.md, "Backup and restore", on real databases: a SQLite file copied with
SQLite's online backup API, and a PostgreSQL database dumped with pg_dump and restored with pg_restore
into a new database. The restored log passes `gateway audit verify --checkpoint` with a checkpoint a
witness kept before the backup; a checkpoint the witness kept after the backup (entries the restore
lost) makes the same command fail, naming the rollback: a restore can lose entries, never hide that.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.runtime import Runtime
from tests.e2e.conftest import fresh_pg_database, start_gateway

RUNNER = CliRunner()
KEY_FILES = (
    "audit-log.key",
    "token-signing-key.jwk",
    "delivery-signing-key.jwk",
    "sealing.key",
    "pseudonym.key",
)


def log_entries(runtime: Runtime, n: int, start: int) -> None:
    runtime.audit_append([{"type": "test", "action": "test.entry", "n": start + i} for i in range(n)])


def verify(data_dir: Path, *checkpoints: Path, database_url: str | None = None) -> tuple[int, str]:
    args = ["audit", "verify", "--data-dir", str(data_dir)]
    for c in checkpoints:
        args += ["--checkpoint", str(c)]
    env = {"GATEWAY_DATABASE_URL": database_url} if database_url else None
    result = RUNNER.invoke(cli, args, env=env)
    return result.exit_code, result.output


def grow_backup_grow(data_dir: Path, witness: Path, backup: Callable[[], None], **settings: str) -> None:
    """Entries, a checkpoint a witness keeps, the backup, more entries and a checkpoint kept again."""
    runtime, sock = start_gateway(data_dir, **settings)
    sock.close()
    try:
        log_entries(runtime, 5, 0)
        (witness / "before.checkpoint").write_text(runtime.audit.checkpoint())
        backup()
        log_entries(runtime, 3, 5)
        (witness / "after.checkpoint").write_text(runtime.audit.checkpoint())
    finally:
        runtime.close()


def restored_data_dir(source: Path, target: Path) -> Path:
    """A new data directory with the keys restored from their own backup (kept apart from the data's)."""
    target.mkdir(mode=0o700)
    for name in KEY_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    return target


def assert_restore_verifies(restored: Path, witness: Path, database_url: str | None = None) -> None:
    code, out = verify(restored, witness / "before.checkpoint", database_url=database_url)
    assert code == 0, out
    assert "audit log OK: 5 entries" in out and "1 kept outside" in out
    # The witness's later checkpoint covers entries the restore lost: the rollback is found, not hidden.
    code, out = verify(restored, witness / "after.checkpoint", database_url=database_url)
    assert code == 1
    assert "covers 8 entries but the log holds 5" in out, out


@pytest.fixture
def witness(tmp_path: Path) -> Path:
    w = tmp_path / "witness"
    w.mkdir()
    return w


def test_a_restored_sqlite_copy_verifies_against_a_checkpoint_kept_before_the_backup(
    tmp_path: Path, witness: Path
) -> None:
    data_dir, backup_file = tmp_path / "data", tmp_path / "backup" / "gateway.db"
    backup_file.parent.mkdir()

    def backup() -> None:
        # SQLite's online backup: a consistent copy while the gateway runs (a plain cp is not).
        with sqlite3.connect(data_dir / "gateway.db") as src, sqlite3.connect(backup_file) as dst:
            src.backup(dst)

    grow_backup_grow(data_dir, witness, backup)
    restored = restored_data_dir(data_dir, tmp_path / "restored")
    shutil.copy2(backup_file, restored / "gateway.db")
    assert_restore_verifies(restored, witness)


def test_a_postgresql_dump_restored_into_a_new_database_verifies_against_a_kept_checkpoint(
    tmp_path: Path, witness: Path
) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump and pg_restore are not installed")
    dump = tmp_path / "backup" / "veilig_delen.dump"
    dump.parent.mkdir()
    with (
        fresh_pg_database("vd_backup") as (url, _a, name),
        fresh_pg_database("vd_restore") as (url2, _b, name2),
    ):

        def backup() -> None:
            subprocess.run(
                ["pg_dump", "-h", "127.0.0.1", "-U", "postgres", "-Fc", "-f", str(dump), name],
                check=True,
                capture_output=True,
                timeout=120,
            )

        data_dir = tmp_path / "data"
        grow_backup_grow(data_dir, witness, backup, database_url=url)
        restore = subprocess.run(
            ["pg_restore", "-h", "127.0.0.1", "-U", "postgres", "--no-owner", "-d", name2, str(dump)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert restore.returncode == 0, restore.stderr
        restored = restored_data_dir(data_dir, tmp_path / "restored")
        assert_restore_verifies(restored, witness, database_url=url2)
