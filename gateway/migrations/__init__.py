"""Alembic migrations of the gateway and audit tables; ``upgrade`` runs them at start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from gateway.errors import StartupRefused

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions"

_REVISION = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*[\"']([^\"'\n]+)[\"']\s*$", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=\n]*)?=\s*(?:None|[\"']([^\"'\n]+)[\"'])\s*$", re.M)


def alembic_config(engine: Engine | None = None) -> Config:
    """An Alembic config pointing at these migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def script_head() -> str | None:
    """The newest revision in ``versions/``, read from the files as text, without loading Alembic.

    ``None`` when the files are not one straight line of revisions written the plain way
    (``revision = "0005"``, ``down_revision = "0004"``): a merge, a branch, a tuple. ``upgrade`` then
    leaves the question to Alembic.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS.glob("*.py"):
        if path.name.startswith(("__init__", ".#")):  # what Alembic skips too
            continue
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(source), _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down) != 1 or revision[0] in revisions:
            return None
        revisions.add(revision[0])
        if down[0]:
            parents.add(down[0])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


def database_revision(engine: Engine) -> str | None:
    """The revision the database says it is at (``alembic_version``), or ``None`` if it says none."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return str(rows[0]) if len(rows) == 1 else None


def script_revisions() -> set[str]:
    """Every revision in ``versions/``, read from the files as text (as `script_head` reads them)."""
    found: set[str] = set()
    for path in VERSIONS.glob("*.py"):
        if not path.name.startswith(("__init__", ".#")):
            found.update(_REVISION.findall(path.read_text(encoding="utf-8")))
    return found


class SchemaNotCurrent(StartupRefused):
    """The database is not at this gateway's newest revision, and this gateway does not migrate it."""


def require_current(engine: Engine) -> str:
    """The database's revision when it is this gateway's newest; `SchemaNotCurrent` otherwise.

    A production gateway checks, and never migrates: N replicas starting at once would all try, and a
    rolling upgrade is `gateway migrate` once, then the replicas (docs/operations.md, "Upgrades").
    """
    head = script_head()
    if head is None:  # not one straight line of revisions: ask Alembic
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    at = database_revision(engine)
    if at is not None and at == head:
        return at
    if at is None:
        where = "de database heeft nog geen schema"
    elif at in script_revisions():
        where = f"de database staat op revisie {at}, deze gateway heeft {head} nodig"
    else:
        raise SchemaNotCurrent(
            f"de database staat op revisie {at}, die deze gateway (nieuwste revisie {head}) niet kent: "
            "een nieuwere versie migreerde haar; start die versie"
        )
    raise SchemaNotCurrent(
        f"{where}: voer eerst `gateway migrate` uit (GATEWAY_MODE=production migreert niet zelf)"
    )


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to call on every start (replicas serialise on PG).

    A database already at the newest revision is left as it is after one query, without loading Alembic
    (about a quarter of a second at every start of the gateway and of its commands).
    """
    if revision == "head":
        head = script_head()
        try:
            at_head = head is not None and database_revision(engine) == head
        except SQLAlchemyError:
            at_head = False  # Alembic tries, and says what is wrong with the database as before
        if at_head:
            return
    from alembic import command

    command.upgrade(alembic_config(engine), revision)
