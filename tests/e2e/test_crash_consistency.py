"""SIGKILL under load (issue 8, item 1): whatever the kill interrupts, every exchange is all or nothing.

``gateway serve`` runs as a real process on a temporary data directory (SQLite, or a fresh PostgreSQL
database). Threads send shares (allowed, refused, mixed; one to three recipients), each with its own
trace id and a marker value in its payload, so its entries and messages can be found afterwards. Once K
answers have come back the process group is killed with SIGKILL, mid-load, by count and not after a
sleep. Then, on the data as the kill left it, and again after a restart on the same data and one more
share:

- the log verifies (``audit.verify_log`` after the kill, ``gateway audit verify`` after the restart);
- every message has exactly one "authorised" share entry naming it, and every such entry its message;
- every message's recipient takes part in its case (the involvement committed with it);
- a share answered 200 is there in full: an entry per recipient as answered, a message per allowed one;
- a share answered 5xx left no entry and no message;
- a share whose answer the kill cut off is either there in full or not at all.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from audit import verify_log
from gateway.app import create_app
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.cli import run as cli
from gateway.db import make_engine, make_sessionmaker
from gateway.migrations import upgrade
from gateway.runtime import open_audit_log
from gateway.sealing import Sealer, load_or_create_kek, sealing_key_path
from gateway.settings import Settings
from tests.e2e.conftest import ASSERTION_TYPE, BSN_KIND, BSN_SLACHTOFFER, fresh_pg_database, start_gateway
from tests.live import free_port, serve

GATEWAY = [sys.executable, "-m", "gateway.cli"]
THREADS = 8
#: Answers to receive before the kill; the threads keep sending, so several shares are in flight.
KILL_AFTER = 120
#: Hang guards, not measurements.
START_GUARD = 60.0
CALL_GUARD = 30.0

SENDERS = ("politie", "veilig_thuis")


@dataclass
class Process:
    """One ``gateway serve`` on ``data_dir``, in its own process group."""

    data_dir: Path
    env: dict[str, str]
    base: str = ""
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        log = (self.data_dir / f"serve-{port}.log").open("wb")
        self.popen = subprocess.Popen(
            [*GATEWAY, "serve", "--port", str(port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + START_GUARD
        with httpx.Client(timeout=2) as http:
            while True:
                assert self.popen.poll() is None, self.output()
                try:
                    if http.get(f"{self.base}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the gateway did not start\n" + self.output()
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing gets to clean up."""
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(CALL_GUARD)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(CALL_GUARD)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(CALL_GUARD)

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.data_dir.glob("serve-*.log"))


def _env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_RATE_LIMIT": "100000/second",
        "GATEWAY_ACCESS_TOKEN_TTL": "3600",
    }
    if database_url:
        env["GATEWAY_DATABASE_URL"] = database_url
    return env


def _register(database_url: str) -> dict[str, bytes]:
    """Register the agency systems before the gateway starts; their private keys."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        registry = ClientRegistry(make_sessionmaker(engine))
        keys = {}
        for agency in SENDERS:
            private_pem, public_pem = generate_keypair("Ed25519")
            registry.register(f"{agency}-system", agency, "agency_system", public_pem)
            keys[agency] = private_pem
        return keys
    finally:
        engine.dispose()


def _token(base: str, agency: str, key: bytes) -> str:
    url = f"{base}/oauth2/token"
    assertion = make_client_assertion(f"{agency}-system", key, url)
    r = httpx.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
        timeout=CALL_GUARD,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


@dataclass
class Share:
    """One share sent under load, and what came back (``status`` None: the kill cut the answer off)."""

    trace_id: str
    marker: str
    sender: str
    case_id: str
    body: dict[str, Any]
    status: int | None = None
    answer: dict[str, Any] | None = None

    @property
    def recipients(self) -> list[str]:
        return list(self.body["recipients"])


@dataclass
class Load:
    """Shares over several threads until the gateway stops answering; ``answered`` counts answers."""

    base: str
    tokens: dict[str, str]
    plans: list[tuple[str, str, str, list[str], str]]  # (sender, case, type, recipients, purpose)
    shares: list[Share] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)
    numbers: Iterator[int] = field(default_factory=itertools.count)

    def next_share(self) -> Share:
        with self.lock:
            n = next(self.numbers)
        sender, case_id, information_type, recipients, purpose = self.plans[n % len(self.plans)]
        marker = f"m-{n}-{uuid.uuid4().hex[:8]}"
        # The marker goes into a field each allowed recipient receives, so its messages can be found.
        field_name = "aard" if information_type == "melding" else "conclusie"
        body = {
            "informationType": information_type,
            "purpose": purpose,
            "recipients": recipients,
            "payload": {field_name: marker},
        }
        return Share(uuid.uuid4().hex, marker, sender, case_id, body)

    def send(self, http: httpx.Client, share: Share) -> bool:
        """Send ``share``; False when the gateway is gone (the share's outcome is then unknown)."""
        try:
            r = http.post(
                f"/v1/cases/{share.case_id}/shares",
                json=share.body,
                headers={
                    "Authorization": f"Bearer {self.tokens[share.sender]}",
                    "traceparent": f"00-{share.trace_id}-{uuid.uuid4().hex[:16]}-01",
                },
            )
        except httpx.TransportError:
            return False
        share.status = r.status_code
        share.answer = r.json() if r.status_code == 200 else None
        return True

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=CALL_GUARD) as http:
            while True:
                share = self.next_share()
                with self.lock:
                    self.shares.append(share)
                if not self.send(http, share):
                    return
                with self.lock:
                    self.answered += 1
                    if self.answered >= KILL_AFTER:
                        self.enough.set()


def _prepare(base: str, tokens: dict[str, str]) -> list[tuple[str, str, str, list[str], str]]:
    """Cases to share in and the shares to send: allowed, refused and mixed, to one to three recipients."""
    with httpx.Client(base_url=base, timeout=CALL_GUARD) as http:

        def call(agency: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = http.request(method, path, json=body, headers={"Authorization": f"Bearer {tokens[agency]}"})
            assert r.status_code in (200, 201), r.text
            return dict(r.json())

        subjects = [{"role": "slachtoffer", "bsn": BSN_SLACHTOFFER}, {"role": "kind", "bsn": BSN_KIND}]
        plans = []
        for _ in range(2):
            # acuut, first step: politie's melding reaches veilig_thuis; rvdk and om take no part yet.
            first = call("politie", "POST", "/v1/cases", {"flow": "acuut", "subjects": subjects})["caseId"]
            plans += [
                ("politie", first, "melding", ["veilig_thuis"], "veiligheid_herstellen"),
                ("politie", first, "melding", ["rvdk"], "veiligheid_herstellen"),
                ("politie", first, "melding", ["veilig_thuis", "om", "rvdk"], "veiligheid_herstellen"),
            ]
            # acuut, safety measures, both tracks open: veilig_thuis's assessment to the chain partners.
            wide = call("politie", "POST", "/v1/cases", {"flow": "acuut", "subjects": subjects})["caseId"]
            for step in ("motorkapoverleg", "onderzoek", "veiligheidsmaatregelen"):
                call("politie", "POST", f"/v1/cases/{wide}/transitions", {"step": step})
            call("veilig_thuis", "PUT", f"/v1/cases/{wide}/tracks/zorg", {"open": True})
            call("politie", "PUT", f"/v1/cases/{wide}/tracks/straf", {"open": True})
            plans += [
                (
                    "veilig_thuis",
                    wide,
                    "veiligheidsbeoordeling",
                    ["om", "reclassering", "rvdk"],
                    "zorg_en_straf_afstemmen",
                ),
                ("veilig_thuis", wide, "veiligheidsbeoordeling", ["rvdk"], "zorg_en_straf_afstemmen"),
                ("veilig_thuis", wide, "veiligheidsbeoordeling", ["om", "reclassering"], "overdracht"),
            ]
        return plans


@dataclass
class Stored:
    """What the database holds after the kill: share entries by trace id, messages by id."""

    entries: list[dict[str, Any]]
    messages: dict[str, dict[str, Any]]  # message_id -> {share_id, case_id, recipient, payload}
    involved: dict[str, set[str]]

    def share_entries(self, trace_id: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("traceId") == trace_id and e["action"] == "share"]

    def messages_marked(self, marker: str) -> set[str]:
        return {m for m, row in self.messages.items() if marker in row["payload"]}


def _read(data_dir: Path, database_url: str) -> Stored:
    """The rows as stored; message content opened with the gateway's sealing key in ``data_dir``."""
    sealer = Sealer(load_or_create_kek(sealing_key_path(data_dir, None), create=False))
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as c:
            leaves = c.execute(sa.text("SELECT leaf_data FROM audit_entries ORDER BY idx")).scalars()
            entries = [json.loads(bytes(leaf)) for leaf in leaves]
            messages = {
                r.message_id: {
                    "share_id": r.share_id,
                    "case_id": r.case_id,
                    "recipient": r.recipient,
                    "payload": json.dumps(sealer.open_message(r.message_id, r.recipient, bytes(r.sealed)))
                    if r.sealed is not None
                    else str(r.payload),
                }
                for r in c.execute(
                    sa.text("SELECT message_id, share_id, case_id, recipient, payload, sealed FROM messages")
                )
            }
            involved = {
                r.case_id: set(json.loads(r.involved) if isinstance(r.involved, str) else r.involved)
                for r in c.execute(sa.text("SELECT case_id, involved FROM cases"))
            }
    finally:
        engine.dispose()
    return Stored(entries, messages, involved)


def _check(stored: Stored, shares: list[Share]) -> Counter[str]:
    """Every invariant of the module docstring on ``stored``; how many shares ended each way."""
    authorised = [e for e in stored.entries if e["action"] == "share" and e["outcome"] == "authorised"]
    named = Counter(e["refs"]["messageId"] for e in authorised)
    assert set(named) == set(stored.messages), "a message without its entry, or an entry without its message"
    assert set(named.values()) <= {1}, "a message named by more than one authorised entry"
    for message_id, row in stored.messages.items():
        assert row["recipient"] in stored.involved[row["case_id"]], f"{message_id}: involvement not committed"

    ends: Counter[str] = Counter()
    for share in shares:
        entries = stored.share_entries(share.trace_id)
        messages = stored.messages_marked(share.marker)
        if share.status == 200:
            assert share.answer is not None
            results = {x["recipient"]: x for x in share.answer["results"]}
            assert sorted(e["counterpart"] for e in entries) == sorted(share.recipients), share
            for e in entries:
                allowed = results[e["counterpart"]]["allowed"]
                assert e["outcome"] == ("authorised" if allowed else "refused")
                assert e["refs"]["shareId"] == share.answer["shareId"]
            assert messages == {x["messageId"] for x in results.values() if x["allowed"]}, share
            ends["answered 200"] += 1
        elif share.status is None:
            # Cut off by the kill: all or nothing.
            if entries:
                assert sorted(e["counterpart"] for e in entries) == sorted(share.recipients), share
                assert messages == {e["refs"]["messageId"] for e in entries if e["outcome"] == "authorised"}
                ends["cut off, stored in full"] += 1
            else:
                assert messages == set(), share
                ends["cut off, not stored"] += 1
        else:
            assert share.status >= 500, f"unexpected answer {share.status} to {share}"
            assert (entries, messages) == ([], set()), share
            ends[f"answered {share.status}"] += 1
    return ends


def _verify_in_place(data_dir: Path, database_url: str) -> None:
    """``audit.verify_log`` on the log, with the key in the data directory (no process start-up)."""
    engine = make_engine(database_url)
    try:
        store = open_audit_log(Settings(data_dir=data_dir, database_url=database_url), engine)
        result = verify_log(store, store.verifier_keys())
        assert result.ok, result.reason
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        with fresh_pg_database("vd_crash") as (url, _admin, _name):
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'gateway.db'}"


def test_sigkill_under_load_leaves_every_share_whole(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = _register(database_url)
    gateway = Process(tmp_path, _env(tmp_path, database_url))
    gateway.start()
    try:
        tokens = {agency: _token(gateway.base, agency, key) for agency, key in keys.items()}
        load = Load(gateway.base, tokens, _prepare(gateway.base, tokens))
        with ThreadPoolExecutor(THREADS) as pool:
            running = [pool.submit(load.run) for _ in range(THREADS)]
            assert load.enough.wait(START_GUARD), "the load never reached its count\n" + gateway.output()
            gateway.kill()
            for r in running:
                r.result(CALL_GUARD)
    finally:
        gateway.stop()

    # The log and the rows exactly as the kill left them, before any start-up work touches them.
    _verify_in_place(tmp_path, database_url)
    ends = _check(_read(tmp_path, database_url), load.shares)
    assert ends["answered 200"] >= KILL_AFTER, ends

    # A restart on the same data starts and goes on where the log ended. In this process: the crash
    # needed a real process, the restart only the same data (and saves a second interpreter start).
    runtime, sock = start_gateway(
        tmp_path, database_url=database_url, rate_limit="100000/second", access_token_ttl=3600
    )
    try:
        with serve(create_app(runtime=runtime), sock=sock) as base:
            after = Load(base, {a: _token(base, a, key) for a, key in keys.items()}, load.plans[:1])
            share = after.next_share()
            with httpx.Client(base_url=base, timeout=CALL_GUARD) as http:
                assert after.send(http, share)
            assert share.status == 200, share
    finally:
        runtime.close()

    for name, value in _env(tmp_path, database_url).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert cli(["audit", "verify"]) == 0, capsys.readouterr()
    assert capsys.readouterr().out.startswith("audit log OK")
    _check(_read(tmp_path, database_url), [*load.shares, share])
