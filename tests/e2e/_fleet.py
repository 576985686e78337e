"""Real processes for the delivery tests: one ``gateway serve`` and the five ``gateway sim-agency``.

`Fleet` owns a temporary directory: the gateway's data directory, the connector file pointing it at
the five agency systems, and the agencies' own stores (``<agency>-deliveries.db``, beside the gateway's
data, not in it). The gateway keeps one port for the fleet's life, so the agencies' JWKS URL stays
right across its restarts; an agency keeps its port and store across its own.

Everything waits on a condition with a hang guard (`wait_for`), never on a sleep.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from connectors.base import AGENCIES
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.db import make_engine, make_sessionmaker
from gateway.migrations import upgrade
from tests.e2e.conftest import ASSERTION_TYPE, BSN_KIND, BSN_SLACHTOFFER
from tests.live import free_port

GATEWAY = [sys.executable, "-m", "gateway.cli"]
SENDERS = ("politie", "veilig_thuis")
#: Hang guards, not measurements.
START_GUARD = 60.0
CALL_GUARD = 30.0

#: Small backoff, breaker and lease settings, so that retries happen within a test's seconds. The lease
#: must exceed the longest push (the connector's 1 s timeout, its retries on a refused connection).
DELIVERY_SETTINGS = {
    "GATEWAY_DELIVERY_MAX_ATTEMPTS": "100",
    "GATEWAY_DELIVERY_BACKOFF_BASE": "0.05",
    "GATEWAY_DELIVERY_BACKOFF_CAP": "0.5",
    "GATEWAY_DELIVERY_BREAKER_FAILURES": "3",
    "GATEWAY_DELIVERY_BREAKER_COOLDOWN": "0.5",
    "GATEWAY_DELIVERY_LEASE": "3",
    "GATEWAY_DELIVERY_POLL_INTERVAL": "0.1",
}
AGENCY_TIMEOUT = 1.0
"""Seconds the gateway waits for an agency's answer (the connector file's ``timeout``)."""


def wait_for(what: str, condition: Callable[[], Any], guard: float = START_GUARD, every: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something true; that value. ``AssertionError`` naming
    ``what`` after ``guard`` seconds (a hang guard: the condition decides, not the clock)."""
    deadline = time.monotonic() + guard
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {guard:g} s"
        time.sleep(every)


_POLL = httpx.Client(timeout=2.0, verify=False)  # plain http on loopback only
"""One client for every poll: a new one per call would build a TLS context each time, for nothing."""


def _answers(url: str) -> bool:
    try:
        return _POLL.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(popen: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Signal ``popen``'s process group and reap it (SIGKILL if SIGTERM is not enough)."""
    if popen is None or popen.poll() is not None:
        return
    os.killpg(popen.pid, sig)
    try:
        popen.wait(CALL_GUARD)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(CALL_GUARD)


@dataclass
class Agency:
    """One ``gateway sim-agency`` process, its port and store kept across restarts."""

    name: str
    port: int
    store_dir: Path
    gateway_url: str
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store(self) -> Path:
        return self.store_dir / f"{self.name}-deliveries.db"

    def spawn(self) -> None:
        self.starts += 1
        log = (self.store_dir / f"{self.name}-{self.starts}.log").open("wb")
        command = [*GATEWAY, "sim-agency", "--agency", self.name, "--port", str(self.port)]
        command += ["--data-dir", str(self.store_dir), "--gateway-url", self.gateway_url]
        self.popen = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ.copy()
        )
        log.close()

    def wait_up(self) -> None:
        def up() -> bool:
            assert self.popen is not None and self.popen.poll() is None, f"sim-agency {self.name} exited"
            return _answers(f"{self.url}/veilig-delen/health")

        wait_for(f"sim-agency {self.name} to answer", up)

    def kill(self) -> None:
        """SIGKILL it: the agency system is down (its store survives, written synchronously)."""
        _stop(self.popen, signal.SIGKILL)

    def behave(self, **changes: Any) -> dict[str, Any]:
        """``POST /sim/behaviour`` (camelCase or snake_case names, see ``standins.agency.Behaviour``)."""
        r = _POLL.post(f"{self.url}/sim/behaviour", json=changes, timeout=CALL_GUARD)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def received(self) -> dict[str, int]:
        """``GET /sim/received``: message id -> how many deliveries of it reached the store."""
        r = _POLL.get(f"{self.url}/sim/received", timeout=CALL_GUARD)
        assert r.status_code == 200, r.text
        return {m["messageId"]: m["times"] for m in r.json()["messages"]}

    def stored(self) -> list[tuple[str, dict[str, Any], int]]:
        """Every row of the agency's own store, read from its file: (message id, body, times)."""
        if not self.store.exists():
            return []
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT message_id, body, times FROM deliveries").fetchall()
        return [(str(m), json.loads(bytes(b)), int(t)) for m, b, t in rows]


@dataclass
class Agencies:
    """The five agency systems, for a gateway that listens on ``gateway_port`` (kept for their life)."""

    root: Path
    gateway_port: int = field(default_factory=free_port)
    agencies: dict[str, Agency] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stores = self.root / "agencies"
        stores.mkdir(mode=0o700)
        gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self.agencies = {a: Agency(a, free_port(), stores, gateway_url) for a in AGENCIES}

    def __getitem__(self, agency: str) -> Agency:
        return self.agencies[agency]

    def values(self) -> Iterator[Agency]:
        return iter(self.agencies.values())

    def spawn(self) -> None:
        for a in self.values():
            a.spawn()

    def wait_up(self) -> None:
        for a in self.values():
            if a.popen is None or a.popen.poll() is not None:
                a.spawn()
            a.wait_up()

    def reset(self) -> None:
        """Every agency up and behaving (a test before may have told one to misbehave)."""
        self.wait_up()
        for a in self.values():
            a.behave(slow=0, fail=0, failAfterStore=0, timeoutAfterStore=0, hang=30, down=False)

    def stop(self) -> None:
        for a in self.values():
            _stop(a.popen, signal.SIGTERM)

    def connectors_file(self, path: Path) -> Path:
        """A connector file pointing the gateway at them, with a short ``AGENCY_TIMEOUT``."""
        lines = ["agencies:"]
        for a in self.values():
            lines += [f"  {a.name}:", f"    url: {a.url}", f"    timeout: {AGENCY_TIMEOUT}"]
            lines += [f"    connectTimeout: {AGENCY_TIMEOUT}"]
        path.write_text("\n".join(lines) + "\n")
        return path


@dataclass
class Fleet:
    """A ``gateway serve`` on its own data in ``root``, pushing to ``agencies`` (running already)."""

    root: Path
    database_url: str
    agencies: Agencies
    gateway: subprocess.Popen[bytes] | None = None
    keys: dict[str, bytes] = field(default_factory=dict)
    gateway_starts: int = 0
    engine: sa.Engine | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    """Settings of this test's gateway beyond (or instead of) `DELIVERY_SETTINGS`."""
    baseline: dict[str, set[str]] = field(default_factory=dict)
    """Per agency, the message ids its store held before this gateway started (from earlier tests)."""

    @property
    def port(self) -> int:
        return self.agencies.gateway_port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "gateway"

    def __post_init__(self) -> None:
        self.data_dir.mkdir(mode=0o700)
        self.agencies.connectors_file(self.root / "connectors.yaml")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env |= {
            "GATEWAY_DATA_DIR": str(self.data_dir),
            "GATEWAY_DATABASE_URL": self.database_url,
            "GATEWAY_RATE_LIMIT": "100000/second",
            "GATEWAY_ACCESS_TOKEN_TTL": "3600",
            "GATEWAY_CONNECTORS": "http",
            "GATEWAY_CONNECTORS_FILE": str(self.root / "connectors.yaml"),
            "GATEWAY_RETENTION_SWEEP": "false",
            **DELIVERY_SETTINGS,
            **self.extra_env,
        }
        return env

    # -- processes --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Register the senders' systems and start the gateway; the agencies up and behaving."""
        engine = make_engine(self.database_url)
        try:
            upgrade(engine)
            registry = ClientRegistry(make_sessionmaker(engine))
            for agency in SENDERS:
                private_pem, public_pem = generate_keypair("Ed25519")
                registry.register(f"{agency}-system", agency, "agency_system", public_pem)
                self.keys[agency] = private_pem
        finally:
            engine.dispose()
        self.agencies.reset()
        self.baseline = {a.name: {m for m, _, _ in a.stored()} for a in self.agencies.values()}
        self.start_gateway()

    def start_gateway(self) -> None:
        """``gateway serve`` on the fleet's port and data, in its own process group; until it answers."""
        self.gateway_starts += 1
        log = (self.root / f"serve-{self.gateway_starts}.log").open("wb")
        self.gateway = subprocess.Popen(
            [*GATEWAY, "serve", "--port", str(self.port)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            assert self.gateway is not None and self.gateway.poll() is None, self.output()
            return _answers(f"{self.base}/healthz")

        wait_for("the gateway to start\n" + self.output(), up)

    def kill_gateway(self) -> None:
        """SIGKILL the gateway's process group: nothing gets to clean up or commit."""
        assert self.gateway is not None
        os.killpg(self.gateway.pid, signal.SIGKILL)
        self.gateway.wait(CALL_GUARD)

    def stop(self) -> None:
        _stop(self.gateway, signal.SIGTERM)
        if self.engine is not None:
            self.engine.dispose()

    def output(self) -> str:
        """The gateway's logs (the end of each), for a failure's message."""
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.root.glob("serve-*.log")))

    def token(self, agency: str) -> str:
        url = f"{self.base}/oauth2/token"
        assertion = make_client_assertion(f"{agency}-system", self.keys[agency], url)
        r = _POLL.post(
            url,
            timeout=CALL_GUARD,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def audit_verify(self) -> tuple[int, str]:
        """``gateway audit verify`` on the fleet's data: its exit code and output. In this process (the
        environment set as the gateway's meanwhile): the command is the same, an interpreter start less."""
        from gateway.cli import run as cli

        saved = dict(os.environ)
        out = io.StringIO()
        try:
            os.environ.clear()
            os.environ.update(self.env())
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = cli(["audit", "verify"])
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return code, out.getvalue()

    # -- the database, read directly --------------------------------------------------------------------

    def outbox(self) -> Counter[str]:
        """Outbox rows by status."""
        with self._engine().connect() as c:
            rows = c.execute(sa.text("SELECT status, count(*) FROM outbox GROUP BY status")).all()
            return Counter({str(status): int(n) for status, n in rows})

    def outbox_of(self, recipient: str) -> list[tuple[str, int]]:
        """The (status, attempts) of every outbox row to ``recipient``."""
        with self._engine().connect() as c:
            rows = c.execute(
                sa.text("SELECT status, attempts FROM outbox WHERE recipient = :r"), {"r": recipient}
            ).all()
        return [(str(status), int(attempts)) for status, attempts in rows]

    def read(self) -> Stored:
        with self._engine().connect() as c:
            leaves = c.execute(sa.text("SELECT leaf_data FROM audit_entries ORDER BY idx")).scalars()
            entries = [json.loads(bytes(leaf)) for leaf in leaves]
            messages = {
                r.message_id: r.recipient
                for r in c.execute(sa.text("SELECT message_id, recipient FROM messages"))
            }
            outbox = {
                r.message_id: (r.recipient, r.status, int(r.attempts))
                for r in c.execute(sa.text("SELECT message_id, recipient, status, attempts FROM outbox"))
            }
        return Stored(entries, messages, outbox)

    def _engine(self) -> sa.Engine:
        if self.engine is None:
            self.engine = sa.create_engine(self.database_url, poolclass=sa.pool.NullPool)
        return self.engine

    def drained(self, guard: float = 300.0) -> Counter[str]:
        """Wait until no outbox row is pending; the rows by status then."""

        def done() -> Counter[str] | None:
            counts = self.outbox()
            return counts if counts["pending"] == 0 and sum(counts.values()) > 0 else None

        counts: Counter[str] = wait_for("the outbox to drain", done, guard, every=0.1)
        return counts


@dataclass
class Stored:
    """The gateway's database as read after a run."""

    entries: list[dict[str, Any]]
    messages: dict[str, str]  # message id -> recipient
    outbox: dict[str, tuple[str, str, int]]  # message id -> (recipient, status, attempts)

    def of(self, type_: str, action: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["type"] == type_ and e["action"] == action]


# -- shares ------------------------------------------------------------------------------------------------

Plan = tuple[str, str, str, list[str], str]
"""(sender, case id, information type, recipients, purpose)"""


def prepare(fleet: Fleet, tokens: dict[str, str]) -> dict[str, list[Plan]]:
    """Two cases to share in, and the shares to send by kind: ``mixed`` (allowed and refused recipients,
    one to three of them), ``rvdk`` (allowed to rvdk only) and ``om`` (each allowed to om)."""
    with httpx.Client(base_url=fleet.base, timeout=CALL_GUARD) as http:

        def call(agency: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = http.request(method, path, json=body, headers={"Authorization": f"Bearer {tokens[agency]}"})
            assert r.status_code in (200, 201), r.text
            return dict(r.json())

        subjects = [{"role": "slachtoffer", "bsn": BSN_SLACHTOFFER}, {"role": "kind", "bsn": BSN_KIND}]
        # acuut, first step: politie's melding reaches veilig_thuis; rvdk and om take no part yet.
        first = call("politie", "POST", "/v1/cases", {"flow": "acuut", "subjects": subjects})["caseId"]
        # acuut, safety measures, both tracks open: veilig_thuis's assessment to the chain partners.
        wide = call("politie", "POST", "/v1/cases", {"flow": "acuut", "subjects": subjects})["caseId"]
        for step in ("motorkapoverleg", "onderzoek", "veiligheidsmaatregelen"):
            call("politie", "POST", f"/v1/cases/{wide}/transitions", {"step": step})
        call("veilig_thuis", "PUT", f"/v1/cases/{wide}/tracks/zorg", {"open": True})
        call("politie", "PUT", f"/v1/cases/{wide}/tracks/straf", {"open": True})
    assessment = ("veilig_thuis", wide, "veiligheidsbeoordeling")
    return {
        "mixed": [
            ("politie", first, "melding", ["veilig_thuis"], "veiligheid_herstellen"),
            ("politie", first, "melding", ["rvdk"], "veiligheid_herstellen"),
            ("politie", first, "melding", ["veilig_thuis", "om", "rvdk"], "veiligheid_herstellen"),
            (*assessment, ["om", "reclassering", "rvdk"], "zorg_en_straf_afstemmen"),
            (*assessment, ["rvdk"], "zorg_en_straf_afstemmen"),
            (*assessment, ["om", "reclassering"], "overdracht"),
        ],
        "rvdk": [(*assessment, ["rvdk"], "zorg_en_straf_afstemmen")],
        "om": [(*assessment, ["om", "reclassering", "rvdk"], "zorg_en_straf_afstemmen")],
    }


@dataclass
class Share:
    """One share sent, and what came back (``status`` None: a kill cut the answer off)."""

    trace_id: str
    marker: str
    sender: str
    case_id: str
    body: dict[str, Any]
    status: int | None = None
    answer: dict[str, Any] | None = None


@dataclass
class Load:
    """``total`` shares over threads; a thread whose gateway went away waits for ``up`` and goes on."""

    base: str
    tokens: dict[str, str]
    plans: list[Plan]
    total: int
    shares: list[Share] = field(default_factory=list)
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    up: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.up.set()

    def take(self) -> Share | None:
        with self.lock:
            n = len(self.shares)
            if n >= self.total:
                return None
            sender, case_id, information_type, recipients, purpose = self.plans[n % len(self.plans)]
            marker = f"m-{n}-{uuid.uuid4().hex[:8]}"
            # The marker goes into a field every allowed recipient receives: the agency's copy is checked.
            field_name = "aard" if information_type == "melding" else "conclusie"
            body = {
                "informationType": information_type,
                "purpose": purpose,
                "recipients": recipients,
                "payload": {field_name: marker},
            }
            share = Share(uuid.uuid4().hex, marker, sender, case_id, body)
            self.shares.append(share)
            return share

    def send(self, http: httpx.Client, share: Share) -> bool:
        """Send ``share``; False when the gateway is gone (its outcome is then unknown)."""
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
        with self.lock:
            self.answered += 1
        return True

    def run(self) -> None:
        """One thread's part: send until ``total`` shares were sent."""
        while True:
            with httpx.Client(base_url=self.base, timeout=CALL_GUARD) as http:
                while (share := self.take()) is not None:
                    if not self.send(http, share):
                        break
                else:
                    return
            # The gateway was killed: wait for its restart, then on with a fresh connection.
            assert self.up.wait(START_GUARD), "the gateway did not come back"

    def answered_at_least(self, n: int) -> bool:
        with self.lock:
            return self.answered >= n or len(self.shares) >= self.total


def run_threads(load: Load, threads: int) -> list[threading.Thread]:
    workers = [threading.Thread(target=load.run, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    return workers


def join(workers: list[threading.Thread], guard: float = 600.0) -> None:
    for w in workers:
        w.join(guard)
        assert not w.is_alive(), "a load thread hung"


# -- the checks --------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one run did, for its report."""

    shares: int = 0
    answered_200: int = 0
    cut_off: int = 0
    messages: int = 0
    refused: int = 0
    kills: int = 0
    attempts: Counter[str] = field(default_factory=Counter)  # logged push attempts by outcome
    deliveries: int = 0  # deliveries that reached an agency's store (sum of its counts)
    stored: int = 0  # rows in the agencies' stores
    repeated: int = 0  # messages delivered more than once (and kept once)

    def line(self) -> str:
        return (
            f"shares {self.shares} (answered 200: {self.answered_200}, cut off by a kill: {self.cut_off}), "
            f"kills {self.kills}, allowed messages {self.messages}, refused recipients {self.refused}; "
            f"push attempts logged {sum(self.attempts.values())} {dict(sorted(self.attempts.items()))}, "
            f"deliveries received {self.deliveries}, stored {self.stored}, "
            f"delivered more than once (kept once) {self.repeated}"
        )


def check_nothing_lost(fleet: Fleet, shares: list[Share]) -> Figures:
    """Every allowed message in its recipient's store exactly once, with its entries; nothing else there.

    - the log verifies (``gateway audit verify``, its own process);
    - every message has one authorised share entry and at least one delivered push entry, its outbox
      row is delivered, and its recipient's store holds it once, as sent (message id, recipient,
      the share's marker);
    - a store holds nothing else: no message the gateway did not allow to that agency;
    - a share answered 200 lost none of its allowed recipients' messages; one a kill cut off is stored
      in full or not at all.
    """
    code, out = fleet.audit_verify()
    assert code == 0 and out.startswith("audit log OK"), out

    stored = fleet.read()
    by_trace = {s.trace_id: s for s in shares}
    figures = Figures(shares=len(shares))
    share_entries = stored.of("exchange", "share")
    authorised = Counter(e["refs"]["messageId"] for e in share_entries if e["outcome"] == "authorised")
    assert set(authorised) == set(stored.messages), "a message without its authorised entry, or the reverse"
    assert set(authorised.values()) == {1}, "a message named by more than one authorised entry"
    pushes = stored.of("delivery", "push")
    figures.attempts = Counter(e["outcome"] for e in pushes)
    delivered = Counter(e["refs"]["messageId"] for e in pushes if e["outcome"] == "delivered")
    assert not set(stored.messages) - set(delivered), "a message without a delivered push entry"
    not_delivered = {m: row for m, row in stored.outbox.items() if row[1] != "delivered"}
    assert not not_delivered, f"outbox rows not delivered: {list(not_delivered.items())[:5]}"
    assert set(stored.outbox) == set(stored.messages), "a message without its outbox row, or the reverse"

    # The marker each message must carry, from its share entry's trace id.
    marker_of = {
        e["refs"]["messageId"]: by_trace[e["traceId"]].marker
        for e in share_entries
        if e["outcome"] == "authorised" and e.get("traceId") in by_trace
    }
    for agency in fleet.agencies.values():
        earlier = fleet.baseline[agency.name]
        rows = [row for row in agency.stored() if row[0] not in earlier]
        ids = Counter(m for m, _, _ in rows)
        assert set(ids.values()) <= {1}, f"{agency.name}: a message stored more than once"
        expected = {m for m, r in stored.messages.items() if r == agency.name}
        missing, unexpected = expected - set(ids), set(ids) - expected
        assert not missing, f"{agency.name}: allowed, never stored: {len(missing)}, {sorted(missing)[:3]}"
        assert not unexpected, f"{agency.name}: stored {len(unexpected)} messages not allowed to it"
        for message_id, body, times in rows:
            assert body["messageId"] == message_id and body["recipient"] == agency.name, message_id
            if message_id in marker_of:
                assert marker_of[message_id] in body["payload"].values(), f"{message_id}: not as sent"
            figures.deliveries += times
            figures.repeated += times > 1
        received = {m: t for m, t in agency.received().items() if m not in earlier}
        assert received == {m: t for m, _, t in rows}, f"{agency.name}: /sim/received disagrees"
        figures.stored += len(rows)
    figures.messages = len(stored.messages)

    entries_of: dict[str, list[dict[str, Any]]] = {}
    for e in share_entries:
        entries_of.setdefault(e.get("traceId", ""), []).append(e)
    for share in shares:
        entries = entries_of.get(share.trace_id, [])
        figures.refused += sum(e["outcome"] == "refused" for e in entries)
        if share.status == 200:
            assert share.answer is not None
            figures.answered_200 += 1
            allowed = {x["messageId"] for x in share.answer["results"] if x["allowed"]}
            assert allowed <= set(stored.messages), f"an answered share lost a message: {share}"
            assert sorted(e["counterpart"] for e in entries) == sorted(share.body["recipients"]), share
        elif share.status is None:
            figures.cut_off += 1
            # All or nothing: every recipient's entry, or none.
            assert not entries or len(entries) == len(share.body["recipients"]), share
        else:
            raise AssertionError(f"unexpected answer {share.status} to {share}")
    return figures


def iterate_kills(total: int, kills: int) -> Iterator[int]:
    """The answer counts at which to kill during the load: evenly spread over ``total``."""
    for i in range(1, kills + 1):
        yield total * i // (kills + 1)
