"""``gateway audit witness`` over real HTTP: an honest log is followed, a fork and a rewrite are caught.

The witness talks to gateways running under uvicorn. The fork is a second gateway holding a copy of the
first one's audit key (so it signs as the same log) with another history; the rewrite is an attacker
with access to a gateway's database file who edits an entry and recomputes the whole tree.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from typer.testing import CliRunner

from audit import SqlAuditStore, canonical_json
from gateway.app import create_app
from gateway.cli import app as cli
from gateway.db import make_engine
from tests.audit import tamper
from tests.audit.conftest import make_entry
from tests.e2e.conftest import Gateway, start_gateway
from tests.live import serve

GATEWAY = [sys.executable, "-m", "gateway.cli"]
WITNESS = "veilig_thuis-fg"  # a privacy officer's token (scope audit) is enough to witness


@contextmanager
def another_gateway(data_dir: Path, audit_key: Path | None = None) -> Iterator[Gateway]:
    """A second running gateway; with ``audit_key`` it signs as the same log (same key, same origin)."""
    data_dir.mkdir()
    if audit_key is not None:
        shutil.copy2(audit_key, data_dir / "audit-log.key")
    runtime, sock = start_gateway(data_dir)
    try:
        with serve(create_app(runtime=runtime), sock=sock) as base:
            gw = Gateway(base=base, runtime=runtime)
            gw.register(WITNESS, "veilig_thuis", "privacy_officer")
            gw.register("politie-system", "politie", "agency_system")
            yield gw
            gw.http.close()
    finally:
        runtime.close()


def token_file(gw: Gateway, path: Path) -> Path:
    path.write_text(gw.token(WITNESS) + "\n")
    return path


def witness(gw: Gateway, state: Path, tmp_path: Path, *key: str) -> tuple[int, str]:
    """Run ``gateway audit witness`` in-process (the HTTP is real); returns (exit code, output)."""
    args = ["audit", "witness", "--url", gw.base, "--state", str(state)]
    args += ["--token-file", str(token_file(gw, tmp_path / "token"))]
    for k in key:
        args += ["--key", k]
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


def kept_size(state: Path) -> int:
    size = json.loads(state.read_text())["size"]
    assert isinstance(size, int)
    return size


def test_the_witness_follows_an_honest_log(gateway: Gateway, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    vkey = gateway.runtime.signer.verifier_key()
    gateway.open_case()
    # The first run as an agency would run it: the installed command, in its own process.
    token = token_file(gateway, tmp_path / "token")
    args = ["audit", "witness", "--url", gateway.base, "--token-file", str(token), "--state", str(state)]
    first = subprocess.run(
        [*GATEWAY, *args, "--key", vkey],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("first checkpoint kept:")
    size = kept_size(state)
    assert size >= 1
    gateway.open_case()
    gateway.open_case()
    code, out = witness(gateway, state, tmp_path)
    assert code == 0, out
    assert kept_size(state) >= size + 2
    assert f"consistent: {size} -> {kept_size(state)} entries" in out
    code, out = witness(gateway, state, tmp_path)  # nothing new: still consistent
    assert code == 0 and "(+0)" in out


def test_the_first_run_needs_a_key_and_a_token(gateway: Gateway, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    code, out = witness(gateway, state, tmp_path)
    assert code == 2 and "first run needs the log's verifier key" in out
    bad_token = tmp_path / "bad-token"
    bad_token.write_text("not-a-token")
    result = CliRunner().invoke(
        cli,
        [
            *("audit", "witness", "--url", gateway.base, "--token-file", str(bad_token)),
            *("--state", str(state), "--key", gateway.runtime.signer.verifier_key()),
        ],
    )
    assert result.exit_code == 2 and "answered 401" in result.output
    assert not state.exists()


def test_a_fork_signed_with_the_same_key_is_caught(gateway: Gateway, tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    vkey = gateway.runtime.signer.verifier_key()
    gateway.open_case()
    assert witness(gateway, state, tmp_path, vkey)[0] == 0
    honest_size = kept_size(state)
    before = state.read_text()
    key_file = gateway.runtime.settings.data_dir / "audit-log.key"
    with another_gateway(tmp_path / "fork", audit_key=key_file) as fork:
        assert fork.runtime.signer.verifier_key() == vkey  # same log, as far as signatures go
        fork.runtime.audit.append([make_entry(i) for i in range(honest_size + 5)])
        code, out = witness(fork, state, tmp_path)
    assert code == 1, out
    assert "ALARM" in out and "forked or rewritten" in out
    assert f"kept one of {honest_size}" in out
    assert state.read_text() == before
    (evidence,) = tmp_path.glob("witness.json.evidence-*.json")
    saved = json.loads(evidence.read_text())
    assert saved["keptCheckpoint"] == json.loads(before)["checkpoint"]
    assert saved["newCheckpoint"].startswith(gateway.runtime.settings.log_origin + "\n")
    # The honest gateway is still followed from the state the alarm left alone.
    gateway.open_case()
    assert witness(gateway, state, tmp_path)[0] == 0


def test_a_rewritten_database_is_caught(gateway: Gateway, tmp_path: Path) -> None:
    with another_gateway(tmp_path / "victim") as victim:
        victim.open_case()
        victim.open_case()
        state = tmp_path / "witness.json"
        assert witness(victim, state, tmp_path, victim.runtime.signer.verifier_key())[0] == 0
        db = victim.runtime.settings.data_dir / "gateway.db"
        engine = make_engine(f"sqlite:///{db}")
        tamper.drop_triggers(engine)
        first = json.loads(tamper.leaf(engine, 0))
        first["outcome"] = "refused"
        tamper.sql(engine, "UPDATE audit_entries SET leaf_data = :d WHERE idx = 0", d=canonical_json(first))
        tamper.rebuild_tree(engine)
        # The log goes on (a restarted gateway, or the attacker's own tool, appends on the forged tree).
        SqlAuditStore(engine, victim.runtime.signer).append([make_entry(i) for i in range(3)])

        # While its own signed checkpoints remain, the gateway refuses to sign the rewritten tree.
        code, out = witness(victim, state, tmp_path)
        assert code == 2, out
        assert "503" in out and "integrity" in out.lower()

        # With those deleted too, it signs the forgery (it holds the key); the witness is not fooled.
        with sqlite3.connect(db) as raw:
            raw.execute("DELETE FROM audit_checkpoints")
        code, out = witness(victim, state, tmp_path)
        engine.dispose()
    assert code == 1, out
    assert "ALARM" in out and "forked or rewritten" in out
