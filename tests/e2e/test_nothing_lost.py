"""Nothing lost (issue 9, item 7): every allowed message reaches its recipient's store exactly once.

Over real processes (`tests.e2e._fleet`): ``gateway serve`` on a temporary data directory, pushing
through its transactional outbox to the five agency systems, each a ``gateway sim-agency`` process that
verifies the signature and keeps each message id once in its own SQLite store.

1. The gateway is SIGKILLed (its process group) several times while it delivers: during the load (the
   share's own first attempts) and while its deliverer drains a backlog (one agency failed all through
   the load), by count of answers and of outbox rows, never after a sleep; each time it restarts on
   the same data. Once the outbox has drained: every message (each authorised share entry) is in its
   recipient's store once, as sent, with its authorised share entry and a delivered push entry; no
   store holds a message the policy did not allow to it; ``gateway audit verify`` passes. A delivery
   may be attempted more than once (at least once: a kill between push and commit), never stored twice.
2. One recipient's system down for a while (its process killed, later started again on its store): its
   rows wait and are retried, its circuit opens; once it is back everything is delivered and, the
   outage being shorter than the attempts budget, nothing is dead-lettered.
3. A recipient that stores a message and then answers too late: the gateway times out, tries again,
   the recipient keeps the message once, the outbox ends delivered.

The suite runs a short version; ``make soak-delivery`` the long one (``NOTHING_LOST_SHARES``,
``NOTHING_LOST_KILLS``, ``NOTHING_LOST_DATABASES``), printing its figures.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e._fleet import (
    SENDERS,
    Agencies,
    Fleet,
    Load,
    Share,
    check_nothing_lost,
    iterate_kills,
    join,
    prepare,
    run_threads,
    wait_for,
)
from tests.e2e.conftest import fresh_pg_database

SHARES = int(os.environ.get("NOTHING_LOST_SHARES", "150"))
KILLS = int(os.environ.get("NOTHING_LOST_KILLS", "2"))
DATABASES = os.environ.get("NOTHING_LOST_DATABASES", "sqlite").split(",")
THREADS = 6


@pytest.fixture(scope="module")
def agencies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agencies]:
    """The five agency systems, started once for the module (each test's gateway on the same port)."""
    fleet = Agencies(tmp_path_factory.mktemp("agencies"))
    fleet.spawn()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def fleet(request: pytest.FixtureRequest, tmp_path: Path, agencies: Agencies) -> Iterator[Fleet]:
    """A fresh gateway (SQLite, or with ``postgresql`` as the parameter a fresh database) and the agencies."""
    with contextlib.ExitStack() as stack:
        if getattr(request, "param", "sqlite") == "postgresql":
            url, _admin, _name = stack.enter_context(fresh_pg_database("vd_lost"))
        else:
            url = f"sqlite:///{tmp_path / 'gateway.db'}"
        f = Fleet(tmp_path, url, agencies)
        stack.callback(f.stop)
        yield f


def _restart(fleet: Fleet, load: Load | None = None) -> None:
    """SIGKILL the gateway and start it again on the same data; load threads wait meanwhile."""
    if load is not None:
        load.up.clear()
    fleet.kill_gateway()
    fleet.start_gateway()
    if load is not None:
        load.up.set()


def _share_status(fleet: Fleet, tokens: dict[str, str], share: Share) -> dict[str, dict[str, Any]]:
    """``GET /v1/shares/{shareId}`` as its sender: recipient -> its delivery status."""
    assert share.answer is not None
    r = httpx.get(
        f"{fleet.base}/v1/shares/{share.answer['shareId']}",
        headers={"Authorization": f"Bearer {tokens[share.sender]}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return {x["recipient"]: x for x in r.json()["recipients"]}


def _pending_at_most(fleet: Fleet, left: int) -> bool:
    return fleet.outbox()["pending"] <= left


@pytest.mark.parametrize("fleet", DATABASES, indirect=True)
def test_sigkill_while_delivering_loses_nothing(fleet: Fleet) -> None:
    fleet.start()
    tokens = {a: fleet.token(a) for a in SENDERS}
    plans = prepare(fleet, tokens)["mixed"]
    drain_kills = max(1, KILLS // 3)
    om = fleet.agencies["om"]
    # om refuses every delivery during the load: its rows pile up for the deliverer to drain later.
    om.behave(fail=-1)

    load = Load(fleet.base, tokens, plans, SHARES)
    workers = run_threads(load, THREADS)
    kills = 0
    for at in iterate_kills(SHARES, KILLS - drain_kills):
        wait_for(f"{at} answers", functools.partial(load.answered_at_least, at), guard=120)
        _restart(fleet, load)
        kills += 1
    join(workers)

    # Now om takes deliveries again, a little slowly, and the gateway is killed while it drains.
    backlog = fleet.outbox()["pending"]
    assert backlog >= 10, f"no backlog to drain: {fleet.outbox()}"
    om.behave(fail=0, slow=0.02)
    for i in range(drain_kills):
        left = backlog * (drain_kills - i) // (drain_kills + 1)
        wait_for(f"the backlog down to {left}", functools.partial(_pending_at_most, fleet, left), 120)
        _restart(fleet)
        kills += 1
    om.behave(slow=0)
    statuses = fleet.drained()
    assert statuses == Counter(delivered=sum(statuses.values())), statuses

    figures = check_nothing_lost(fleet, load.shares)
    figures.kills = kills
    print(f"\nnothing lost ({fleet.database_url.split(':')[0]}): {figures.line()}")
    assert figures.answered_200 >= SHARES // 2, figures.line()
    assert figures.refused > 0, "no share was refused: the run shows nothing about refused recipients"
    assert figures.attempts["push_failed"] > 0, "om's failures were not attempts"


def test_a_recipient_down_and_one_answering_late_lose_nothing(fleet: Fleet) -> None:
    """Items 2 and 3 on one gateway, one after the other (a gateway start less in the suite), with the
    default attempts budget (10): the outage must end before it is spent, and the open circuit saves it.
    Its cool-down (1.5 s) is longer than the others': one trial push per cool-down while om is down."""
    fleet.extra_env["GATEWAY_DELIVERY_MAX_ATTEMPTS"] = "10"
    fleet.extra_env["GATEWAY_DELIVERY_BREAKER_COOLDOWN"] = "1.5"
    fleet.start()
    tokens = {a: fleet.token(a) for a in SENDERS}
    plans = prepare(fleet, tokens)

    # 2. om's system is down (its process killed) while 30 shares to it are made.
    om = fleet.agencies["om"]
    om.kill()
    down = Load(fleet.base, tokens, plans["om"], 30)
    join(run_threads(down, 3))
    assert all(s.status == 200 for s in down.shares), [s.status for s in down.shares]

    # Its rows wait and are tried again; its circuit opens, so most wait untried meanwhile.
    wait_for("a retry of an om row", lambda: max(attempts for _, attempts in fleet.outbox_of("om")) >= 2)
    assert "circuit to om opened" in fleet.output()
    waiting = fleet.outbox_of("om")
    assert len(waiting) == 30 and {status for status, _ in waiting} == {"pending"}, waiting
    tried = sum(attempts for _, attempts in waiting)
    assert tried < len(waiting), (
        f"{tried} attempts at {len(waiting)} rows: the open circuit did not hold them"
    )

    # The sender sees its share wait for om (and delivered to the others).
    first = down.shares[0]
    assert first.answer is not None
    seen = _share_status(fleet, tokens, first)
    assert seen["om"]["status"] == "pending" and seen["om"]["lastError"] == "unavailable", seen
    assert seen["om"]["attempts"] >= 1 and seen["reclassering"]["status"] == "delivered", seen

    om.spawn()
    om.wait_up()
    statuses = fleet.drained()
    assert statuses == Counter(delivered=sum(statuses.values())), f"dead letters: {statuses}"
    assert max(attempts for _, attempts in fleet.outbox_of("om")) < 10
    assert _share_status(fleet, tokens, first)["om"]["status"] == "delivered"
    figures = check_nothing_lost(fleet, down.shares)
    failed = [e for e in fleet.read().of("delivery", "push") if e["outcome"] == "push_failed"]
    assert {(e["counterpart"], e["refs"]["error"]) for e in failed} == {("om", "unavailable")}, failed[:3]
    print(f"\nrecipient down: {figures.line()}; attempts while it was down {tried}")

    # 3. rvdk stores the next 4 new messages, then holds each answer past the gateway's 1 s timeout.
    rvdk = fleet.agencies["rvdk"]
    rvdk.behave(timeoutAfterStore=4, hang=3)
    late = Load(fleet.base, tokens, plans["rvdk"], 12)
    join(run_threads(late, 4))
    assert all(s.status == 200 for s in late.shares), [s.status for s in late.shares]
    statuses = fleet.drained()
    assert statuses == Counter(delivered=sum(statuses.values())), statuses

    figures = check_nothing_lost(fleet, [*down.shares, *late.shares])
    stored = fleet.read()
    timed_out = {
        e["refs"]["messageId"]
        for e in stored.of("delivery", "push")
        if e["outcome"] == "push_failed" and e["refs"].get("error") == "timeout"
    }
    assert len(timed_out) == 4 and {stored.messages[m] for m in timed_out} == {"rvdk"}, timed_out
    times = {m: t for m, _, t in rvdk.stored()}
    # Stored by the first attempt, delivered again by a retry (at least), kept once.
    assert all(times[m] >= 2 for m in timed_out), {m: times[m] for m in timed_out}
    assert all(stored.outbox[m][2] >= 2 for m in timed_out), "a timed-out push was not retried"
    print(f"\nrecipient late, after both: {figures.line()}")
