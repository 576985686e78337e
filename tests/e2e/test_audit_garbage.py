"""Garbage written into the audit tables behind the gateway's back: findings and 503s, never a traceback.

An attacker (or a broken restore) with the database file can put text where bytes belong. The
command line then names the entry and exits 1; the API answers 503 audit-integrity, not 500.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from tests.e2e.conftest import Gateway, start_gateway
from tests.live import serve

INTEGRITY = "https://veilig-delen.example/problems/audit-integrity"


@pytest.fixture
def garbage_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway with 12 entries whose entry 5 holds text as its leaf data and whose node over 0..7
    holds an integer as its hash (the triggers dropped, as the file's owner can)."""
    runtime, sock = start_gateway(tmp_path / "data")
    runtime.audit_append([{"type": "test", "action": "test.entry", "n": n} for n in range(12)])
    runtime.audit.checkpoint()
    db = sqlite3.connect(tmp_path / "data" / "gateway.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f'DROP TRIGGER "{name}"')
    db.execute("UPDATE audit_entries SET leaf_data = 'text, not bytes' WHERE idx = 5")
    db.execute("UPDATE audit_nodes SET hash = 42 WHERE level = 3 AND idx = 0")
    db.commit()
    db.close()
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        gw.register("auditor", "veilig_thuis", "auditor")
        yield gw
        gw.http.close()
    runtime.close()


def test_verify_names_the_entry_and_exits_1_without_a_traceback(garbage_gateway: Gateway) -> None:
    env = dict(os.environ, GATEWAY_DATA_DIR=str(garbage_gateway.runtime.settings.data_dir))
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "audit log FAILED at index 5: entry 5: its leaf_data is text, not bytes"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audit/entries/5",
        "/v1/audit/entries?limit=100",
        "/v1/audit/proofs/inclusion?index=9&treeSize=12",  # its path takes the node over 0..7
        "/v1/audit/export",  # garbage in the first batch: still a 503, not a stream cut off
    ],
)
def test_routes_that_read_garbage_answer_503_audit_integrity(garbage_gateway: Gateway, path: str) -> None:
    with garbage_gateway.as_("auditor") as c:
        r = c.get(path)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == INTEGRITY


def test_entries_without_garbage_are_still_served(garbage_gateway: Gateway) -> None:
    with garbage_gateway.as_("auditor") as c:
        assert c.get("/v1/audit/entries/4").status_code == 200
        assert c.get("/v1/audit/proofs/inclusion", params={"index": 3, "treeSize": 12}).status_code == 200
