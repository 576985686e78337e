"""Shared state across three ``gateway serve`` replicas (issue 12 item 2): rate limits, policy, outbox.

One module-scoped set of three real processes on one fresh PostgreSQL database and one data directory
(the shared keys), with ``GATEWAY_PUBLIC_URL`` the same for all, as in tests/e2e/test_replicas.py; the
five agency systems are ``gateway sim-agency`` processes (tests/e2e/_fleet.py). Each replica has its
own copy of policies/ (so a replica can only learn of a reload elsewhere through the database), and
reaches Redis through a relay in this process that the test can cut. The front (``GATEWAY_PUBLIC_URL``,
where the agencies find the JWKS that verifies the pushes) is a relay to replica 1. The tests run in
this order on the same replicas; the outbox's, which kills replica 3, comes last.

1. **Rate limits in Redis** (``GATEWAY_RATE_LIMIT_STORAGE``): one client's calls, concurrently at all
   three, are admitted exactly ``BUDGET`` times in all; the rest are 429 problem+json with
   ``Retry-After``; another client's budget is untouched. The budget is ``BUDGET`` an hour with a burst
   of ``BUDGET`` (a moving window of an hour): no call leaves the window during the test, so the counts
   are exact however slow the machine is, and nothing is timed. Every client id here is unique to the
   run, and the storage keys are made of them: parallel runs on the same Redis never share a counter.
2. **Redis unreachable**: the limiter fails closed (DESIGN.md section 7: any dependency down is a 503
   with ``Retry-After``, never a 500, and never an unlimited gateway): every replica answers 503
   problem+json on an authenticated route and at the token endpoint, ``/readyz`` names the rate limits;
   once Redis is back every replica admits calls again, and the exhausted budget is still exhausted
   (the counts live in Redis, not in the replicas).
3. **The policy revision** (``GATEWAY_POLICY_FOLLOW``): a reload through replica 1's API of a revision
   that refuses what the old one allowed; the other two switch to it (polled on their
   ``GET /v1/policies``, bounded by a hang guard), and the same share is refused at every replica, its
   answer and audit entries naming the new revision.
4. **The outbox** (PostgreSQL, claims with a lease): with om's system failing, shares through all three
   pile up om rows; once om is back the three deliverers drain them together; then, while replica 3
   pushes (slowly) the rows its own shares were born claimed with, it is frozen (SIGSTOP, so the rows it
   holds can be read from the database without a race) and SIGKILLed; the other two take those rows
   over when the lease runs out. Then every message is in its recipient's store exactly once, every
   message has exactly one delivered push and no attempt number twice (no two replicas held a row at
   once), and ``gateway audit verify`` passes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import threading
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

from gateway.auth import ClientRegistry, generate_keypair
from gateway.db import make_engine, make_sessionmaker
from gateway.migrations import upgrade
from gateway.policy import policy_revision, read_policy
from gateway.policy._rowtests import row_tests
from gateway.settings import REPO_ROOT
from tests.e2e._fleet import (
    SENDERS,
    Agencies,
    Fleet,
    Load,
    check_nothing_lost,
    join,
    prepare,
    run_threads,
    wait_for,
)
from tests.e2e.conftest import BSN_KIND, BSN_SLACHTOFFER, fresh_pg_database
from tests.e2e.test_crash_consistency import CALL_GUARD, Process
from tests.e2e.test_replicas import assertion_form, token

RUN = uuid.uuid4().hex[:10]
"""In every client id: the rate limits' Redis keys are made of client ids, so no other run shares one."""
BUDGET = 100
"""Calls per client an hour, all at once if it likes (burst = rate): a window no test outlives."""
REDIS = ("127.0.0.1", 6379)
GUARD = 120.0
"""Hang guard for a wait on the replicas (a bound, not a measurement)."""

RATE_LIMITED = "https://veilig-delen.example/problems/rate-limited"
UNAVAILABLE = "https://veilig-delen.example/problems/rate-limiter-unavailable"
FACTS = Path("veiligdelen") / "facts" / "data.json"
ROW_TESTS = Path("veiligdelen") / "decision" / "rows_test.rego"


class Relay:
    """A TCP relay to ``target``, a link the test can cut and mend.

    To Redis it is the replicas' only way there: cut, it closes every relayed connection and closes each
    new one at once, as a Redis that went away looks to its clients; mended, it relays again (stopping
    the shared Redis is not an option: other tests and helpers use it). To replica 1 it is the front
    (``GATEWAY_PUBLIC_URL``), where the agencies read the gateway's metadata and JWKS.
    """

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="redis-relay", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            if not self._up.is_set():
                client.close()
                continue
            try:
                assert self.target is not None, "a relay to nowhere"
                upstream = socket.create_connection(self.target, timeout=CALL_GUARD)
            except (OSError, AssertionError):
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._open.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv on it
        s.close()

    def cut(self) -> None:
        """Redis is unreachable from now on: open connections drop, new ones are closed at once."""
        self._up.clear()
        with self._lock:
            held = list(self._open)
        for s in held:
            self._close(s)

    def mend(self) -> None:
        """Redis is reachable again (for new connections)."""
        self._up.set()

    def close(self) -> None:
        self.cut()
        self._server.close()


@dataclass
class Cluster:
    """Three replicas, the agencies they push to, the Redis relay and the registered clients' keys."""

    fleet: Fleet
    replicas: list[Process]
    relay: Relay  # to Redis
    front: str  # GATEWAY_PUBLIC_URL: a relay to replica 1
    policy_dirs: list[Path]
    keys: dict[str, tuple[str, bytes]]  # client id -> (agency, private key)
    tokens: dict[str, str] = field(default_factory=dict)  # (client id) -> access token

    def client(self, name: str) -> str:
        """The run's client id for ``name`` (``politie``, ``rl-a``, ...)."""
        return f"{name}-{RUN}"

    def token(self, name: str, at: int = 0) -> str:
        """A token for ``name``'s client from replica ``at`` (good at every replica); cached."""
        client_id = self.client(name)
        if client_id not in self.tokens:
            agency, key = self.keys[client_id]
            self.tokens[client_id] = token(self.replicas[at].base, agency, key, client_id, self.front)
        return self.tokens[client_id]

    def sender_tokens(self) -> dict[str, str]:
        """``agency -> token`` of the two senders' systems, as `Load` and `prepare` take them."""
        return {agency: self.token(agency) for agency in SENDERS}

    def output(self) -> str:
        return self.replicas[0].output()


CLIENTS = {
    # name: (agency, role)
    "politie": ("politie", "agency_system"),
    "veilig_thuis": ("veilig_thuis", "agency_system"),
    "rl-a": ("politie", "agency_system"),
    "rl-b": ("politie", "agency_system"),
    "rl-c": ("politie", "agency_system"),
    **{f"author-{i}": ("veilig_thuis", "policy_author") for i in range(3)},
}


def _register(url: str) -> dict[str, tuple[str, bytes]]:
    engine = make_engine(url)
    try:
        upgrade(engine)
        registry = ClientRegistry(make_sessionmaker(engine))
        keys = {}
        for name, (agency, role) in CLIENTS.items():
            private_pem, public_pem = generate_keypair("Ed25519")
            registry.register(f"{name}-{RUN}", agency, role, public_pem)
            keys[f"{name}-{RUN}"] = (agency, private_pem)
        return keys
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas-shared")
    relay, front = Relay(REDIS), Relay()
    with contextlib.ExitStack() as stack:
        stack.callback(relay.close)
        stack.callback(front.close)
        url, _admin, _name = stack.enter_context(fresh_pg_database("vd_shared"))
        keys = _register(url)
        agencies = Agencies(root)
        stack.callback(agencies.stop)
        fleet = Fleet(root, url, agencies)  # its env, connector file and database reads; not its gateway
        stack.callback(fleet.stop)
        fleet.extra_env |= {
            "GATEWAY_PUBLIC_URL": f"http://{front.address}",
            "GATEWAY_RATE_LIMIT": f"{BUDGET}/hour",
            "GATEWAY_RATE_BURST": str(BUDGET),
            "GATEWAY_RATE_LIMIT_STORAGE": f"redis://{relay.address}/0",
            # Not what is tested here; and their keys are per address, shared with any other run.
            "GATEWAY_AUTH_FAILURES_PER_CLIENT": "100000/minute",
            "GATEWAY_AUTH_FAILURES_PER_ADDRESS": "100000/minute",
            "GATEWAY_POLICY_FOLLOW": "true",
            "GATEWAY_POLICY_FOLLOW_INTERVAL": "0.3",
            # A lease well past the slowest push here (the connector's 1 s timeout), short enough that
            # a killed replica's rows are taken over within seconds.
            "GATEWAY_DELIVERY_LEASE": "4",
        }
        policy_dirs = []
        replicas = []
        for i in range(3):
            policy_dir = root / f"policies-{i}"
            shutil.copytree(REPO_ROOT / "policies", policy_dir)
            policy_dirs.append(policy_dir)
            env = fleet.env() | {"GATEWAY_POLICY_DIR": str(policy_dir)}
            replicas.append(Process(fleet.data_dir, env))
        for replica in replicas:
            stack.callback(replica.stop)
        replicas[0].start()  # first alone: it creates the shared keys in the data directory
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(r.start) for r in replicas[1:]]:
                started.result()
        # The front leads to replica 1 (never killed here); the agencies read the JWKS through it (the
        # key is shared), and the fleet's own calls (its ``base``) go to replica 1.
        port = int(replicas[0].base.rsplit(":", 1)[1])
        front.target = ("127.0.0.1", port)
        agencies.gateway_port = port
        for agency in agencies.values():
            agency.gateway_url = f"http://{front.address}"
        agencies.reset()
        fleet.baseline = {a.name: set() for a in agencies.values()}
        yield Cluster(fleet, replicas, relay, f"http://{front.address}", policy_dirs, keys)


def _calls(base: str, bearer: str, n: int) -> list[httpx.Response]:
    """``n`` calls of ``GET /v1/inbox`` at ``base`` (an authenticated route that changes nothing)."""
    with httpx.Client(base_url=base, timeout=CALL_GUARD) as http:
        return [
            http.get("/v1/inbox", params={"limit": 1}, headers={"Authorization": f"Bearer {bearer}"})
            for _ in range(n)
        ]


def _metric(base: str, sample: str) -> int:
    """The value of one ``/metrics`` sample of the replica at ``base`` (0 while it has none)."""
    text = httpx.get(f"{base}/metrics", timeout=CALL_GUARD).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return int(float(line.split()[-1]))
    return 0


def _ready(base: str) -> bool:
    return httpx.get(f"{base}/readyz", timeout=CALL_GUARD).status_code == 200


def _assert_rate_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert re.fullmatch(r"[0-9]+", r.headers["retry-after"]), r.headers
    # The oldest admitted call leaves the hour's window within the hour.
    assert 1 <= int(r.headers["retry-after"]) <= 3600, r.headers["retry-after"]
    assert r.json()["type"] == RATE_LIMITED and r.json()["status"] == 429, r.text


# --- 1. rate limits -------------------------------------------------------------------------------------


def test_one_clients_budget_is_one_across_three_replicas(cluster: Cluster) -> None:
    a, b = cluster.token("rl-a"), cluster.token("rl-b")
    bases = [r.base for r in cluster.replicas]
    per_replica = 80  # 240 calls for a budget of 100, all three replicas at once
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda base: _calls(base, a, per_replica), bases))
    statuses = [Counter(r.status_code for r in replica) for replica in answers]
    assert sum(s[200] for s in statuses) == BUDGET, statuses
    assert sum(s[429] for s in statuses) == 3 * per_replica - BUDGET, statuses
    for r in (r for replica in answers for r in replica if r.status_code != 200):
        _assert_rate_limited(r)
    # Now every replica refuses the client: the count is one, not one per replica.
    for base in bases:
        _assert_rate_limited(_calls(base, a, 1)[0])

    # Another client's budget is untouched, and it too is one across the replicas.
    with ThreadPoolExecutor(3) as pool:
        other = [r for replica in pool.map(lambda base: _calls(base, b, BUDGET // 4), bases) for r in replica]
    rest = _calls(bases[0], b, BUDGET - len(other))
    assert Counter(r.status_code for r in [*other, *rest]) == Counter({200: BUDGET})
    for base in bases:
        _assert_rate_limited(_calls(base, b, 1)[0])
    # And each replica counted its own refusals of the two (its /metrics), together all of them.
    refused = sum(_metric(base, 'gateway_rate_limited_total{limit="client"}') for base in bases)
    assert refused == 3 * per_replica - BUDGET + 3 + 3, refused


def test_an_unreachable_redis_fails_closed_at_every_replica_until_it_is_back(cluster: Cluster) -> None:
    c, exhausted = cluster.token("rl-c"), cluster.token("rl-a")
    agency, key = cluster.keys[cluster.client("rl-c")]
    cluster.relay.cut()
    try:
        for replica in cluster.replicas:
            r = _calls(replica.base, c, 1)[0]
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["type"] == UNAVAILABLE, r.text
            assert int(r.headers["retry-after"]) >= 1
            # The token endpoint consults the limiter before it verifies anything: it cannot issue.
            form_token = httpx.post(
                f"{replica.base}/oauth2/token",
                data=assertion_form(agency, key, cluster.client("rl-c"), cluster.front),
                timeout=CALL_GUARD,
            )
            assert form_token.status_code == 503, form_token.text
            assert form_token.json()["type"] == UNAVAILABLE
            ready = httpx.get(f"{replica.base}/readyz", timeout=CALL_GUARD)
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["rateLimits"] == "storage unreachable", ready.text
            assert int(ready.headers["retry-after"]) >= 1
    finally:
        cluster.relay.mend()
    for replica in cluster.replicas:
        wait_for(
            f"{replica.base} ready again",
            functools.partial(_ready, replica.base),
            GUARD,
        )
        assert _calls(replica.base, c, 1)[0].status_code == 200
        # The outage reset nothing: the budget spent before it is still spent.
        _assert_rate_limited(_calls(replica.base, exhausted, 1)[0])


# --- 3. the policy revision -------------------------------------------------------------------------------


def _restrict(policy_dir: Path) -> str:
    """The author's change: veilig_thuis may no longer give politie its veiligheidsbeoordeling to restore
    safety; the row tests regenerated as ``gateway policy row-tests`` does. The new revision."""
    path = policy_dir / FACTS
    facts = json.loads(path.read_text(encoding="utf-8"))
    facts["grants"]["veiligheidsbeoordeling"]["politie"]["veilig_thuis"]["purposes"].remove(
        "veiligheid_herstellen"
    )
    path.write_text(json.dumps(facts, ensure_ascii=False, indent=2), encoding="utf-8")
    (policy_dir / ROW_TESTS).write_text(row_tests(read_policy(policy_dir).facts), encoding="utf-8")
    return policy_revision(policy_dir)


def _serves(base: str, bearer: str, revision: str) -> bool:
    return bool(_served(base, bearer)["revision"] == revision)


def _served(base: str, bearer: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/v1/policies", headers={"Authorization": f"Bearer {bearer}"}, timeout=CALL_GUARD)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _entries_of(cluster: Cluster, traces: set[str]) -> dict[str, list[dict[str, Any]]]:
    """trace id -> the audit entries of that request, read from the database."""
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in cluster.fleet.read().entries:
        if entry.get("traceId") in traces:
            out.setdefault(entry["traceId"], []).append(entry)
    return out


def test_a_reload_at_one_replica_moves_all_three_to_its_revision(cluster: Cluster) -> None:
    tokens = cluster.sender_tokens()
    authors = [cluster.token(f"author-{i}") for i in range(3)]
    subjects = [{"role": "slachtoffer", "bsn": BSN_SLACHTOFFER}, {"role": "kind", "bsn": BSN_KIND}]
    r = httpx.post(
        f"{cluster.replicas[0].base}/v1/cases",
        json={"flow": "acuut", "subjects": subjects},
        headers={"Authorization": f"Bearer {tokens['politie']}"},
        timeout=CALL_GUARD,
    )
    assert r.status_code == 201, r.text
    case_id = r.json()["caseId"]

    def share(at: int) -> tuple[str, dict[str, Any]]:
        """veilig_thuis's assessment to politie, to restore safety, through replica ``at``."""
        trace = uuid.uuid4().hex
        r = httpx.post(
            f"{cluster.replicas[at].base}/v1/cases/{case_id}/shares",
            json={
                "informationType": "veiligheidsbeoordeling",
                "purpose": "veiligheid_herstellen",
                "recipients": ["politie"],
                "payload": {"conclusie": f"replica {at}"},
            },
            headers={
                "Authorization": f"Bearer {tokens['veilig_thuis']}",
                "traceparent": f"00-{trace}-{uuid.uuid4().hex[:16]}-01",
            },
            timeout=CALL_GUARD,
        )
        assert r.status_code == 200, r.text
        return trace, dict(r.json())

    old = _served(cluster.replicas[0].base, authors[0])["revision"]
    assert {_served(r.base, authors[i])["revision"] for i, r in enumerate(cluster.replicas)} == {old}
    before = [share(i) for i in range(3)]
    for _trace, answer in before:
        assert answer["policyRevision"] == old and answer["results"][0]["allowed"] is True, answer

    # Only replica 1's copy of the policies changes: the others can learn of it only from the database.
    new = _restrict(cluster.policy_dirs[0])
    assert new != old
    r = httpx.post(
        f"{cluster.replicas[0].base}/v1/policies/reload",
        headers={"Authorization": f"Bearer {authors[0]}"},
        timeout=GUARD,  # it compiles and runs the policy tests first
    )
    assert r.status_code == 200, r.text
    assert (r.json()["revision"], r.json()["previousRevision"]) == (new, old), r.text
    for i, replica in enumerate(cluster.replicas[1:], start=1):
        assert policy_revision(cluster.policy_dirs[i]) == old  # their files did not change
        wait_for(
            f"replica {i + 1} to serve {new}",
            functools.partial(_serves, replica.base, authors[i], new),
            GUARD,
            every=0.2,  # each poll is a call against the author's budget
        )
    for i, replica in enumerate(cluster.replicas):
        listed = {x["revision"]: x for x in _served(replica.base, authors[i])["revisions"]}
        assert listed[new]["active"] is True and listed[old]["active"] is False, listed

    after = [share(i) for i in range(3)]
    for _trace, answer in after:
        result = answer["results"][0]
        assert answer["policyRevision"] == new and result["allowed"] is False, answer
        assert [x["code"] for x in result["reasons"]] == ["purpose_not_allowed"], result

    # Each replica's audit entries name the revision that decided: the old one before, the new after.
    entries = _entries_of(cluster, {t for t, _ in [*before, *after]})
    for (trace, _), expected, outcome in [
        *((b, old, "authorised") for b in before),
        *((a, new, "refused") for a in after),
    ]:
        shares = [e for e in entries[trace] if e["action"] == "share"]
        assert len(shares) == 1, entries[trace]
        assert shares[0]["outcome"] == outcome, shares[0]
        assert shares[0]["decision"]["policyRevision"] == expected, shares[0]


# --- 4. the outbox ----------------------------------------------------------------------------------------


def _delivered_by(cluster: Cluster) -> list[int]:
    """Each replica's count of delivered pushes (its own ``/metrics``)."""
    return [_metric(r.base, 'gateway_delivery_attempts_total{outcome="delivered"}') for r in cluster.replicas]


def _held_by_the_frozen(cluster: Cluster, recipient: str) -> set[str]:
    """Rows to ``recipient`` claimed and never attempted: born claimed by a share's own request, whose
    first push has not committed. Only replica 3 takes shares in this phase, and ``recipient``'s circuit
    never opened (a deliverer claims an unattempted row only when its circuit was open at the share)."""
    with cluster.fleet._engine().connect() as c:
        rows = c.execute(
            sa.text(
                "SELECT message_id FROM outbox WHERE recipient = :r AND status = 'pending' "
                "AND attempts = 0 AND claimed_until IS NOT NULL"
            ),
            {"r": recipient},
        ).scalars()
        return {str(m) for m in rows}


def test_three_replicas_drain_one_outbox_and_take_over_a_killed_ones_claims(cluster: Cluster) -> None:
    fleet, replicas = cluster.fleet, cluster.replicas
    tokens = cluster.sender_tokens()
    plans = prepare(fleet, tokens)  # through replica 1 (the fleet's base)
    om, rvdk = fleet.agencies["om"], fleet.agencies["rvdk"]

    # A: om's system refuses every delivery while shares go through all three: its rows pile up.
    om.behave(fail=-1)
    loads = [Load(r.base, tokens, plans["mixed"] + plans["om"] * 2, 10) for r in replicas]
    join([w for load in loads for w in run_threads(load, 2)])
    backlog = fleet.outbox()["pending"]
    assert backlog >= 6, fleet.outbox()

    # B: om takes deliveries again, slowly; the three deliverers drain its rows together.
    before = _delivered_by(cluster)
    om.behave(fail=0, slow=0.2)
    assert fleet.drained(GUARD)["pending"] == 0
    om.behave(slow=0)
    drained = [after - b for after, b in zip(_delivered_by(cluster), before, strict=True)]
    # No share was made meanwhile: these are the deliverers' own pushes, the backlog's.
    assert sum(drained) == backlog, (drained, backlog)
    # How the backlog split between the deliverers is the scheduler's business (a starved replica may
    # take none): what must hold is the sum above and, in D, that no row was pushed by two at once.
    print(f"backlog of {backlog} drained by the three replicas as {drained}")

    # C: shares to rvdk (whose circuit never opened) through replica 3 only, rvdk slow to answer, so
    # rows born claimed by replica 3 wait on its push. Freeze it, read which rows it holds, kill it.
    rvdk.behave(slow=0.5)
    third = Load(replicas[2].base, tokens, plans["rvdk"], 40)
    workers = run_threads(third, 2)
    held: set[str] = set()

    def frozen_holding() -> bool:
        nonlocal held
        if not third.answered_at_least(2):
            return False
        assert replicas[2].popen is not None
        os.killpg(replicas[2].popen.pid, signal.SIGSTOP)
        held = _held_by_the_frozen(cluster, "rvdk")
        if not held:
            os.killpg(replicas[2].popen.pid, signal.SIGCONT)
        return bool(held)

    wait_for("replica 3 frozen while it holds rows", frozen_holding, GUARD, every=0.1)
    with third.lock:
        third.total = len(third.shares)  # its threads stop once their calls to the dead replica fail
    replicas[2].kill()
    rvdk.behave(slow=0)
    join(workers)
    assert fleet.drained(GUARD)["pending"] == 0

    stored = fleet.read()
    assert {stored.outbox[m][1] for m in held} == {"delivered"}, "a dead replica's row was not taken over"
    shares = [s for load in [*loads, third] for s in load.shares]
    figures = check_nothing_lost(fleet, shares)
    # No two replicas held a row at once: one delivered push per message, no attempt number twice.
    attempts: dict[str, list[str]] = {}
    delivered: Counter[str] = Counter()
    for e in stored.of("delivery", "push"):
        attempts.setdefault(e["refs"]["messageId"], []).append(e["refs"].get("attempt", "-"))
        delivered[e["refs"]["messageId"]] += e["outcome"] == "delivered"
    assert set(delivered.values()) == {1} and set(delivered) == set(stored.messages), delivered
    twice = {m: a for m, a in attempts.items() if len(a) != len(set(a))}
    assert not twice, f"an attempt logged twice (two deliverers at once): {twice}"
    # The taken-over rows were pushed by a live replica, first as attempt 1: the dead one logged none.
    assert all(attempts[m][0] == "1" for m in held), {m: attempts[m] for m in held}
    received = rvdk.received()
    again = sum(received[m] > 1 for m in held)
    print(
        f"\noutbox over three replicas: backlog {backlog} drained {drained}; replica 3 killed holding "
        f"{len(held)} rows, all taken over ({again} had reached rvdk already, kept once); {figures.line()}"
    )
