"""``gateway migrate`` from zero on SQLite and PostgreSQL, idempotent, and production never migrating.

A production gateway (``GATEWAY_MODE=production``) on a database behind its schema refuses to start with
one line saying to run ``gateway migrate``; local mode migrates itself at start, as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.cli import run
from gateway.db import make_engine
from gateway.migrations import SchemaNotCurrent, database_revision, require_current, script_head, upgrade
from tests.databases import DIALECTS, fresh_pg_database
from tests.live import free_port

GATEWAY = [sys.executable, "-m", "gateway.cli"]
HEAD = script_head()
PREVIOUS = f"{int(HEAD or '0') - 1:04d}"
"""The revision before head (the revisions are numbered 0001, 0002, ...)."""


@contextmanager
def empty_database(dialect: str, directory: Path) -> Iterator[str]:
    if dialect == "sqlite":
        yield f"sqlite:///{directory / 'gateway.db'}"
    else:
        with fresh_pg_database("vd_migrate") as (url, _admin, _name):
            yield url


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_migrate_from_zero_then_again_changes_nothing(
    dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("GATEWAY_")]:
        monkeypatch.delenv(name)
    with empty_database(dialect, tmp_path) as url:
        assert run(["migrate", "--database-url", url]) == 0
        first = capsys.readouterr()
        assert first.err == ""
        [line] = first.out.splitlines()
        assert line.endswith(f"gemigreerd van leeg naar revisie {HEAD} (de nieuwste)"), line
        assert {"audit_entries", "cases", "messages", "outbox", "policy_revisions"} <= tables(url)

        assert run(["migrate", "--database-url", url]) == 0
        [again] = capsys.readouterr().out.splitlines()
        assert again.endswith(f"staat al op revisie {HEAD} (de nieuwste); niets gewijzigd"), again

        engine = make_engine(url)
        try:
            assert database_revision(engine) == HEAD
            assert require_current(engine) == HEAD
        finally:
            engine.dispose()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_migrate_brings_a_database_behind_to_head(
    dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with empty_database(dialect, tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine, PREVIOUS)
            with pytest.raises(SchemaNotCurrent) as refused:
                require_current(engine)
            assert "gateway migrate" in refused.value.detail and PREVIOUS in refused.value.detail
            assert run(["migrate", "--database-url", url]) == 0
            [line] = capsys.readouterr().out.splitlines()
            assert line.endswith(f"gemigreerd van revisie {PREVIOUS} naar revisie {HEAD} (de nieuwste)"), line
            assert database_revision(engine) == HEAD
        finally:
            engine.dispose()


def test_two_migrations_at_once_on_postgresql_one_migrates_the_other_finds_it_done(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    with fresh_pg_database("vd_migrate") as (url, _admin, _name):
        both = [
            subprocess.Popen(
                [*GATEWAY, "migrate", "--database-url", url],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in both]
        assert [p.returncode for p in both] == [0, 0], outs
        lines = sorted(out.strip() for out, _err in outs)
        assert sum("gemigreerd van leeg" in line for line in lines) == 1, lines
        assert sum("niets gewijzigd" in line for line in lines) == 1, lines
        assert tables(url) >= {"audit_entries", "alembic_version"}


def production_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return env | {
        "GATEWAY_MODE": "production",
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_PSEUDONYM_SECRET": "x" * 40,
        "GATEWAY_PUBLIC_URL": "https://gateway.example",
        "GATEWAY_SEALING_KEY_FILE": str(tmp_path / "keys" / "sealing.key"),
        "GATEWAY_PORT": str(free_port()),
    }


def test_a_production_serve_on_a_database_behind_refuses_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    upgrade(engine, PREVIOUS)
    engine.dispose()
    result = subprocess.run(
        [*GATEWAY, "serve"], env=production_env(tmp_path, url), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line == (
        f"error: de database staat op revisie {PREVIOUS}, deze gateway heeft {HEAD} nodig: voer eerst "
        "`gateway migrate` uit (GATEWAY_MODE=production migreert niet zelf)"
    )
    engine = make_engine(url)
    try:
        assert database_revision(engine) == PREVIOUS  # it migrated nothing
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", DIALECTS)
def test_production_refuses_an_empty_database_and_one_a_newer_version_migrated(
    dialect: str, tmp_path: Path
) -> None:
    from gateway.runtime import Runtime
    from gateway.settings import Settings

    with empty_database(dialect, tmp_path) as url:
        settings = Settings(
            mode="production",
            data_dir=tmp_path / "data",
            database_url=url,
            pseudonym_secret="x" * 40,
            public_url="https://gateway.example",
            sealing_key_file=tmp_path / "keys" / "sealing.key",
        )
        with pytest.raises(SchemaNotCurrent, match="geen schema: voer eerst `gateway migrate`"):
            Runtime(settings)
        engine = make_engine(url)
        try:
            upgrade(engine)
            with engine.begin() as conn:  # as if a newer gateway had migrated it further
                conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
            with pytest.raises(SchemaNotCurrent, match=r"revisie 9999, die deze gateway .* niet kent"):
                Runtime(settings)
            assert database_revision(engine) == "9999"
        finally:
            engine.dispose()
