"""Everything the gateway writes is readable by its own user only (0600, dirs 0700), whatever the umask.

DESIGN 7: the data directory holds the database (payloads, the client registry), the audit signing
key, the token-signing key and the pseudonym secret. SQLite would create its files 0666 minus the
umask, and gives its -wal and -shm files the database file's mode.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from tests.e2e.conftest import Gateway, start_gateway
from tests.e2e.test_exchanges import MELDING, share
from tests.live import serve

EXPECTED = {
    "gateway.db",
    "gateway.db-wal",
    "gateway.db-shm",
    "audit-log.key",
    "token-signing-key.jwk",
    "pseudonym.key",
}


@pytest.fixture(params=[0o000, 0o022], ids=["umask-000", "umask-022"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask for the test (the gateway's threads share it), restored afterwards."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def open_to_others(root: Path) -> dict[str, str]:
    """Every path under ``root`` (and ``root``) that group or others may use, with its mode."""
    found = {}
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            found[str(path.relative_to(root.parent))] = oct(mode)
    return found


def run_a_share(runtime_dir: Path) -> set[str]:
    """Start a gateway on ``runtime_dir``, open a case, share on it, sign a checkpoint."""
    runtime, sock = start_gateway(runtime_dir)
    try:
        with serve(create_app(runtime=runtime), sock=sock) as base:
            gw = Gateway(base=base, runtime=runtime)
            for agency in ("politie", "veilig_thuis"):
                gw.register(f"{agency}-system", agency, "agency_system")
            gw.register("auditor", "veilig_thuis", "auditor")
            case_id = gw.open_case()
            r = share(
                gw,
                "politie",
                case_id,
                informationType="melding",
                purpose="veiligheid_herstellen",
                recipients=["veilig_thuis"],
                payload=MELDING,
            )
            assert r.status_code == 200, r.text
            with gw.as_("auditor") as c:
                assert c.get("/v1/audit/checkpoint").status_code == 200
            gw.http.close()
            # While the database is open, so its -wal and -shm files are there too.
            return {p.name for p in runtime_dir.iterdir()}
    finally:
        runtime.close()


def test_every_file_and_directory_the_gateway_makes_is_private(umask: int, tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    names = run_a_share(data_dir)
    assert names >= EXPECTED, names  # the walk below checks real files, not an empty directory
    assert open_to_others(tmp_path / "new") == {}
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_a_data_directory_left_open_by_an_older_version_is_tightened_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_a_share(data_dir)
    data_dir.chmod(0o755)
    for path in data_dir.iterdir():
        if path.name.startswith("gateway.db"):
            path.chmod(0o644)  # what SQLite made of them before
    assert open_to_others(data_dir)
    runtime, sock = start_gateway(data_dir)
    sock.close()
    with runtime.db.connect():
        assert open_to_others(data_dir) == {}
    runtime.close()


def test_exports_and_their_checkpoint_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_a_share(data_dir)
    out = tmp_path / "export" / "log.ndjson"
    out.parent.mkdir()
    out.parent.chmod(0o755)
    (out.parent / "log.ndjson").write_text("")
    (out.parent / "log.ndjson").chmod(0o666)  # an existing file is made private too
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir))
    result = subprocess.run(
        [
            "/bin/sh",
            "-c",
            'umask 000 && exec "$0" -m gateway.cli audit export "$1"',
            sys.executable,
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    assert open_to_others(out.parent) == {"export": "0o755"}  # the directory is the caller's, not ours
