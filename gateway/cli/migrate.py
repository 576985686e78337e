"""``gateway migrate``: bring the database to this version's schema, once, before the replicas start.

A production gateway (``GATEWAY_MODE=production``) never migrates at start: N replicas would all try,
and an old replica would meet a schema it does not know mid-upgrade. It refuses to start on a database
behind its schema and says to run this command. Local mode still migrates itself at start (one process,
or ``--workers N`` whose parent migrates first). On PostgreSQL the migration holds an advisory lock
(gateway/migrations/env.py), so two ``gateway migrate`` at once are safe too: one migrates, the other
finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gateway.cli._common import DataDir, check_data_dir, settings_for

if TYPE_CHECKING:
    from sqlalchemy import Engine

COMMAND_LOCK = 7262014
"""The PostgreSQL advisory lock one ``gateway migrate`` holds from reading the revision to saying it, so
that two at once report what each did. Not env.py's 7262013: that one is taken on another connection of
this same process, and advisory locks are per connection."""


@contextmanager
def _one_at_a_time(engine: Engine) -> Iterator[None]:
    if engine.dialect.name != "postgresql":
        yield  # SQLite's own write lock serialises two migrations of one file
        return
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": COMMAND_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": COMMAND_LOCK})
            conn.commit()


def migrate(
    database_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--database-url", help="The database to migrate (GATEWAY_DATABASE_URL)"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Migrate the database to this version's newest revision and print the revision (idempotent)."""
    from gateway.db import make_engine
    from gateway.migrations import database_revision, require_current, upgrade

    if data_dir is not None:
        check_data_dir(data_dir)
    settings = settings_for(data_dir, database_url=database_url)
    if settings.database_url is None:  # SQLite in the data directory: the directory must exist first
        from audit import private_directory

        private_directory(settings.data_dir)
    engine = make_engine(settings.effective_database_url, busy_timeout=settings.db_busy_timeout)
    try:
        with _one_at_a_time(engine):
            before = database_revision(engine)
            upgrade(engine)
            after = require_current(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        typer.echo(f"database {where} staat al op revisie {after} (de nieuwste); niets gewijzigd")
    else:
        was = f"revisie {before}" if before else "leeg"
        typer.echo(f"database {where} gemigreerd van {was} naar revisie {after} (de nieuwste)")
