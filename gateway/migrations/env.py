"""Alembic environment: runs on the engine the gateway hands over (or GATEWAY_DATABASE_URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

import audit
import gateway.models  # noqa: F401  (registers the tables on Base.metadata)
from gateway.db import Base, make_engine
from gateway.settings import get_settings

target_metadata = [Base.metadata, audit.metadata]


def run() -> None:
    engine: Engine | None = context.config.attributes.get("engine")
    if engine is None:
        engine = make_engine(get_settings().effective_database_url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait and then find nothing to do.
            connection.execute(text("SELECT pg_advisory_lock(7262013)"))
        try:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(7262013)"))
                connection.commit()


run()
