"""``gateway serve --workers 2`` as operators run it: two processes, one data directory, one log."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.db import make_engine, make_sessionmaker
from gateway.migrations import upgrade
from tests.e2e.conftest import ASSERTION_TYPE, BSN_KIND, BSN_PLEGER, BSN_SLACHTOFFER
from tests.live import free_port

GATEWAY = [sys.executable, "-m", "gateway.cli"]
SHARES = 40
CLIENTS = {"politie-sys": ("politie", "agency_system"), "auditor-1": ("veilig_thuis", "auditor")}


@dataclass
class Served:
    base: str
    data_dir: Path
    keys: dict[str, bytes]
    process: subprocess.Popen[str]

    @property
    def token_url(self) -> str:
        return f"{self.base}/oauth2/token"

    def post_assertion(self, assertion: str) -> httpx.Response:
        # A new connection each time: the kernel hands it to either worker.
        with httpx.Client(timeout=60) as http:
            return http.post(
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
            )

    def token(self, client_id: str) -> str:
        r = self.post_assertion(make_client_assertion(client_id, self.keys[client_id], self.token_url))
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir))
    return subprocess.run([*GATEWAY, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    engine = make_engine(f"sqlite:///{data_dir / 'gateway.db'}")
    upgrade(engine)
    registry = ClientRegistry(make_sessionmaker(engine))
    keys = {}
    for client_id, (agency, role) in CLIENTS.items():
        private_pem, public_pem = generate_keypair("Ed25519")
        registry.register(client_id, agency, role, public_pem)
        keys[client_id] = private_pem
    engine.dispose()
    port = free_port()
    env = dict(
        os.environ,
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_PORT=str(port),
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_RATE_LIMIT="100000/second",
        # Correctness across workers, not latency: on a busy machine a write may wait past the 5 s
        # default for the other worker's lock and answer 503, as it should; that is not this test.
        GATEWAY_DB_BUSY_TIMEOUT="60",
    )
    env.pop("GATEWAY_DATABASE_URL", None)
    process = subprocess.Popen(
        [*GATEWAY, "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a busy machine is slow to start two workers
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway serve --workers 2 did not come up"
            time.sleep(0.2)
        yield Served(base=base, data_dir=data_dir, keys=keys, process=process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def open_case(served: Served, token: str) -> str:
    subjects = [
        {"role": "slachtoffer", "bsn": BSN_SLACHTOFFER},
        {"role": "pleger", "bsn": BSN_PLEGER},
        {"role": "kind", "bsn": BSN_KIND},
    ]
    r = httpx.post(
        f"{served.base}/v1/cases",
        json={"flow": "acuut", "subjects": subjects},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["caseId"])


def share(served: Served, token: str, case_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=served.base, timeout=60) as http:  # its own connection
        r = http.post(
            f"/v1/cases/{case_id}/shares",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "informationType": "melding",
                "purpose": "veiligheid_herstellen",
                "recipients": ["veilig_thuis", "rvdk"],
                "payload": {"aard": "fysiek geweld", "locatie": "Voorbeeldstad"},
            },
        )
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def all_entries(served: Served, token: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    with httpx.Client(base_url=served.base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        while True:
            params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
            r = http.get("/v1/audit/entries", params=params)
            assert r.status_code == 200, r.text
            entries += r.json()["entries"]
            cursor = r.json().get("next")
            if not cursor:
                return entries


def test_two_workers_share_one_consecutive_log_and_one_replay_cache(served: Served) -> None:
    politie = served.token("politie-sys")
    # Before the replays below: their refusals count as failed authentications from this address, and
    # past ten a minute the address is refused for a minute (the limit at work, not a failure).
    auditor = served.token("auditor-1")
    case_id = open_case(served, politie)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: share(served, politie, case_id), range(SHARES)))
    share_ids = {a["shareId"] for a in answers}
    assert len(share_ids) == SHARES

    # One assertion, sent at once on eight connections (both workers): exactly one token.
    assertion = make_client_assertion("politie-sys", served.keys["politie-sys"], served.token_url)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: served.post_assertion(assertion), range(8)))
    replies += [served.post_assertion(assertion) for _ in range(6)]
    assert sorted(r.status_code for r in replies).count(200) == 1, [r.text for r in replies]
    for refused in (r for r in replies if r.status_code != 200):
        assert refused.status_code in (400, 401)
        assert refused.json()["error"] == "invalid_client"
        assert "replayed" in refused.json()["error_description"]

    entries = all_entries(served, auditor)
    assert [e["index"] for e in entries] == list(range(len(entries)))
    shared = [e["entry"] for e in entries if e["entry"].get("action") == "share"]
    assert len(shared) == 2 * SHARES  # an entry per recipient, none lost or doubled across workers
    assert {e["refs"]["shareId"] for e in shared} == share_ids

    served.process.terminate()
    output, _ = served.process.communicate(timeout=60)
    assert "workers          2 processes" in output
    assert "PER WORKER" in output  # memory:// rate limits are per process, and the start-up says so
    assert not (served.data_dir / "gateway.url").exists()
    verified = run("audit", "verify", data_dir=served.data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_production_refuses_workers_with_per_process_rate_limits(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        GATEWAY_MODE="production",
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_PSEUDONYM_SECRET="x" * 40,
        GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path / 'gateway.db'}",
        GATEWAY_PUBLIC_URL="https://gateway.example",
        GATEWAY_SEALING_KEY_FILE=str(tmp_path / "keys" / "sealing.key"),
        GATEWAY_RATE_LIMIT_STORAGE="memory://",
        GATEWAY_PORT=str(free_port()),
    )
    result = subprocess.run(
        [*GATEWAY, "serve", "--workers", "2"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "GATEWAY_RATE_LIMIT_STORAGE" in result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created
