"""The outbox and its deliverer over real HTTP: retries, the dead letter, the circuit, leases, statuses.

Agency systems are stand-in servers (``standins.agency``) reached by the HTTP connectors; each counts
the delivery calls it receives per message id. Time is the deliverer's injected clock, moved by the test.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from audit import verify_log
from connectors import SimulatedAgencySystem, build_connectors
from gateway.app import create_app
from gateway.cli import run
from gateway.db import utcnow
from gateway.models import Message, OutboxItem
from gateway.runtime import Runtime
from gateway.services.outbox import CircuitBreakers, Deliverer, full_jitter
from gateway.settings import Settings
from gateway.tracing import from_header
from standins.agency import make_agency_app
from tests.e2e.conftest import AGENCIES, Gateway
from tests.live import reserve_socket, serve

MELDING = {
    "informationType": "melding",
    "purpose": "veiligheid_herstellen",
    "recipients": ["veilig_thuis"],
    "payload": {"aard": "fysiek geweld"},
}


class Clock:
    """The deliverer's time: starts now, moves only when told."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def counting(app: Any, calls: Counter[str]) -> Any:
    """``app`` behind a count of the delivery calls it receives, per message id, whatever it answers."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/deliveries"):
            await app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            calls[json.loads(body).get("messageId", "?")] += 1
        except ValueError:
            calls["?"] += 1
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send)

    return asgi


@dataclass
class World:
    gw: Gateway
    rt: Runtime
    systems: dict[str, SimulatedAgencySystem]
    calls: Counter[str]
    clock: Clock
    urls: dict[str, str]
    settings: Settings
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    case_id: str | None = None
    pushes_before: int = 0

    def client(self, agency: str) -> httpx.Client:
        """One client (one token) per agency for the whole test."""
        if agency not in self.clients:
            self.clients[agency] = self.gw.agency(agency)
        return self.clients[agency]

    def share(self, body: dict[str, Any] = MELDING, by: str = "politie") -> dict[str, Any]:
        if self.case_id is None:
            self.case_id = self.gw.open_case()
        r = self.client(by).post(f"/v1/cases/{self.case_id}/shares", json=body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def status(self, share_id: str, by: str = "politie") -> Any:
        r = self.client(by).get(f"/v1/shares/{share_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def pushes(self, everything: bool = False) -> list[dict[str, Any]]:
        """The push entries logged during this test (``everything``: ever)."""
        entries = [e.entry for e in self.rt.audit.entries(0, self.rt.audit.size())]
        pushes = [e for e in entries if e["type"] == "delivery" and e["action"] == "push"]
        return pushes if everything else pushes[self.pushes_before :]

    def row(self, message_id: str) -> Any:
        with self.rt.db.connect() as c:
            return c.execute(sa.select(OutboxItem.__table__).where(OutboxItem.message_id == message_id)).one()

    def verifies(self) -> None:
        result = verify_log(self.rt.audit, self.rt.audit.verifier_keys())
        assert result.ok, result.reason


@pytest.fixture(scope="module")
def gateway_world(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One gateway for the module (a runtime takes seconds to build), on SQLite then on PostgreSQL
    (``db_url``: claims, leases and statuses are storage); each test gets its own deliverer."""
    tmp_path = tmp_path_factory.mktemp("outbox")
    with ExitStack() as stack:
        # Only veilig_thuis receives pushes here: one stand-in system serves every agency's URL.
        vt = SimulatedAgencySystem("veilig_thuis")
        calls: Counter[str] = Counter()
        url = stack.enter_context(serve(counting(make_agency_app(vt), calls)))
        urls = dict.fromkeys(AGENCIES, url)
        sock = reserve_socket()
        settings = Settings(
            data_dir=tmp_path,
            database_url=db_url,
            port=sock.getsockname()[1],
            connectors="http",
            agency_urls=urls,
            delivery_backoff_base=1.0,
            delivery_backoff_cap=60.0,
        )
        rt = Runtime(settings, connectors=build_connectors("http", urls))
        stack.callback(rt.close)
        base = stack.enter_context(serve(create_app(runtime=rt), sock=sock))
        gw = Gateway(base=base, runtime=rt)
        for agency in ("politie", "veilig_thuis"):
            gw.register(f"{agency}-system", agency, "agency_system")
        w = World(gw, rt, {"veilig_thuis": vt}, calls, Clock(), urls, settings)
        stack.callback(lambda: [c.close() for c in w.clients.values()])
        yield w


@pytest.fixture()
def make_world(gateway_world: World) -> Callable[..., World]:
    """The module's gateway with a fresh deliverer (its own clock, circuits and limits) for this test."""

    def make(
        *, max_attempts: int = 10, breaker: tuple[int, float] = (5, 30.0), modes: dict[str, str] | None = None
    ) -> World:
        w = gateway_world
        w.systems["veilig_thuis"].set_down(False)
        w.clock = Clock()
        w.rt.deliverer = Deliverer(w.rt, clock=w.clock)
        w.rt.deliverer.max_attempts = max_attempts
        w.rt.deliverer.breakers = CircuitBreakers(*breaker)
        w.rt.deliverer.modes = dict(modes or {})  # type: ignore[arg-type]
        w.pushes_before = len(w.pushes(everything=True))
        return w

    return make


def test_a_failed_push_is_retried_after_a_jittered_backoff_then_delivered(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    vt = w.systems["veilig_thuis"]
    vt.set_down(True)
    answer = w.share()
    [result] = answer["results"]
    assert result["delivered"] is False
    message_id = result["messageId"]
    row = w.row(message_id)
    assert (row.status, row.attempts, row.last_error, row.claimed_until) == (
        "pending",
        1,
        "unavailable",
        None,
    )
    assert w.clock.now <= row.next_attempt_at <= w.clock.now + dt.timedelta(seconds=1.0)  # min(cap, base*2^0)

    assert w.rt.deliverer.run_once() == 0  # not due yet: no attempt
    w.clock.advance(60)
    assert w.rt.deliverer.run_once() == 1  # still down: attempt 2
    second = w.row(message_id)
    assert second.attempts == 2
    assert second.next_attempt_at <= w.clock.now + dt.timedelta(seconds=2.0)

    vt.set_down(False)
    w.clock.advance(60)
    assert w.rt.deliverer.run_once() == 1
    status = w.status(answer["shareId"])
    [recipient] = status["recipients"]
    assert (
        recipient["status"] == "delivered"
        and recipient["attempts"] == 3
        and recipient["messageId"] == message_id
    )
    assert "lastError" not in recipient and recipient["deliveredAt"]
    assert len([d for d in vt.received if d.message_id == message_id]) == 1  # kept once
    assert w.calls[message_id] == 3

    pushes = [(e["outcome"], e["refs"]["attempt"], e["refs"].get("error")) for e in w.pushes()]
    assert pushes == [
        ("push_failed", "1", "unavailable"),
        ("push_failed", "2", "unavailable"),
        ("delivered", "3", None),
    ]
    for e in w.pushes():
        assert e["refs"]["messageId"] == message_id and e["refs"]["shareId"] == answer["shareId"]
        assert e["counterpart"] == "veilig_thuis" and "payloadDigest" not in e
        assert "fysiek" not in json.dumps(e)  # never the payload
    assert w.pushes()[0]["status"] == "error" and w.pushes()[-1]["status"] == "ok"
    w.verifies()


def test_dead_letter_after_the_last_attempt_then_an_operator_requeues_it(
    make_world: Callable[..., World], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_world(max_attempts=2)
    vt = w.systems["veilig_thuis"]
    vt.set_down(True)
    answer = w.share()
    message_id = answer["results"][0]["messageId"]
    w.clock.advance(60)
    assert w.rt.deliverer.run_once() == 1
    w.clock.advance(3600)
    assert w.rt.deliverer.run_once() == 0  # a dead letter is never tried again by itself
    [recipient] = w.status(answer["shareId"])["recipients"]
    assert (recipient["status"], recipient["attempts"], recipient["lastError"]) == (
        "dead_letter",
        2,
        "unavailable",
    )
    assert w.pushes()[-1]["outcome"] == "dead_letter" and w.pushes()[-1]["status"] == "error"
    assert w.calls[message_id] == 2

    data = ["--data-dir", str(w.settings.data_dir)]
    monkeypatch.setenv("GATEWAY_DATABASE_URL", w.settings.effective_database_url)  # the commands' database
    assert run(["outbox", "list", "--status", "dead_letter", *data]) == 0
    listed = capsys.readouterr().out.splitlines()
    [line] = [x for x in listed if x.startswith(message_id)]
    assert line.startswith(message_id) and "veilig_thuis" in line and "dead_letter" in line
    assert "attempts 2" in line and "last error unavailable" in line
    assert run(["outbox", "list", "--agency", "om", *data]) == 0
    assert capsys.readouterr().out == ""

    # Errors are one line, naming what is wrong.
    assert run(["outbox", "retry", "no-such-message", *data]) == 1
    assert capsys.readouterr().err.strip() == "error: no outbox row for message no-such-message"
    assert run(["outbox", "retry", message_id, "--dead-letter", *data]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert run(["outbox", "list", "--status", "lost", *data]) == 2
    assert capsys.readouterr().err.startswith("error: ")

    assert run(["outbox", "retry", "--dead-letter", "--agency", "veilig_thuis", *data]) == 0
    n = len(listed)
    assert capsys.readouterr().out.strip() == f"requeued {n} message{'s' if n > 1 else ''}"
    row = w.row(message_id)
    assert (row.status, row.attempts) == ("pending", 0)
    [requeued] = [
        e.entry for e in w.rt.audit.entries(0, w.rt.audit.size()) if e.entry["action"] == "outbox.retry"
    ]
    assert requeued["refs"] == {
        "messageId": message_id,
        "shareId": answer["shareId"],
        "previous": "dead_letter",
    }
    assert requeued["actor"]["agency"] == "operator"

    vt.set_down(False)
    assert w.rt.deliverer.run_once() >= 1
    assert w.status(answer["shareId"])["recipients"][0]["status"] == "delivered"
    assert run(["outbox", "retry", message_id, *data]) == 1
    assert "was delivered" in capsys.readouterr().err
    w.verifies()


def test_the_circuit_opens_stops_attempts_and_closes_after_a_trial(make_world: Callable[..., World]) -> None:
    w = make_world(breaker=(2, 30.0))
    vt = w.systems["veilig_thuis"]
    vt.set_down(True)
    shares = [w.share() for _ in range(3)]
    ids = [s["results"][0]["messageId"] for s in shares]
    assert [w.calls[i] for i in ids] == [1, 1, 0]  # open after two failures: the third is not tried
    assert w.row(ids[2]).attempts == 0 and w.row(ids[2]).claimed_until is None
    assert w.rt.deliverer.breakers.state("veilig_thuis", w.clock.now) == "open"

    w.clock.advance(20)  # the rows are due, the circuit is still open
    assert w.rt.deliverer.run_once() == 0
    assert sum(w.calls[i] for i in ids) == 2

    vt.set_down(False)
    w.clock.advance(11)  # past the cool-down: half-open, one trial, which closes it
    assert w.rt.deliverer.run_once() == 3
    assert w.rt.deliverer.breakers.state("veilig_thuis", w.clock.now) == "closed"
    assert all(w.status(s["shareId"])["recipients"][0]["status"] == "delivered" for s in shares)
    assert [w.calls[i] for i in ids] == [2, 2, 1]


def test_a_failed_trial_reopens_the_circuit() -> None:
    t0 = utcnow()
    b = CircuitBreakers(failures=2, cooldown=30)
    b.failed("om", t0)
    assert b.state("om", t0) == "closed"
    b.failed("om", t0)
    assert b.state("om", t0) == "open" and b.blocked(t0) == ["om"] and b.allows("rvdk", t0)
    later = t0 + dt.timedelta(seconds=30)
    assert b.state("om", later) == "half_open" and b.allows("om", later)
    b.failed("om", later)  # the trial failed: open for another cool-down
    assert b.state("om", later + dt.timedelta(seconds=29)) == "open"
    b.succeeded("om")
    assert b.state("om", later) == "closed"


def test_full_jitter_stays_within_the_exponential_bound() -> None:
    import random

    rng = random.Random(7)
    for attempt in range(1, 80):
        bound = min(300.0, 1.0 * 2 ** (attempt - 1))
        waits = [full_jitter(attempt, 1.0, 300.0, rng) for _ in range(20)]
        assert all(0 <= x <= bound for x in waits)
        assert max(waits) > bound / 4  # spread over the range, not pinned to one end


def test_two_deliverers_on_one_database_never_send_a_message_twice(make_world: Callable[..., World]) -> None:
    w = make_world(breaker=(1000, 30.0))
    vt = w.systems["veilig_thuis"]
    vt.set_down(True)
    ids = [w.share()["results"][0]["messageId"] for _ in range(12)]
    vt.set_down(False)
    # A second gateway process's deliverer: its own runtime, engine and pool on the same database.
    other = Runtime(w.settings, connectors=build_connectors("http", w.urls))
    try:
        deliverers = [w.rt.deliverer, Deliverer(other, clock=w.clock)]
        w.clock.advance(60)
        before = Counter(w.calls)
        start = threading.Barrier(2)
        made = [0, 0]

        def run_pass(i: int) -> None:
            start.wait(timeout=30)
            made[i] = deliverers[i].run_once()

        threads = [threading.Thread(target=run_pass, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sum(made) == 12
        assert {i: w.calls[i] - before[i] for i in ids} == dict.fromkeys(ids, 1)  # each sent once
        assert sorted(d.message_id for d in vt.received if d.message_id in ids) == sorted(ids)

        # A deliverer that claimed a row and died: the row waits out its lease, then another takes it.
        [late] = [w.share()["results"][0]["messageId"] for _ in range(1)]
        assert w.row(late).status == "delivered"
        with w.rt.db.begin() as c:  # put it back, as if its push had failed
            c.execute(sa.update(OutboxItem).where(OutboxItem.message_id == late).values(status="pending"))
        claim = deliverers[1].claim(late, "share", "veilig_thuis", 1)
        assert claim is not None
        assert deliverers[1].claim(late, "share", "veilig_thuis", 1) is None
        assert deliverers[0].run_once() == 0  # leased to the other
        w.clock.advance(w.settings.delivery_lease + 1)
        assert deliverers[0].run_once() == 1  # the lease ran out: taken over
        # The first comes back late: its attempt is logged, but the row is no longer its to change.
        outcome = deliverers[1]._attempt(claim, None, from_header(None))
        deliverers[1]._commit([outcome])
        row = w.row(late)
        assert row.status == "delivered" and row.attempts == 2 and row.claimed_until is None
    finally:
        other.close()
    w.verifies()


def test_share_statuses_for_pull_push_and_refused_recipients_and_404_for_others(
    make_world: Callable[..., World],
) -> None:
    w = make_world(modes={"veilig_thuis": "pull"})
    answer = w.share(MELDING | {"recipients": ["veilig_thuis", "rvdk"]})
    vt, rvdk = answer["results"]
    assert vt["allowed"] is True and vt["delivered"] is False and rvdk["allowed"] is False
    # Veilig Thuis's melding grant names every role of the case (data.json bsn:<role>); rvdk got nothing.
    assert vt["identifies"] == ["slachtoffer", "pleger", "kind"] and rvdk["identifies"] is None
    assert w.calls[vt["messageId"]] == 0  # pull only: never pushed
    with w.rt.db.connect() as c:
        rows = sa.select(sa.func.count()).where(OutboxItem.share_id == answer["shareId"])
        assert c.execute(rows).scalar() == 0

    status = w.status(answer["shareId"])
    assert status["shareId"] == answer["shareId"] and status["informationType"] == "melding"
    assert status["purpose"] == "veiligheid_herstellen" and status["createdAt"]
    assert status["recipients"] == [
        {
            "recipient": "veilig_thuis",
            "allowed": True,
            "messageId": vt["messageId"],
            "identifies": vt["identifies"],
            "status": "pending",
            "attempts": 0,
        },
        {"recipient": "rvdk", "allowed": False, "status": "refused", "attempts": 0},
    ]
    with w.gw.agency("veilig_thuis") as c:
        assert c.post(f"/v1/inbox/{vt['messageId']}/ack").status_code == 204
        other = c.get(f"/v1/shares/{answer['shareId']}")  # not the sender
        assert other.status_code == 404 and other.headers["content-type"].startswith(
            "application/problem+json"
        )
        assert c.get("/v1/shares/no-such-share").status_code == 404
    [acked] = w.status(answer["shareId"])["recipients"][:1]
    assert acked["status"] == "delivered" and acked["deliveredAt"]


def test_a_message_acknowledged_or_erased_before_its_push_ends_without_retries(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    w.systems["veilig_thuis"].set_down(True)
    acked_id = w.share()["results"][0]["messageId"]
    erased_id = w.share()["results"][0]["messageId"]
    assert w.client("veilig_thuis").post(f"/v1/inbox/{acked_id}/ack").status_code == 204
    with w.rt.db.begin() as c:  # what the retention sweeper does to a message past its term
        c.execute(
            sa.update(Message)
            .where(Message.message_id == erased_id)
            .values(payload=None, sealed=None, erased_at=utcnow())
        )
    w.clock.advance(60)
    assert w.rt.deliverer.run_once() == 2
    assert (w.row(acked_id).status, w.row(erased_id).status) == ("delivered", "dead_letter")
    assert w.row(erased_id).last_error == "erased"
    outcomes = {
        e["refs"]["messageId"]: (e["outcome"], e["refs"].get("via"), e["refs"].get("error"))
        for e in w.pushes()
    }
    assert outcomes[acked_id] == ("skipped", "inbox", None)
    assert outcomes[erased_id] == ("dead_letter", None, "erased")
    w.clock.advance(3600)
    assert w.rt.deliverer.run_once() == 0


def test_a_push_only_recipient_is_erased_once_its_system_took_the_message(
    make_world: Callable[..., World],
) -> None:
    """``push``: the agency never reads its inbox, so its 2xx is the acknowledgement; ``both`` keeps the
    message in the inbox until it is acknowledged there."""
    for mode, kept in (("push", False), ("both", True)):
        w = make_world(modes={"veilig_thuis": mode})
        [vt] = w.share()["results"]
        assert vt["delivered"] is True, mode
        with w.rt.db.connect() as c:
            m = c.execute(sa.select(Message.__table__).where(Message.message_id == vt["messageId"])).one()
        assert (m.sealed is not None, m.erased_at is None, m.acked_at is None) == (kept, kept, kept), mode
        inbox = w.client("veilig_thuis").get("/v1/inbox").json()["messages"]
        assert (vt["messageId"] in {x["messageId"] for x in inbox}) is kept, mode
        status = w.status(w.share()["shareId"])["recipients"][0]
        assert status["status"] == "delivered", mode
    w.verifies()
