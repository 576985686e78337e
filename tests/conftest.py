"""What every in-process gateway of the suite shares, so that starting one costs little.

A `Runtime` on its own compiles the policy (in the process and again in each policy worker it starts)
and runs every migration on a new SQLite file: most of a test gateway's start-up, and the suite starts
dozens. Here, once per test process:

- **One embedded policy engine** (`shared_policy_engine`): a real `EmbeddedEngine` on the repository's
  policies, with its real worker processes, handed to every `Runtime` that would have built exactly that
  engine itself (embedded, the default policy directory). A gateway closing or swapping it out (a
  reload) leaves it running for the others; a gateway on another policy directory, on OPA, or given an
  engine builds its own as before. The engine's construction is still tested: here, by every reload,
  and by every test that starts `gateway serve` or a copied policy directory.
- **One migrated SQLite file** (`migrated_template`): the first new database of the process is
  migrated for real; a later `Runtime` whose SQLite file is new (empty) gets a copy of it, and then runs
  the real `upgrade`, which finds the schema current. Only `Runtime`'s own start-up is affected: tests
  that call `gateway.migrations.upgrade` themselves run every migration.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

import gateway.runtime
from gateway.db import make_engine
from gateway.policy import EmbeddedEngine, PolicySource
from gateway.settings import REPO_ROOT, Settings
from tests.databases import _drop_pg_template, db_url  # noqa: F401  (storage tests' fixtures: both dialects)

POLICIES = REPO_ROOT / "policies"

SUITE_DECISION_TIMEOUT = 30.0
"""The shared engine's deadline per decision. Production's 1 s (``DECISION_TIMEOUT_SECONDS``) turns a
decision that waits for a core on a busy machine into ``engine_timeout``, a deny, and a test expecting an
allow then fails for the machine's load, not the code. Tests of the deadline build their own engine
with a short one (tests/policy/test_engine.py, tests/e2e/test_bounded_policy.py)."""

_lock = threading.Lock()
_engine: EmbeddedEngine | None = None
_template: Path | None = None
_real_make_policy_engine = gateway.runtime.make_policy_engine
_real_upgrade = gateway.runtime.upgrade


class SharedEngine:
    """The process's engine as one gateway sees it: everything but ``close`` (the others still use it)."""

    close = None  # Runtime.close and a reload's retirement look for a callable ``close``

    def __init__(self, engine: EmbeddedEngine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def shared_policy_engine() -> SharedEngine:
    global _engine
    with _lock:
        if _engine is None:
            _engine = EmbeddedEngine(POLICIES, timeout=SUITE_DECISION_TIMEOUT)
        return SharedEngine(_engine)


def _make_policy_engine(settings: Settings, source: PolicySource | None = None, **kw: Any) -> Any:
    default = (
        source is None
        and settings.policy_engine == "embedded"
        and Path(settings.policy_dir).resolve() == POLICIES
    )
    return shared_policy_engine() if default else _real_make_policy_engine(settings, source, **kw)


def migrated_template() -> Path:
    """A SQLite file the migrations brought to head (made once per test process)."""
    global _template
    with _lock:
        if _template is None:
            path = Path(tempfile.mkdtemp(prefix="vd-template-")) / "gateway.db"
            engine = make_engine(f"sqlite:///{path}")
            _real_upgrade(engine)
            engine.dispose()  # the last connection checkpoints the WAL into the file
            _template = path
        return _template


def _upgrade(engine: Engine, revision: str = "head") -> None:
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and revision == "head" and database:
        path = Path(database)
        wal = path.with_name(path.name + "-wal")
        if path.is_file() and path.stat().st_size == 0 and (not wal.exists() or wal.stat().st_size == 0):
            engine.dispose()
            shutil.copyfile(migrated_template(), path)  # into the existing 0600 file: its mode stays
    _real_upgrade(engine, revision)


SHARED_ENV = "VEILIG_DELEN_TEST_FRESH_STARTS"
"""Set to 1 to give every gateway its own engine and a newly migrated database (to compare, or to rule
this module out when something looks odd)."""

if os.environ.get(SHARED_ENV) != "1":
    gateway.runtime.make_policy_engine = _make_policy_engine  # type: ignore[assignment]
    gateway.runtime.upgrade = _upgrade


@pytest.fixture(scope="session", autouse=True)
def _close_shared_engine() -> Iterator[None]:
    yield
    if _engine is not None:
        _engine.close()
    if _template is not None:
        shutil.rmtree(_template.parent, ignore_errors=True)
