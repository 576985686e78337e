"""What an attacker with write access to the database does, for the tamper tests.

The triggers are dropped first (a table owner can); then rows are edited, and a careful attacker
recomputes every leaf hash and stored tree node so the database agrees with itself again.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine

import audit
from audit import leaf_hash, root_hash


def drop_triggers(engine: Engine) -> None:
    """Remove the append-only triggers, as the table owner can."""
    with engine.begin() as conn:
        audit.remove_append_only_triggers(conn)


def sql(engine: Engine, statement: str, **params: object) -> None:
    """Run one statement in its own transaction."""
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def leaf(engine: Engine, index: int) -> bytes:
    """The stored leaf bytes of one entry."""
    with engine.connect() as conn:
        data = conn.execute(
            sa.text("SELECT leaf_data FROM audit_entries WHERE idx = :i"), {"i": index}
        ).scalar()
    assert isinstance(data, bytes)
    return data


def rebuild_tree(engine: Engine) -> None:
    """Recompute every leaf hash and stored node from the (edited) leaf bytes."""
    with engine.begin() as conn:
        rows = conn.execute(sa.text("SELECT idx, leaf_data FROM audit_entries ORDER BY idx")).all()
        hashes = [leaf_hash(r.leaf_data) for r in rows]
        for r, h in zip(rows, hashes, strict=True):
            conn.execute(
                sa.text("UPDATE audit_entries SET leaf_hash = :h WHERE idx = :i"), {"h": h, "i": r.idx}
            )
        conn.execute(sa.text("DELETE FROM audit_nodes"))
        level = 1
        while 1 << level <= len(hashes):
            for i in range(len(hashes) >> level):
                h = root_hash(hashes[i << level : (i + 1) << level])
                conn.execute(
                    sa.text("INSERT INTO audit_nodes (level, idx, hash) VALUES (:l, :i, :h)"),
                    {"l": level, "i": i, "h": h},
                )
            level += 1
