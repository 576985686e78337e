"""Three ``gateway serve`` replicas on one PostgreSQL database, one SIGKILLed under load (issue 12 item 2).

Three real processes share a data directory (the keys: token, checkpoint, sealing) and a fresh
PostgreSQL database. Threads send shares round-robin through all three (allowed, refused and mixed, one
to three recipients, in several cases and steps: the plans of tests/e2e/test_crash_consistency.py). Once
replica 3 has answered `KILL_AFTER` shares it is SIGKILLed, by count and not after a sleep; the load goes
on through the other two until `EXCHANGES` shares have been answered in all (``REPLICAS_EXCHANGES`` raises
it; ``make soak-replicas``), and they are stopped. Then, on the database as it was left:

- one log: ``audit.verify_log`` recomputes every leaf and node and checks every stored checkpoint,
  whichever replica signed it, against the recomputed root at its size, so they are mutually consistent;
  and a consistency proof from each checkpoint's size to the next verifies between their roots;
- every entry has an inclusion proof that verifies against the final root;
- every share is all or nothing, as after a single process's crash (`_check` of that test);
- a client assertion spent at one replica is refused at another (the replay cache is in the database).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import sqlalchemy as sa

from audit import leaf_hash, root_hash, verify_consistency, verify_inclusion, verify_log
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.db import make_engine, make_sessionmaker
from gateway.runtime import open_audit_log
from gateway.settings import Settings
from tests.e2e.conftest import ASSERTION_TYPE, fresh_pg_database
from tests.e2e.test_crash_consistency import (
    CALL_GUARD,
    Load,
    Process,
    _check,
    _env,
    _prepare,
    _read,
    _register,
)

EXCHANGES = int(os.environ.get("REPLICAS_EXCHANGES", "600"))
"""Shares answered through all three replicas together before the load stops."""
KILL_AFTER = 60
"""Shares replica 3 answers before it is SIGKILLed."""
THREADS_PER_REPLICA = 3
FRONT = "http://127.0.0.1:8443"
"""The load balancer's URL every replica is configured with (``GATEWAY_PUBLIC_URL``): the issuer of
the tokens and the audience of the client assertions, whichever replica takes the call. Nothing listens
there: the test calls the replicas directly."""
LOAD_GUARD = 600.0
"""A hang guard for the whole load, not a measurement."""


def wait_until(condition: object, what: str, guard: float = LOAD_GUARD) -> None:
    deadline = time.monotonic() + guard
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"hang guard: {what}"
        time.sleep(0.05)


def assertion_form(
    agency: str, key: bytes, client_id: str | None = None, front: str = FRONT
) -> dict[str, str]:
    """A token request with a fresh client assertion addressed to ``front`` (any replica takes it), by
    ``client_id`` (default: the agency's system, ``<agency>-system``)."""
    client = client_id or f"{agency}-system"
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": make_client_assertion(client, key, f"{front}/oauth2/token"),
    }


def token(base: str, agency: str, key: bytes, client_id: str | None = None, front: str = FRONT) -> str:
    """An access token from the replica at ``base`` (for ``client_id`` and ``front``, as `assertion_form`)."""
    form = assertion_form(agency, key, client_id, front)
    r = httpx.post(f"{base}/oauth2/token", data=form, timeout=CALL_GUARD)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _register_auditor(url: str) -> bytes:
    """A privacy officer's client (``auditor-system``) that asks the replicas for checkpoints."""
    engine = make_engine(url)
    try:
        private_pem, public_pem = generate_keypair("Ed25519")
        ClientRegistry(make_sessionmaker(engine)).register(
            "auditor-system", "veilig_thuis", "auditor", public_pem
        )
        return private_pem
    finally:
        engine.dispose()


def _ask_checkpoints(
    replicas: list[Process], token: str, stop: threading.Event, served: list[tuple[int, str]]
) -> None:
    """Until ``stop``: each live replica in turn signs a checkpoint of what it has committed."""
    with httpx.Client(timeout=CALL_GUARD, headers={"Authorization": f"Bearer {token}"}) as http:
        while not stop.is_set():
            for i, replica in enumerate(replicas):
                try:
                    r = http.get(f"{replica.base}/v1/audit/checkpoint")
                except httpx.TransportError:
                    continue  # the killed one
                assert r.status_code == 200, r.text
                served.append((i, r.text))
            stop.wait(0.1)  # a pace, not a condition: the assertions count sizes, not time


def test_three_replicas_one_killed_keep_one_consistent_log(tmp_path: Path) -> None:
    with fresh_pg_database("vd_replicas") as (url, _admin, _name):
        keys = _register(url)
        auditor_key = _register_auditor(url)
        env = _env(tmp_path, url) | {"GATEWAY_PUBLIC_URL": FRONT}
        replicas = [Process(tmp_path, env) for _ in range(3)]
        replicas[0].start()  # first alone: it creates the shared keys in the data directory
        for replica in replicas[1:]:
            replica.start()
        try:
            # Tokens from one replica are good at every other: one issuer (the front), one token key.
            tokens = {
                agency: token(replicas[i % 3].base, agency, key)
                for i, (agency, key) in enumerate(keys.items())
            }
            plans = _prepare(replicas[0].base, tokens)

            # The replay cache is shared: an assertion spent at replica 1 is refused at replica 2.
            form = assertion_form("politie", keys["politie"])
            first = httpx.post(f"{replicas[0].base}/oauth2/token", data=form, timeout=CALL_GUARD)
            assert first.status_code == 200, first.text
            again = httpx.post(f"{replicas[1].base}/oauth2/token", data=form, timeout=CALL_GUARD)
            assert again.status_code in (400, 401), again.text
            assert again.json()["error"] == "invalid_client", again.text
            assert "replayed" in again.json().get("error_description", ""), again.text

            loads = [Load(r.base, tokens, plans) for r in replicas]
            auditor = token(replicas[2].base, "auditor", auditor_key)
            stop = threading.Event()
            served: list[tuple[int, str]] = []
            with ThreadPoolExecutor(3 * THREADS_PER_REPLICA + 1) as pool:
                running = [pool.submit(load.run) for load in loads for _ in range(THREADS_PER_REPLICA)]
                checkpoints = pool.submit(_ask_checkpoints, replicas, auditor, stop, served)
                wait_until(lambda: loads[2].answered >= KILL_AFTER, "replica 3 answering")
                replicas[2].kill()
                wait_until(lambda: sum(load.answered for load in loads) >= EXCHANGES, "the load's count")
                stop.set()
                checkpoints.result(CALL_GUARD)
                for replica in replicas[:2]:
                    replica.kill()
                for r in running:
                    r.result(CALL_GUARD)
        finally:
            for replica in replicas:
                replica.stop()
        shares = [s for load in loads for s in load.shares]

        engine = make_engine(url)
        try:
            store = open_audit_log(Settings(data_dir=tmp_path, database_url=url), engine)
            result = verify_log(store, store.verifier_keys())
            assert result.ok, result.reason
            with engine.connect() as c:
                sizes = sorted(
                    {
                        int(s)
                        for s in c.execute(
                            sa.text("SELECT DISTINCT tree_size FROM audit_checkpoints")
                        ).scalars()
                    }
                )
                roots = {
                    int(size): bytes(root)
                    for size, root in c.execute(sa.text("SELECT tree_size, root_hash FROM audit_checkpoints"))
                }
                leaves = [
                    bytes(b)
                    for b in c.execute(sa.text("SELECT leaf_data FROM audit_entries ORDER BY idx")).scalars()
                ]
            final = len(leaves)
            # Checkpoints were served (and stored) by each replica, at sizes the load kept growing.
            assert {i for i, _note in served} == {0, 1, 2}, served
            assert result.checkpoints >= 3 and len(sizes) >= 3, (result, sizes)
            for small, big in itertools.pairwise(sizes):
                assert verify_consistency(
                    small, big, store.consistency_proof(small, big), roots[small], roots[big]
                )
            root = root_hash([leaf_hash(leaf) for leaf in leaves])  # from the leaf bytes alone
            assert store.root(final) == root
            for index, leaf in enumerate(leaves):
                assert verify_inclusion(
                    leaf_hash(leaf), index, final, store.inclusion_proof(index, final), root
                )
        finally:
            engine.dispose()

        ends = _check(_read(tmp_path, url), shares)
        print(
            f"three replicas: {dict(ends)}; {final} entries, "
            f"{len(sizes)} checkpoint sizes, {len(served)} served"
        )
        assert ends["answered 200"] >= EXCHANGES - KILL_AFTER, ends
