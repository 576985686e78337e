"""Every storage test on SQLite and on PostgreSQL: the ``db_url`` fixture, fresh databases, no skipping.

- ``db_url`` (module scope, ``[sqlite]`` and ``[postgresql]``): the URL of a database migrated to head,
  new for each test module and dialect, shared by the module's tests (a test that needs it empty cleans
  what it uses). SQLite: a copy of the process's migrated template file. PostgreSQL: ``CREATE DATABASE
  ... TEMPLATE`` of a database this test process migrated once (a few hundredths of a second, where
  running the migrations takes seconds), dropped with the module.
- `fresh_pg_database`: a new, empty PostgreSQL database (``migrated=True``: at head).
- PostgreSQL not answering at ``VEILIG_DELEN_TEST_PG`` (default the local trust-auth server
  ``postgresql+psycopg://postgres@127.0.0.1:5432``) FAILS the tests that need it (`require_postgresql`),
  it does not skip them: a storage test that silently ran on one dialect only is how a replica bug
  ships. ``VEILIG_DELEN_SKIP_POSTGRESQL=1`` skips them instead, on a laptop without PostgreSQL, never in
  CI (``.ci/run`` refuses to start without the server).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_SERVER = os.environ.get("VEILIG_DELEN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432").rstrip("/")
"""The PostgreSQL server of the tests (a superuser: it creates and drops databases)."""
PG_ADMIN_URL = f"{PG_SERVER}/postgres"
SKIP_ENV = "VEILIG_DELEN_SKIP_POSTGRESQL"
"""Set to 1 to skip, not fail, the PostgreSQL tests when no server answers (never in CI)."""
DIALECTS = ("sqlite", "postgresql")

_lock = threading.Lock()
_unreachable: list[str | None] = []  # [reason or None] once probed
_template: str | None = None


def postgresql_unreachable() -> str | None:
    """Why the tests' PostgreSQL server does not answer, or None when it does (probed once)."""
    with _lock:
        if not _unreachable:
            probe = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
            try:
                with probe.connect():
                    pass
                _unreachable.append(None)
            except sa.exc.SQLAlchemyError as e:
                first = str(getattr(e, "orig", None) or e).strip().splitlines()
                _unreachable.append(first[0] if first else type(e).__name__)
            finally:
                probe.dispose()
        return _unreachable[0]


def require_postgresql() -> None:
    """Fail the calling test when PostgreSQL does not answer (skip if ``VEILIG_DELEN_SKIP_POSTGRESQL=1``)."""
    reason = postgresql_unreachable()
    if reason is None:
        return
    where = PG_SERVER.split("@")[-1]
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"PostgreSQL is not reachable at {where} ({SKIP_ENV}=1)")
    pytest.fail(
        f"PostgreSQL is not reachable at {where}: {reason}. The storage tests run on SQLite and "
        f"PostgreSQL; start the server, or set {SKIP_ENV}=1 to skip them (never in CI)",
        pytrace=False,
    )


def _admin() -> sa.Engine:
    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _migrated_pg_template() -> str:
    """The name of a database this process migrated to head once, to copy (`fresh_pg_database`)."""
    global _template
    with _lock:
        if _template is None:
            from gateway.db import make_engine
            from gateway.migrations import upgrade

            name = f"vd_template_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            with _admin().connect() as c:
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
            engine = make_engine(f"{PG_SERVER}/{name}")
            try:
                upgrade(engine)
            finally:
                engine.dispose()  # a template must have no connections when it is copied
            _template = name
        return _template


def drop_pg_template() -> None:
    """Drop the migrated template (end of the test session)."""
    global _template
    with _lock:
        name, _template = _template, None
    if name is not None:
        with _admin().connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def fresh_pg_database(
    prefix: str = "vd_test", *, migrated: bool = False
) -> Iterator[tuple[str, sa.Engine, str]]:
    """A new PostgreSQL database, empty or (``migrated``) at head: its URL, an admin engine and its
    name; dropped afterwards. Fails the test when PostgreSQL does not answer (`require_postgresql`)."""
    require_postgresql()
    template = f' TEMPLATE "{_migrated_pg_template()}"' if migrated else ""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"{template}'))
    try:
        yield f"{PG_SERVER}/{name}", admin, name
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fresh_database(dialect: str, directory: Path) -> Iterator[str]:
    """The URL of a new database at head: SQLite in ``directory``, or a new PostgreSQL database."""
    if dialect == "sqlite":
        from tests.conftest import migrated_template

        path = directory / "gateway.db"
        shutil.copyfile(migrated_template(), path)
        path.chmod(0o600)
        yield f"sqlite:///{path}"
    elif dialect == "postgresql":
        with fresh_pg_database("vd_db", migrated=True) as (url, _admin, _name):
            yield url
    else:
        raise ValueError(f"unknown dialect {dialect!r}")


@pytest.fixture(scope="module", params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database at head for this module's tests, once on SQLite and once on PostgreSQL."""
    with fresh_database(request.param, tmp_path_factory.mktemp(f"db-{request.param}")) as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_template() -> Iterator[None]:
    yield
    drop_pg_template()
