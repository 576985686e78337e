"""Witnesses at the agencies: a gateway and two ``gateway audit witness serve`` processes over real HTTP.

The gateway (in this process, served by uvicorn) submits its checkpoints to both witnesses (C2SP
tlog-witness ``add-checkpoint``) and counts a checkpoint witnessed when both cosigned (quorum 2). A
forked log is a second store with the gateway's key and other entries; a rolled-back log is a backup
of the gateway's database taken earlier. The witnesses refuse both and keep the evidence; a witness
killed with SIGKILL right after it answered still holds the size it cosigned when it comes back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typer.testing import CliRunner

from audit import (
    LogSigner,
    SqlAuditStore,
    create_private_file,
    load_or_create_signing_key,
    open_note,
    verify_checkpoint,
)
from gateway.app import create_app
from gateway.cli import app as cli
from gateway.cli.serve import with_deliverer
from gateway.console import mint_login_token
from gateway.db import make_engine
from gateway.runtime import Runtime
from gateway.services.witnessing import Submitter, configured
from gateway.settings import Settings
from tests.audit.conftest import create_log, make_entry, sqlite_engine
from tests.e2e.conftest import Gateway, start_gateway
from tests.live import serve

GATEWAY = [sys.executable, "-m", "gateway.cli"]
NAMES = ("witness.om.example", "witness.rvdk.example")
DEADLINE = 90.0  # seconds: generous, a busy machine must not fail these


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after the deadline."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


@dataclass
class WitnessProcess:
    """One ``gateway audit witness serve`` process and its files."""

    name: str
    home: Path
    log_key: str
    port: int = 0
    process: subprocess.Popen[str] | None = None
    banner: str = ""

    @property
    def state(self) -> Path:
        return self.home / "state.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def vkey(self) -> str:
        return (self.home / "witness.key.vkey").read_text().strip()

    def start(self) -> None:
        args = [*GATEWAY, "audit", "witness", "serve", "--state", str(self.state)]
        args += ["--key", str(self.home / "witness.key"), "--log-key", self.log_key, "--port", str(self.port)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        lines = [self.process.stdout.readline() for _ in range(5)]  # the banner, flushed before serving
        self.banner = "".join(lines)
        found = re.search(r"on http://127\.0\.0\.1:(\d+)/add-checkpoint", self.banner)
        assert found, self.banner
        self.port = int(found.group(1))
        wait_for(f"{self.name} to listen", self._answers)

    def _answers(self) -> bool:
        try:
            return httpx.get(self.url + "/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def held(self) -> int:
        return int(json.loads(self.state.read_text())["size"])

    def evidence(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.home.glob("state.json.evidence-*.json"))]


@dataclass
class Setup:
    gw: Gateway
    witnesses: list[WitnessProcess]
    app: Any

    @property
    def rt(self) -> Runtime:
        return self.gw.runtime

    def grow(self, n: int) -> int:
        start = self.rt.audit.size()
        self.rt.audit.append([make_entry(start + i) for i in range(n)])
        return self.rt.audit.size()

    def submitter(self, store: SqlAuditStore | None = None) -> Submitter:
        return Submitter(store or self.rt.audit, configured(self.rt.settings), timeout=30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("witnesses")
    data = root / "gateway"
    data.mkdir()
    origin = Settings(data_dir=data).log_origin
    log_key = LogSigner(load_or_create_signing_key(data / "audit-log.key"), origin).verifier_key()
    witnesses = []
    try:
        for name in NAMES:
            home = root / name
            keygen = CliRunner().invoke(
                cli, ["audit", "witness", "keygen", "--name", name, "--key", str(home / "witness.key")]
            )
            assert keygen.exit_code == 0, keygen.output
            w = WitnessProcess(name, home, log_key)
            assert keygen.output.splitlines()[0] == w.vkey()
            w.start()
            witnesses.append(w)
        specs = [{"name": w.name, "url": w.url, "vkey": w.vkey()} for w in witnesses]
        create_private_file(root / "witnesses.json")
        (root / "witnesses.json").write_text(json.dumps(specs))  # GATEWAY_WITNESSES as a file
        runtime, sock = start_gateway(
            data, witnesses=str(root / "witnesses.json"), witness_quorum=2, witness_interval=0.2
        )
        app = with_deliverer(create_app(runtime=runtime))
        with serve(app, sock=sock) as base:
            gw = Gateway(base=base, runtime=runtime)
            gw.register("auditor", "veilig_thuis", "auditor")
            yield Setup(gw, witnesses, app)
            gw.http.close()
        runtime.close()
    finally:
        for w in witnesses:
            w.stop()


def independent_check(line: str, body: str, vkey: str) -> int:
    """A cosignature line checked from tlog-cosignature's text alone (``cryptography``); its timestamp."""
    name, key_hash, key = vkey.split("+", 2)
    raw = base64.b64decode(key)
    assert raw[0] == 0x04
    assert hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == key_hash
    dash, got, b64 = line.split(" ")
    blob = base64.b64decode(b64)
    assert (dash, got, blob[:4].hex(), len(blob)) == ("\u2014", name, key_hash, 76)
    when = int.from_bytes(blob[4:12], "big")
    Ed25519PublicKey.from_public_bytes(raw[1:]).verify(
        blob[12:], f"cosignature/v1\ntime {when}\n{body}".encode()
    )
    return when


def test_honest_growth_is_cosigned_by_both_and_served_as_extra_lines(setup: Setup) -> None:
    witnessing = setup.app.state.witnessing
    witnessing.start()  # what `gateway serve` starts with the app
    try:
        size = setup.grow(7)
        auditor = setup.gw.as_("auditor")

        def witnessed() -> dict[str, Any] | None:
            status = auditor.get(f"{setup.gw.base}/v1/audit/checkpoint/witnesses").json()
            latest = status["latestWitnessed"]
            return status if latest and latest["size"] >= size else None

        status = wait_for("a witnessed checkpoint", witnessed)
        assert status["quorum"] == 2 and status["witnesses"] == list(NAMES)
    finally:
        witnessing.stop()
    r = auditor.get(f"{setup.gw.base}/v1/audit/checkpoint")
    assert r.status_code == 200
    note = r.text
    text, sigs = note.split("\n\n")
    lines = sigs.rstrip("\n").split("\n")
    log_vkey = setup.rt.signer.verifier_key()
    # The log's own signature first, then one cosignature per witness, each checked independently.
    assert lines[0].split(" ")[1] == setup.rt.signer.origin
    assert sorted(line.split(" ")[1] for line in lines[1:]) == sorted(NAMES)
    for line in lines[1:]:
        w = next(w for w in setup.witnesses if w.name == line.split(" ")[1])
        assert independent_check(line, text + "\n", w.vkey()) > 1_700_000_000
    # Go's note rules: the log's verifier ignores the signers it does not know.
    assert verify_checkpoint(note, log_vkey).size == size
    assert open_note(note, [log_vkey])[0] == text + "\n"
    status = auditor.get(f"{setup.gw.base}/v1/audit/checkpoint/witnesses").json()
    assert status["witnessed"] is True and status["size"] == size
    assert {(c["witness"], c["valid"]) for c in status["cosignatures"]} == {(n, True) for n in NAMES}
    # The console shows it to privacy officers and auditors.
    with httpx.Client(base_url=setup.gw.base) as browser:
        token = mint_login_token(setup.rt.db, "veilig_thuis", "auditor")
        assert browser.get(f"/console/login?token={token}").status_code in (200, 303)
        page = browser.get("/console/integriteit").text
    assert "Getuigen" in page and "Getuigd: 2 van de 2 getuigen" in page
    assert "witness.om.example: medeondertekend op" in page


def test_a_submitter_that_knows_an_old_size_resyncs_after_a_409(setup: Setup) -> None:
    first, second = setup.submitter(), setup.submitter()  # two replicas
    setup.grow(2)
    assert {o.kind for o in first.submit_round()} <= {"cosigned", "held"}
    setup.grow(3)
    assert {o.kind for o in second.submit_round()} == {"cosigned"}  # the witnesses moved on
    size = setup.grow(1)
    outcomes = first.submit_round()  # it still believes they hold its last size
    assert [(o.kind, o.size) for o in outcomes] == [("cosigned", size)] * 2
    assert all(o.detail.startswith("resent after a 409: it held ") for o in outcomes)
    assert [w.held() for w in setup.witnesses] == [size, size]


def test_a_witness_killed_after_it_answered_keeps_the_size_it_cosigned(setup: Setup) -> None:
    w = setup.witnesses[0]
    size = setup.grow(4)
    outcomes = setup.submitter().submit_round()
    assert [o.kind for o in outcomes] == ["cosigned", "cosigned"]
    w.kill9()  # at once after its 200: no chance to write anything more
    w.start()  # same state, same port
    assert f"holds            {size} entries" in w.banner
    grown = setup.grow(2)
    assert [(o.kind, o.size) for o in setup.submitter().submit_round()] == [("cosigned", grown)] * 2
    # The state carries the checkpoint, so the full check can anchor on what the witness kept.
    key = setup.rt.signer.verifier_key()
    args = ["audit", "verify", "--data-dir", str(setup.rt.settings.data_dir), "--key", key]
    checked = CliRunner().invoke(cli, [*args, "--checkpoint", str(w.state)])
    assert checked.exit_code == 0, checked.output
    assert "1 kept outside" in checked.output


def test_a_forked_and_a_rolled_back_log_are_refused_and_kept_as_evidence(
    setup: Setup, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.db"
    database = str(setup.rt.db.url.database)
    with sqlite3.connect(database) as live, sqlite3.connect(backup) as copy:
        live.backup(copy)
    restored_size = setup.rt.audit.size()
    held = setup.grow(3)
    assert {o.kind for o in setup.submitter().submit_round()} == {"cosigned"}
    before = [len(w.evidence()) for w in setup.witnesses]
    signer = setup.rt.signer

    # Rolled back: the database restored from the backup, with the same key.
    engine = make_engine(f"sqlite:///{backup}")
    rolled_back = SqlAuditStore(engine, signer)
    rolled_back.append([make_entry(20_000)])  # and used again: one entry the witnesses never saw
    outcomes = setup.submitter(rolled_back).submit_round()
    assert [o.kind for o in outcomes] == ["alarm", "alarm"]
    assert all("rolled back" in o.detail for o in outcomes)
    for w, n in zip(setup.witnesses, before, strict=True):
        kept = w.evidence()[n:]
        assert len(kept) == 1 and kept[0]["heldSize"] == held, kept
        assert verify_checkpoint(kept[0]["newCheckpoint"], signer.verifier_key()).size == restored_size + 1
    engine.dispose()

    # Forked: the same key over other entries, grown past what the witnesses hold.
    fork_engine = create_log(sqlite_engine(tmp_path / "fork.db"))
    fork = SqlAuditStore(fork_engine, signer)
    fork.append([make_entry(10_000 + i) for i in range(held + 2)])
    outcomes = setup.submitter(fork).submit_round()
    assert [o.kind for o in outcomes] == ["alarm", "alarm"]
    assert all("does not extend" in o.detail for o in outcomes)
    for w, n in zip(setup.witnesses, before, strict=True):
        found = w.evidence()[n:]
        assert len(found) == 2, found
        fork_kept = found[1]
        assert fork_kept["heldSize"] == held and fork_kept["consistencyProof"], fork_kept
        assert verify_checkpoint(fork_kept["newCheckpoint"], signer.verifier_key()).size == held + 2
        assert w.held() == held  # neither moved the witness
    fork_engine.dispose()
    assert os.stat(setup.witnesses[0].state).st_mode & 0o777 == 0o600


def test_the_witness_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    vkey = "witness.om.example+790a98e5+BGVxt81D5rlqbqYxDAxO5zZ9KeeJe/HKtXhzmc4luJTj"
    one = [{"name": "witness.om.example", "url": "https://witness.om.example", "vkey": vkey}]
    assert Settings(data_dir=tmp_path, witnesses=json.dumps(one)).quorum == 1
    cases = [
        ({"witnesses": json.dumps(one), "witness_quorum": 2}, "exceeds the 1 witnesses"),
        ({"witnesses": json.dumps([{**one[0], "name": "other.example"}])}, "its vkey is named"),
        ({"witnesses": json.dumps([{**one[0], "url": "http://witness.om.example"}])}, "https://"),
        ({"witnesses": json.dumps([{**one[0], "vkey": vkey.replace("BGV", "AGV")}])}, "type 0x04"),
        ({"witnesses": json.dumps(one * 2)}, "names a witness twice"),
        ({"witnesses": str(tmp_path / "nope.json")}, "cannot read the witnesses file"),
    ]
    for given, said in cases:
        with pytest.raises(ValueError, match=said):
            Settings(data_dir=tmp_path, **given)
