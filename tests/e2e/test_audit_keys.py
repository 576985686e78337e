"""The audit signing key: never silently replaced for a log with entries; rotated only on purpose.

DESIGN 7: a gateway whose log has entries refuses to start when the key is missing or unreadable; a
new key only by ``gateway audit rotate-key``, recorded in the log, with older checkpoints still
verifiable (their verifier keys are kept in ``audit-log.key.retired``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import LogSigner, format_checkpoint, parse_verifier_key, verify_checkpoint, verify_log
from gateway.app import create_app
from gateway.errors import StartupRefused
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.e2e.conftest import Gateway, start_gateway
from tests.live import free_port, serve

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def run(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real command line on ``data_dir``."""
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir))
    result = subprocess.run([*GATEWAY, *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line a refusal prints, after checking there is no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def a_log_with_entries(data_dir: Path) -> str:
    """A gateway's data directory whose log has entries and a checkpoint; returns that checkpoint."""
    runtime, sock = start_gateway(data_dir)
    sock.close()
    try:
        runtime.audit_append([{"type": "test", "action": "test.entry", "n": n} for n in range(3)])
        return runtime.audit.checkpoint()
    finally:
        runtime.close()


def checkpoint_over_http(data_dir: Path) -> tuple[str, str]:
    """Start the gateway, log something, fetch a signed checkpoint and the verifier key over HTTP."""
    runtime, sock = start_gateway(data_dir)
    try:
        with serve(create_app(runtime=runtime), sock=sock) as base:
            gw = Gateway(base=base, runtime=runtime)
            runtime.audit_append([{"type": "test", "action": "test.entry"}])
            client = f"auditor-{runtime.audit.size()}"
            gw.register(client, "veilig_thuis", "auditor")
            with gw.as_(client) as c:
                note = c.get("/v1/audit/checkpoint").text
                vkey = c.get("/v1/audit/verifier-key").text.strip()
            gw.http.close()
            return note, vkey
    finally:
        runtime.close()


@pytest.mark.parametrize("damage", ["missing", "corrupt", "unreadable"])
def test_a_log_with_entries_refuses_to_start_without_its_key(tmp_path: Path, damage: str) -> None:
    data_dir = tmp_path / "data"
    a_log_with_entries(data_dir)
    key = data_dir / "audit-log.key"
    if damage == "missing":
        key.unlink()
    elif damage == "corrupt":
        key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    else:
        key.chmod(0)
        if os.access(key, os.R_OK):
            pytest.skip("running as a user who can read any file (root)")
    before = key.read_bytes() if damage == "corrupt" else None

    with pytest.raises(StartupRefused, match="holds 3 entries"):
        Runtime(Settings(data_dir=data_dir))
    assert key.exists() == (damage != "missing")  # never a silently made new key
    assert before is None or key.read_bytes() == before

    line = one_clear_line(run("serve", "--port", str(free_port()), data_dir=data_dir, check=False))
    assert line.startswith("error: the audit log holds 3 entries but ") and "rotate-key" in line
    assert key.exists() == (damage != "missing")
    # The audit commands open the log the same way: no new key there either.
    line = one_clear_line(run("audit", "checkpoint", data_dir=data_dir, check=False))
    assert "audit signing key" in line or "does not hold" in line
    assert key.exists() == (damage != "missing")


def test_an_empty_log_gets_a_new_key_as_before(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    runtime = Runtime(Settings(data_dir=data_dir))
    runtime.close()
    assert (data_dir / "audit-log.key").is_file()
    (data_dir / "audit-log.key").unlink()  # still an empty log: a key is made again
    runtime = Runtime(Settings(data_dir=data_dir))
    assert runtime.audit.size() == 0
    runtime.close()


def test_rotate_key_is_recorded_and_old_checkpoints_still_verify(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old_note, old_vkey = checkpoint_over_http(data_dir)

    out = run("audit", "rotate-key", data_dir=data_dir).stdout
    new_vkey = next(line for line in out.splitlines() if line.startswith("new verifier key: "))
    new_vkey = new_vkey.removeprefix("new verifier key: ")
    assert new_vkey != old_vkey
    assert (data_dir / "audit-log.key.retired").read_text() == old_vkey + "\n"

    new_note, served_vkey = checkpoint_over_http(data_dir)
    assert served_vkey == new_vkey  # the restarted gateway signs with the new key
    old_cp = verify_checkpoint(old_note, old_vkey)
    new_cp = verify_checkpoint(new_note, new_vkey)
    assert new_cp.size > old_cp.size
    with pytest.raises(Exception, match="no valid signature"):
        verify_checkpoint(old_note, new_vkey)

    # The rotation is an audit entry naming both keys, by their ids.
    runtime = Runtime(Settings(data_dir=data_dir))
    try:
        rotations = [
            e.entry for e in runtime.audit.iter_entries() if e.entry.get("action") == "audit.rotate_key"
        ]
        assert len(rotations) == 1
        rotation = rotations[0]
        assert rotation["type"] == "audit" and rotation["outcome"] == "rotated"
        assert rotation["keyRotation"]["oldKeyId"] == parse_verifier_key(old_vkey).key_id.hex()
        assert rotation["keyRotation"]["newKeyId"] == parse_verifier_key(new_vkey).key_id.hex()
        assert runtime.audit.verifier_keys() == [new_vkey, old_vkey]
        # The whole log, with the stored checkpoints of both keys.
        result = verify_log(runtime.audit, runtime.audit.verifier_keys())
        assert result.ok and result.checkpoints >= 3, result.reason
    finally:
        runtime.close()

    old_file, new_file = tmp_path / "old.checkpoint", tmp_path / "new.checkpoint"
    old_file.write_text(old_note)
    new_file.write_text(new_note)
    ok = run(
        "audit", "verify", "--checkpoint", str(old_file), "--checkpoint", str(new_file), data_dir=data_dir
    )
    assert ok.stdout.startswith("audit log OK:") and "2 kept outside" in ok.stdout
    # Without the history, the old key's checkpoints do not verify: the history is what keeps them.
    alone = run("audit", "verify", "--key", new_vkey, data_dir=data_dir, check=False)
    assert alone.returncode == 1 and "does not verify" in alone.stderr


def test_a_checkpoint_signed_by_an_unknown_key_is_still_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    a_log_with_entries(data_dir)
    run("audit", "rotate-key", data_dir=data_dir)
    runtime = Runtime(Settings(data_dir=data_dir))
    try:
        root = runtime.audit.root(3)
        origin = runtime.settings.log_origin
    finally:
        runtime.close()
    forged = LogSigner(Ed25519PrivateKey.generate(), origin).sign_note(format_checkpoint(origin, 3, root))
    forged_file = tmp_path / "forged.checkpoint"
    forged_file.write_text(forged)
    result = run("audit", "verify", "--checkpoint", str(forged_file), data_dir=data_dir, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "trusted checkpoint 1 does not verify" in result.stderr


def test_rotate_key_for_a_lost_key_needs_saying_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    note = a_log_with_entries(data_dir)
    runtime = Runtime(Settings(data_dir=data_dir))
    lost_vkey = runtime.signer.verifier_key()
    runtime.close()
    (data_dir / "audit-log.key").unlink()

    line = one_clear_line(run("audit", "rotate-key", data_dir=data_dir, check=False))
    assert "missing" in line and "--lost-key" in line
    assert not (data_dir / "audit-log.key").exists()

    run("audit", "rotate-key", "--lost-key", "--old-key", lost_vkey, data_dir=data_dir)
    runtime = Runtime(Settings(data_dir=data_dir))  # starts again: the key was made on purpose
    try:
        assert runtime.audit.verifier_keys()[1:] == [lost_vkey]
        last = json.loads(runtime.audit.entries(runtime.audit.size() - 1, runtime.audit.size())[0].leaf_data)
        assert last["keyRotation"]["oldKeyId"] == parse_verifier_key(lost_vkey).key_id.hex()
        assert verify_log(runtime.audit, runtime.audit.verifier_keys(), trusted_checkpoints=[note]).ok
    finally:
        runtime.close()
