"""Dependency faults answer 503 with ``Retry-After``, never 500, never a long stall (DESIGN 7).

Each fault is a real one on the gateway's own database, over real HTTP:

- **locked**: a second connection holds SQLite's write lock (``BEGIN IMMEDIATE``); writes give up after
  ``GATEWAY_DB_BUSY_TIMEOUT`` rather than the old 30 s, reads still answer (WAL readers never wait);
- **full**: SQLite's own ``PRAGMA max_page_count`` on every connection the gateway checks out, so a
  write that needs a page fails with the real ``SQLITE_FULL`` ("database or disk is full");
- **down**: PostgreSQL refusing the gateway's connections (``ALLOW_CONNECTIONS false``, its sessions
  terminated), so every route, reads included, fails at the connection;
- the policy engine reporting itself unhealthy.

For each: the representative routes (token endpoint, open a case, share, inbox, ack, checkpoint,
entries) answer 503 problem+json with a numeric ``Retry-After``, ``/readyz`` answers 503 while it
lasts, and once it clears the same calls succeed, ``/readyz`` is 200 again and nothing was
half-written: every case, message and acknowledgement has its audit entry and the log verifies.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from audit import verify_log
from gateway.app import create_app
from gateway.policy import EmbeddedEngine
from tests.e2e.conftest import BSN_PLEGER, BSN_SLACHTOFFER, Gateway, fresh_pg_database, start_gateway
from tests.live import serve

PROBLEM = "application/problem+json"
MELDING = {"datumTijd": "2026-11-28T02:14:00Z", "aard": "fysiek geweld"}
#: A hang guard, not a measurement: the old code waited 30 s on a held lock before answering.
HANG_GUARD = 20.0
#: Short, so that each refused write under a held lock costs the suite about a second.
BUSY_TIMEOUT = 1.0
#: The tests call in bursts of a few hundred; per-client rate limits are not what they are about.
RATE_LIMIT = "10000/second"


def _start(data_dir: Path, **settings: Any) -> Iterator[Gateway]:
    runtime, sock = start_gateway(data_dir, **settings)
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime, http=httpx.Client(timeout=HANG_GUARD))
        gw.register("politie-system", "politie", "agency_system")
        gw.register("veilig_thuis-system", "veilig_thuis", "agency_system")
        gw.register("auditor", "veilig_thuis", "auditor")
        yield gw
        gw.http.close()
    runtime.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from _start(tmp_path_factory.mktemp("faults"), db_busy_timeout=BUSY_TIMEOUT, rate_limit=RATE_LIMIT)


class Calls:
    """The representative calls, each as a fresh request of the same kind."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.politie = self._client("politie-system")
        self.vt = self._client("veilig_thuis-system")
        self.auditor = self._client("auditor")
        self.case_id = gw.open_case()

    def _client(self, client_id: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.gw.base,
            headers={"Authorization": f"Bearer {self.gw.token(client_id)}"},
            timeout=HANG_GUARD,
        )

    def close(self) -> None:
        for c in (self.politie, self.vt, self.auditor):
            c.close()

    def token(self) -> httpx.Response:
        return self.gw.token_response("politie-system")

    def open_case(self) -> httpx.Response:
        subjects = [{"role": "slachtoffer", "bsn": BSN_SLACHTOFFER}, {"role": "pleger", "bsn": BSN_PLEGER}]
        return self.politie.post("/v1/cases", json={"flow": "acuut", "subjects": subjects})

    def share(self) -> httpx.Response:
        body = {
            "informationType": "melding",
            "purpose": "veiligheid_herstellen",
            "recipients": ["veilig_thuis"],
            "payload": MELDING,
        }
        return self.politie.post(f"/v1/cases/{self.case_id}/shares", json=body)

    def message(self) -> str:
        """A fresh message in veilig_thuis's inbox (made while the database is fine)."""
        r = self.share()
        assert r.status_code == 200, r.text
        return str(r.json()["results"][0]["messageId"])

    def inbox(self) -> httpx.Response:
        return self.vt.get("/v1/inbox")

    def ack(self, message_id: str) -> httpx.Response:
        return self.vt.post(f"/v1/inbox/{message_id}/ack")

    def checkpoint(self) -> httpx.Response:
        return self.auditor.get("/v1/audit/checkpoint")

    def entries(self) -> httpx.Response:
        return self.auditor.get("/v1/audit/entries", params={"caseId": self.case_id})

    def readyz(self) -> httpx.Response:
        return self.gw.http.get(f"{self.gw.base}/readyz")


@pytest.fixture(scope="module")
def gw_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the default busy timeout, for contention that must be waited out."""
    yield from _start(tmp_path_factory.mktemp("contention"), rate_limit=RATE_LIMIT)


@pytest.fixture()
def calls(gw: Gateway) -> Iterator[Calls]:
    c = Calls(gw)
    yield c
    c.close()


@pytest.fixture()
def contended(gw_default: Gateway) -> Iterator[Calls]:
    c = Calls(gw_default)
    yield c
    c.close()


SUCCESS = {"token": 200, "open_case": 201, "share": 200, "inbox": 200, "ack": 204, "checkpoint": 200}


def assert_unavailable(r: httpx.Response, fault: str | None = None) -> None:
    """503 problem+json with a whole number of seconds in ``Retry-After``."""
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    retry_after = r.headers.get("retry-after")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, r.headers
    body = r.json()
    assert body["status"] == 503
    assert body["type"].endswith("-unavailable"), body
    if fault is not None:
        assert body.get("fault") == fault, body


def assert_not_ready(r: httpx.Response, check: str, reason: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers.get("retry-after", "").isdigit(), r.headers
    checks = r.json()["checks"]
    assert checks[check].startswith(reason), checks


def assert_ready(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "rateLimits": "ok", "policy": "ok", "signingKey": "ok"}


def assert_nothing_half_written(gw: Gateway) -> None:
    """Every case, message and acknowledgement in the database has its audit entry; the log verifies."""
    rt = gw.runtime
    entries = [e.entry for e in rt.audit.iter_entries()]
    opened = {e.get("caseId") for e in entries if e["action"] == "case.open" and e["outcome"] == "opened"}
    shared = {e.get("refs", {}).get("messageId") for e in entries if e["action"] == "share"}
    acked = {e.get("refs", {}).get("messageId") for e in entries if e["action"] == "ack"}
    with rt.db.connect() as conn:
        cases = set(conn.execute(sa.text("SELECT case_id FROM cases")).scalars())
        messages = set(conn.execute(sa.text("SELECT message_id FROM messages")).scalars())
        acknowledged = set(
            conn.execute(sa.text("SELECT message_id FROM messages WHERE acked_at IS NOT NULL")).scalars()
        )
    assert cases <= opened, "a case without its case.open entry"
    assert messages <= shared, "a message without its share entry"
    assert acknowledged <= acked, "an acknowledged message without its ack entry"
    result = verify_log(rt.audit, rt.signer.verifier_key())
    assert result.ok, result.reason


@contextmanager
def write_lock(gw: Gateway) -> Iterator[sqlite3.Connection]:
    """Hold the write lock of the gateway's SQLite file from a second connection, as another process
    (a stuck migration, a backup tool, a second gateway) would."""
    conn = sqlite3.connect(gw.runtime.settings.data_dir / "gateway.db", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# -- locked ---------------------------------------------------------------------------------------


def test_a_locked_database_answers_503_on_every_write_in_bounded_time(calls: Calls) -> None:
    message_id = calls.message()  # also grows the log, so the checkpoint must write a new one
    with write_lock(calls.gw):
        refused = {
            "token": calls.token(),
            "open_case": calls.open_case(),
            "share": calls.share(),
            "ack": calls.ack(message_id),
            "checkpoint": calls.checkpoint(),
        }
        for r in refused.values():
            assert_unavailable(r, fault="locked")
        # A held write lock stops no reader in WAL mode: the inbox and the log still answer.
        assert calls.inbox().status_code == 200
        assert calls.entries().status_code == 200
        assert_not_ready(calls.readyz(), "database", "locked")
    again = {
        "token": calls.token(),
        "open_case": calls.open_case(),
        "share": calls.share(),
        "ack": calls.ack(message_id),
        "checkpoint": calls.checkpoint(),
    }
    assert {k: r.status_code for k, r in again.items()} == {k: SUCCESS[k] for k in again}
    assert_ready(calls.readyz())
    assert_nothing_half_written(calls.gw)


def test_a_write_lock_held_briefly_is_waited_for(contended: Calls) -> None:
    """Ordinary contention is not a fault: a lock given back well within the busy timeout (the default,
    5 s) is waited for, and the call succeeds."""
    conn = sqlite3.connect(
        contended.gw.runtime.settings.data_dir / "gateway.db", isolation_level=None, check_same_thread=False
    )
    conn.execute("BEGIN IMMEDIATE")
    # Released from another thread while the call waits: a twentieth of the busy timeout.
    release = threading.Timer(0.25, lambda: conn.execute("ROLLBACK"))
    release.start()
    try:
        r = contended.open_case()
    finally:
        release.join()
        conn.close()
    assert r.status_code == 201, r.text


def test_concurrent_writers_all_succeed(contended: Calls) -> None:
    """Many writers at once contend for the one write lock; none of them is turned away."""
    results: list[int] = []

    def open_one() -> None:
        results.append(contended.open_case().status_code)

    threads = [threading.Thread(target=open_one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD)
    assert results == [201] * 12


# -- full -----------------------------------------------------------------------------------------


@contextmanager
def database_full(gw: Gateway) -> Iterator[None]:
    """SQLite's page limit at the database's present size on every connection the gateway checks out
    (``max_page_count`` is per connection and cannot go below the present size): any write that needs
    one more page fails with SQLITE_FULL, as on a full disk. VACUUM first leaves no free page to reuse."""
    with sqlite3.connect(gw.runtime.settings.data_dir / "gateway.db", isolation_level=None) as c:
        c.execute("VACUUM")
    state = {"full": True}

    def limit(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {1 if state['full'] else 1_073_741_823}")

    sa.event.listen(gw.runtime.db, "checkout", limit)
    try:
        yield
        state["full"] = False
    finally:
        state["full"] = False
        sa.event.remove(gw.runtime.db, "checkout", limit)
        gw.runtime.db.dispose()  # no connection keeps the limit


def until_refused(call: Callable[[], httpx.Response], success: int, tries: int = 200) -> httpx.Response:
    """Repeat a write until the full database refuses it: rows fit into a page's free space until a
    page is full, so each kind of write is refused within a page's worth of rows (``tries`` bounds it).
    Every answer before the refusal is a success, never a 500."""
    for _ in range(tries):
        r = call()
        if r.status_code != success:
            return r
    raise AssertionError(f"{tries} writes into a full database all succeeded")


def test_a_full_database_answers_503_and_readyz_until_a_write_succeeds(calls: Calls) -> None:
    messages = [calls.message() for _ in range(30)]
    pending = iter(messages)
    with database_full(calls.gw):
        refused = {
            "token": until_refused(calls.token, 200),
            "open_case": until_refused(calls.open_case, 201),
            "share": until_refused(calls.share, 200),
            "ack": until_refused(lambda: calls.ack(next(pending)), 204),
        }
        for r in refused.values():
            assert_unavailable(r, fault="full")
        # Reading needs no space.
        assert calls.inbox().status_code == 200
        assert calls.entries().status_code == 200
        # A rolled-back probe cannot see a full database; the failed writes are remembered instead.
        assert_not_ready(calls.readyz(), "database", "full")
    # Space again: readiness stays 503 until a write has shown it, then the same calls succeed.
    assert_not_ready(calls.readyz(), "database", "full")
    again = {
        "token": calls.token(),
        "open_case": calls.open_case(),
        "share": calls.share(),
        "ack": calls.ack(next(pending)),
        "checkpoint": calls.checkpoint(),
    }
    assert {k: r.status_code for k, r in again.items()} == {k: SUCCESS[k] for k in again}
    assert_ready(calls.readyz())
    assert_nothing_half_written(calls.gw)


# -- down (PostgreSQL) ----------------------------------------------------------------------------


@pytest.fixture()
def pg(tmp_path: Path) -> Iterator[tuple[Gateway, sa.Engine, str]]:
    with fresh_pg_database("vd_faults") as (url, admin, name):
        for gw in _start(tmp_path, database_url=url, db_busy_timeout=BUSY_TIMEOUT, rate_limit=RATE_LIMIT):
            yield gw, admin, name


def _postgres_down(admin: sa.Engine, name: str, down: bool) -> None:
    with admin.connect() as c:
        c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if down else "true"}'))
        if down:
            c.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )


def test_postgresql_down_answers_503_on_every_route_and_recovers(
    pg: tuple[Gateway, sa.Engine, str],
) -> None:
    gw, admin, name = pg
    calls = Calls(gw)
    try:
        message_id = calls.message()
        _postgres_down(admin, name, True)
        try:
            refused = {
                "token": calls.token(),
                "open_case": calls.open_case(),
                "share": calls.share(),
                "inbox": calls.inbox(),
                "ack": calls.ack(message_id),
                "checkpoint": calls.checkpoint(),
                "entries": calls.entries(),
            }
            for r in refused.values():
                assert_unavailable(r, fault="unavailable")
            assert_not_ready(calls.readyz(), "database", "unavailable")
        finally:
            _postgres_down(admin, name, False)
        again = {
            "token": calls.token(),
            "open_case": calls.open_case(),
            "share": calls.share(),
            "inbox": calls.inbox(),
            "ack": calls.ack(message_id),
            "checkpoint": calls.checkpoint(),
        }
        assert {k: r.status_code for k, r in again.items()} == {k: SUCCESS[k] for k in again}
        assert_ready(calls.readyz())
        assert_nothing_half_written(gw)
    finally:
        calls.close()


def test_postgresql_waits_are_bounded_by_the_busy_timeout(pg: tuple[Gateway, sa.Engine, str]) -> None:
    gw, _admin, _name = pg
    with gw.runtime.db.connect() as conn:
        assert conn.execute(sa.text("SHOW lock_timeout")).scalar() == "1s"
    assert gw.runtime.db.pool.timeout() == BUSY_TIMEOUT  # type: ignore[attr-defined]


# -- policy engine --------------------------------------------------------------------------------


class EngineReportingStalled(EmbeddedEngine):
    """The real embedded engine, whose ``health()`` reports a stall while ``stalled`` is set: how the
    engine says so is the engine's own business (and test); here only ``/readyz`` listening is."""

    stalled = False

    def health(self) -> str | None:
        return "stalled" if self.stalled else super().health()


def test_readyz_is_503_while_the_policy_engine_is_unhealthy(calls: Calls) -> None:
    rt = calls.gw.runtime
    engine = EngineReportingStalled(rt.settings.policy_dir)
    old = rt.policy.swap(engine)
    try:
        engine.stalled = True
        assert_not_ready(calls.readyz(), "policy", "stalled")
        engine.stalled = False
        assert_ready(calls.readyz())
    finally:
        rt.policy.swap(old)
