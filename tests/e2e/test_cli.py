"""The command line as operators use it: against a running gateway, and on a demo's data directory."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.auth import generate_keypair
from tests.e2e.conftest import Gateway

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def run(*args: str, data_dir: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if data_dir is not None:
        env["GATEWAY_DATA_DIR"] = str(data_dir)
    result = subprocess.run([*GATEWAY, *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_client_registered_from_the_cli_gets_a_token_at_once_and_loses_it_on_revoke(
    gateway: Gateway, tmp_path: Path
) -> None:
    private_pem, public_pem = generate_keypair("ES256")
    key_file = tmp_path / "om-tool.pub.pem"
    key_file.write_bytes(public_pem)
    data_dir = gateway.runtime.settings.data_dir
    out = run(
        "clients",
        "register",
        "--client-id",
        "om-tool",
        "--agency",
        "om",
        "--role",
        "agency_system",
        "--public-key",
        str(key_file),
        data_dir=data_dir,
    )
    assert "registered om-tool (om, agency_system, ES256)" in out.stdout
    gateway.keys["om-tool"] = private_pem
    token = gateway.token("om-tool")
    listed = run("clients", "list", data_dir=data_dir).stdout
    assert re.search(r"om-tool\s+om\s+agency_system\s+ES256\s+active", listed)
    run("clients", "revoke", "--client-id", "om-tool", data_dir=data_dir)
    refused = gateway.token_response("om-tool")
    assert refused.status_code in (400, 401)
    assert refused.json()["error"] == "invalid_client"
    r = gateway.http.get(f"{gateway.base}/v1/inbox", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_cli_refuses_bad_registrations(gateway: Gateway, tmp_path: Path) -> None:
    _, public_pem = generate_keypair("Ed25519")
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(public_pem)
    bad = run(
        "clients",
        "register",
        "--client-id",
        "x",
        "--agency",
        "interpol",
        "--role",
        "agency_system",
        "--public-key",
        str(key_file),
        data_dir=gateway.runtime.settings.data_dir,
        check=False,
    )
    assert bad.returncode == 2
    assert "agency" in bad.stderr


def test_replayed_client_assertion_is_refused(gateway: Gateway) -> None:
    first = gateway.token_response("politie-system", jti="once-only-123")
    assert first.status_code == 200
    again = gateway.token_response("politie-system", jti="once-only-123")
    assert again.status_code in (400, 401)
    assert again.json()["error"] == "invalid_client"


def test_policy_test_command_reports_counts() -> None:
    out = run("policy", "test").stdout
    m = re.search(r"^(\d+) passed, (\d+) failed$", out, re.MULTILINE)
    assert m, out
    assert int(m.group(1)) > 40 and m.group(2) == "0"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("demo")
    out = run("demo", "--data-dir", str(base))
    assert "Audit log verified: OK" in out.stdout
    assert "UNEXPECTED" not in out.stdout
    (data_dir,) = list(base.iterdir())
    return data_dir


def test_demo_shows_the_samenloop_rule(demo_dir: Path) -> None:
    out = run("audit", "verify", data_dir=demo_dir).stdout
    assert out.startswith("audit log OK:")


def test_export_verifies_offline_and_tampering_is_found(demo_dir: Path, tmp_path: Path) -> None:
    export = tmp_path / "log.ndjson"
    out = run("audit", "export", str(export), data_dir=demo_dir).stdout
    vkey = out.strip().splitlines()[-1].removeprefix("verifier key: ")
    ok = run("audit", "verify-export", str(export), "--key", vkey)
    assert "export OK" in ok.stdout
    lines = export.read_text().splitlines()
    lines[3], lines[4] = lines[4], lines[3]
    export.write_text("\n".join(lines) + "\n")
    bad = run("audit", "verify-export", str(export), "--key", vkey, check=False)
    assert bad.returncode == 1

    # An attacker with file access drops the triggers and edits an entry in place.
    db = sqlite3.connect(demo_dir / "gateway.db")
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f'DROP TRIGGER "{name}"')
    [index] = db.execute(
        "SELECT min(idx) FROM audit_entries WHERE CAST(leaf_data AS TEXT) LIKE '%\"refused\"%'"
    ).fetchone()
    db.execute(
        "UPDATE audit_entries SET leaf_data = "
        "CAST(replace(CAST(leaf_data AS TEXT), 'refused', 'allowed') AS BLOB) WHERE idx = ?",
        (index,),
    )
    db.commit()
    db.close()
    tampered = run("audit", "verify", data_dir=demo_dir, check=False)
    assert tampered.returncode == 1
    assert f"index {index}" in tampered.stderr


def test_after_the_demo_and_a_sweep_no_file_holds_a_bsn_or_a_payload_marker(demo_dir: Path) -> None:
    """Issue 9: every byte of the demo's data directory (SQLite, -wal, -shm, keys, everything)."""
    from gateway.cli.demo import FINDINGS, HUISVERBOD, MELDING, SUBJECTS
    from gateway.sealing import SEALING_KEY_FILE

    assert (demo_dir / "gateway.db").exists() and (demo_dir / SEALING_KEY_FILE).exists()  # default layout
    swept = run("retention", "sweep", data_dir=demo_dir)
    assert "erased:" in swept.stdout
    needles = [s["bsn"] for s in SUBJECTS] + [
        MELDING["meldingstekst"],
        MELDING["politieRegistratienummer"],
        FINDINGS["bevindingen"],
        HUISVERBOD["omschrijving"],
    ]
    files = [p for p in demo_dir.rglob("*") if p.is_file()]  # -wal and -shm too, while they exist
    assert len(files) >= 3
    for path in files:
        raw = path.read_bytes()
        for needle in needles:
            assert needle.encode("utf-8") not in raw, f"{path.name} holds a demo value in clear"
