"""Throughput with three gateway replicas beside one (issue 12 item 2), in one run, taking turns.

    .venv/bin/python -m bench.replicas                      # 3 rounds of 10 s per setup, 16 connections
    .venv/bin/python -m bench.replicas --rounds 1 --duration 5 --no-save
    .venv/bin/python -m bench.replicas --rounds 0           # build the traffic of every setup, no wrk

Needs wrk (``make bench-tools``) and PostgreSQL (``--postgres``, default the tests' trust-auth server at
127.0.0.1:5432; two fresh databases are made and dropped). The setups, all running at once, each
measured in turn (baseline, SQLite, PostgreSQL x1, PostgreSQL x3, then again) so that other load on the
machine weighs on all of them:

- **baseline**: the bare FastAPI endpoint of bench.share_http (``bench._baseline_app``);
- **sqlite x1**: one ``gateway serve`` on SQLite in its data directory (the default);
- **postgresql x1**: one ``gateway serve`` on a fresh PostgreSQL database;
- **postgresql x3**: three ``gateway serve`` replicas on another fresh PostgreSQL database and one data
  directory, with one ``GATEWAY_PUBLIC_URL`` (as tests/e2e/test_replicas.py starts them).

The traffic is bench.share_http's (its ``Gateway`` and ``Bench``): per gateway setup, two agency systems
per agency with real tokens, ``--cases`` cases opened through the API and the pool of share requests
answered 200, built from the same seed so every setup gets the same requests (in its own cases). wrk
replays the pool with bench/replicas.lua (share_http.lua plus the latency histogram). For three replicas
the connections are split over them (6, 5 and 5 of 16) with one wrk per replica, run at the same time
and summed; their histograms are merged for the percentiles. Not a TCP round-robin front: on two cores a
front process would take CPU from the replicas that the one-replica setups do not pay, and a
per-connection front pins each connection to one replica just as this does.

A 5xx, a 429 or a socket error in a measured round fails the run (exit 1), and so does an audit log
that does not verify: after the run each gateway's log is checked with ``audit.verify_log`` (every leaf,
node and stored checkpoint, whichever replica signed it). CPU per request is read from /proc: the
gateway's processes, its policy workers, and the PostgreSQL backends serving its database.
Results, with the machine's description: ``bench/results/replicas-<date>.json``.

On a two-core machine three replicas compete for the same two cores as one: this is not scale. Two
things are in the three-replica figure: the second core, which one single-worker process cannot use for
its Python (the GIL), and the coordination (one log appended under one advisory lock by three
processes' smaller batches, three caches, three pools of connections). The CPU time per request shows
the coordination alone; the requests a second show the two together.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from audit import verify_log
from bench._machine import write_results
from bench.share_http import (
    ASSERTION_TYPE,
    Bench,
    Gateway,
    cache_rates,
    combine,
    cpu_seconds,
    failures,
    free_port,
    machine,
    start_baseline,
    stop,
    timing_delta,
    timings,
    wait_up,
    wrk_command,
    wrk_result,
)
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.db import make_engine, make_sessionmaker
from gateway.runtime import open_audit_log
from gateway.settings import REPO_ROOT

BENCH_DIR = Path(__file__).resolve().parent
LUA = BENCH_DIR / "replicas.lua"
PG_SERVER = os.environ.get("VEILIG_DELEN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
FRONT = "http://127.0.0.1:8443"
"""The load balancer's URL the three replicas are configured with: the issuer of their tokens and the
audience of client assertions. Nothing listens there; wrk calls the replicas directly."""
SETUPS = ("baseline", "sqlite x1", "postgresql x1", "postgresql x3")


@contextmanager
def pg_database(server: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A new, empty PostgreSQL database on ``server``: its URL and name; dropped afterwards."""
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        first = str(e.orig or e).strip().splitlines()[0]
        raise SystemExit(f"PostgreSQL at {server.split('@')[-1]} does not answer: {first}") from e
    try:
        yield f"{server}/{name}", name
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def split(connections: int, parts: int) -> list[int]:
    """``connections`` over ``parts`` wrk processes, as even as they go (16 over 3: 6, 5, 5)."""
    return [connections // parts + (i < connections % parts) for i in range(parts)]


def percentile(histogram: list[tuple[int, int]], p: float) -> int:
    """The ``p`` percentile of a latency histogram as wrk computes it (stats_percentile)."""
    total = sum(n for _, n in histogram)
    rank = math.floor(p / 100 * total + 0.5 + 0.5)  # C's round(p/100 * count + 0.5), not Python's
    seen = 0
    for value, n in sorted(histogram):
        seen += n
        if seen >= rank:
            return value
    return 0


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """wrk runs at the same time (one a replica) as one: counts summed, over the longest run's seconds,
    percentiles from the merged histograms."""
    histogram: dict[int, int] = {}
    for r in results:
        for value, n in r["histogram"]:
            histogram[value] = histogram.get(value, 0) + n
    pairs = sorted(histogram.items())
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    requests = sum(r["requests"] for r in results)
    seconds = max(r["seconds"] for r in results)
    recorded = sum(n for _, n in pairs)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "statuses": statuses,
        "allowed": sum(r["allowed"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "engineTimeouts": sum(r["engineTimeouts"] for r in results),
        "socketErrors": {k: sum(r["socketErrors"][k] for r in results) for k in results[0]["socketErrors"]},
        "latencyUs": {
            "p50": percentile(pairs, 50),
            "p90": percentile(pairs, 90),
            "p99": percentile(pairs, 99),
            "max": max(r["latencyUs"]["max"] for r in results),
            "mean": sum(v * n for v, n in pairs) / recorded if recorded else 0.0,
        },
        "perProcess": [{"requests": r["requests"], "rps": r["rps"]} for r in results],
    }


def wrk_at(urls: list[str], requests_file: Path, seconds: int, args: argparse.Namespace) -> dict[str, Any]:
    """One wrk per URL at the same time, the connections split over them; one merged result."""
    running = [
        subprocess.Popen(
            wrk_command(url, requests_file, seconds, threads=1, connections=n, script=LUA),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url, n in zip(urls, split(args.connections, len(urls)), strict=True)
    ]
    results = []
    for proc in running:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"wrk exited {proc.returncode}: {err.strip().splitlines()[-1:]}")
        result = wrk_result(out)
        line = next(x for x in out.splitlines() if x.startswith("WRK-HISTOGRAM "))
        result["histogram"] = [tuple(pair) for pair in json.loads(line.removeprefix("WRK-HISTOGRAM "))]
        results.append(result)
    return merge(results)


class PgBackends:
    """CPU seconds of the PostgreSQL backends serving one database (from pg_stat_activity and /proc,
    so only where the server runs on this machine)."""

    def __init__(self, server: str, database: str) -> None:
        self.engine = sa.create_engine(f"{server}/postgres", poolclass=sa.pool.NullPool)
        self.database = database

    def snapshot(self) -> dict[int, float]:
        with self.engine.connect() as c:
            pids = c.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": self.database}
            ).scalars()
            found = {}
            for pid in pids:
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2 :].split()
                found[int(pid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            return found

    def since(self, before: dict[int, float]) -> float:
        """Seconds spent since ``before`` (a backend that started in between counts whole)."""
        return sum(secs - before.get(pid, 0.0) for pid, secs in self.snapshot().items())


class Setup:
    """One row of the table: its servers' URLs and process roots, and what was measured there."""

    def __init__(self, name: str, urls: list[str], gateway: Gateway | None = None) -> None:
        self.name = name
        self.urls = urls
        self.gateway = gateway
        self.roots: list[int] = []
        self.postgres: PgBackends | None = None
        self.rounds: list[dict[str, Any]] = []
        self.cpu: dict[str, float] = {}
        self.metrics_before: list[str] = []

    def measure(self, requests_file: Path, seconds: int, args: argparse.Namespace) -> None:
        starts = [cpu_seconds(root) for root in self.roots]
        pg_start = self.postgres.snapshot() if self.postgres else {}
        self.rounds.append(wrk_at(self.urls, requests_file, seconds, args))
        for root, start in zip(self.roots, starts, strict=True):
            for kind, secs in cpu_seconds(root, since=start).items():
                self.cpu[kind] = self.cpu.get(kind, 0.0) + secs
        if self.postgres:
            self.cpu["postgresql"] = self.cpu.get("postgresql", 0.0) + self.postgres.since(pg_start)


def summed_caches(after: list[str], before: list[str]) -> dict[str, dict[str, float]]:
    """Cache hit rates over every replica (each counts its own) since ``before``."""
    total: dict[str, dict[str, float]] = {}
    for text, earlier in zip(after, before, strict=True):
        for name, c in cache_rates(text, cache_rates(earlier)).items():
            t = total.setdefault(name, {"hits": 0.0, "misses": 0.0})
            t["hits"] += c["hits"]
            t["misses"] += c["misses"]
    for t in total.values():
        seen = t["hits"] + t["misses"]
        t["hitRate"] = t["hits"] / seen if seen else 0.0
    return total


def summed_steps(after: list[str], before: list[str]) -> dict[str, Any]:
    """Policy decisions and audit appends over every replica since ``before``: count and mean ms."""
    total: dict[str, dict[str, float]] = {}
    for text, earlier in zip(after, before, strict=True):
        for name, step in timing_delta(timings(text), timings(earlier)).items():
            t = total.setdefault(name, {"count": 0, "ms": 0.0})
            t["count"] += step["count"]
            t["ms"] += step["count"] * (step["meanMs"] or 0.0)
    return {
        n: {"count": int(t["count"]), "meanMs": t["ms"] / t["count"] if t["count"] else None}
        for n, t in total.items()
    }


def register_auditor(gateway: Gateway) -> bytes:
    """An auditor's system (``auditor-bench``) that asks the replicas for checkpoints; its private key."""
    engine = make_engine(gateway.settings().effective_database_url)
    try:
        private_pem, public_pem = generate_keypair("Ed25519")
        ClientRegistry(make_sessionmaker(engine)).register(
            "auditor-bench", "veilig_thuis", "auditor", public_pem
        )
        return private_pem
    finally:
        engine.dispose()


def ask_checkpoints(gateway: Gateway, key: bytes, urls: list[str]) -> int:
    """The replicas at ``urls`` each sign (and store) a checkpoint of the log as it is, so that `verify`
    checks checkpoints signed by each replica against the one log; how many were served."""
    served = 0
    with httpx.Client(timeout=60) as http:
        for url in urls:
            assertion = make_client_assertion("auditor-bench", key, gateway.token_audience)
            form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
            r = http.post(f"{url}/oauth2/token", data=form | {"client_assertion": assertion})
            r.raise_for_status()
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            note = http.get(f"{url}/v1/audit/checkpoint", headers=auth)
            if note.status_code != 200:
                raise SystemExit(f"{url}/v1/audit/checkpoint answered {note.status_code}")
            served += 1
    return served


def prime(urls: list[str], pool: list[tuple[str, str, str]]) -> None:
    """Send every request of the pool once to each of ``urls``, as building the pool did to the first
    replica: each replica's caches (verified tokens, policy decisions) then hold what one server's do,
    and the comparison measures coordination, not caches a third as warm."""

    def send(item: tuple[str, tuple[str, str, str]]) -> int:
        url, (path, token, body) = item
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return httpx.post(f"{url}{path}", content=body.encode(), headers=headers, timeout=60).status_code

    work = [(url, request) for request in pool for url in urls]
    with concurrent.futures.ThreadPoolExecutor(8) as threads:
        statuses = list(threads.map(send, work))
    if any(status != 200 for status in statuses):
        counted = {s: statuses.count(s) for s in sorted(set(statuses))}
        raise SystemExit(f"priming the replicas: answers {counted}, all 200 expected")


def verify(gateway: Gateway) -> dict[str, Any]:
    """``audit.verify_log`` on the log the gateway left behind."""
    settings = gateway.settings()
    engine = make_engine(settings.effective_database_url)
    try:
        store = open_audit_log(settings, engine)
        result = verify_log(store, store.verifier_keys())
    finally:
        engine.dispose()
    return {
        "ok": result.ok,
        "entries": result.size,
        "checkpoints": result.checkpoints,
        "reason": result.reason,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=16, help="per setup (split over the replicas)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured round, each setup")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds, the setups taking turns")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up load, each setup")
    parser.add_argument("--cases", type=int, default=200, help="cases opened in each gateway setup")
    parser.add_argument("--candidates", type=int, default=1200, help="share requests tried for each pool")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--policy-dir", type=Path, default=REPO_ROOT / "policies")
    parser.add_argument("--postgres", default=PG_SERVER, help="PostgreSQL server URL (a superuser's)")
    parser.add_argument("--no-save", action="store_true", help="print only, write no results file")
    args = parser.parse_args()
    args.threads = 1  # one wrk thread a process (bench.share_http's default)
    return args


def main() -> None:
    args = parse_args()
    if args.rounds and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: make bench-tools (apt-get install -y wrk)")
    load_before = os.getloadavg()
    server = args.postgres.rstrip("/")
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        pg_database(server, "vd_bench_one") as (one_url, one_name),
        pg_database(server, "vd_bench_three") as (three_url, three_name),
    ):
        tmp = Path(tmp_name)
        gateways = {
            "sqlite x1": Gateway(tmp / "sqlite", args.policy_dir),
            "postgresql x1": Gateway(tmp / "pg-one", args.policy_dir, database_url=one_url),
            "postgresql x3": Gateway(
                tmp / "pg-three", args.policy_dir, replicas=3, database_url=three_url, public_url=FRONT
            ),
        }
        base_url = f"http://127.0.0.1:{free_port()}"
        baseline = start_baseline(int(base_url.rsplit(":", 1)[1]), 1)
        setups = {"baseline": Setup("baseline", [base_url])} | {
            name: Setup(name, g.urls, g) for name, g in gateways.items()
        }
        setups["postgresql x1"].postgres = PgBackends(server, one_name)
        setups["postgresql x3"].postgres = PgBackends(server, three_name)
        benches = {name: Bench(args, g, seed=args.seed) for name, g in gateways.items()}
        try:
            for bench in benches.values():
                bench.register_clients()  # and migrates the database: no replica migrates at start
            auditors = {name: register_auditor(g) for name, g in gateways.items()}
            for g in gateways.values():
                g.launch(0)  # each setup's first replica makes its keys in its data directory
            wait_up(f"{base_url}/docs", baseline)
            for g in gateways.values():
                wait_up(f"{g.url}/healthz", g.procs[0])
            for g in gateways.values():
                for index in range(1, len(g.urls)):
                    g.launch(index)
                g.wait()
            setups["baseline"].roots = [baseline.pid]
            for name, g in gateways.items():
                setups[name].roots = [p.pid for p in g.procs]
            traffic: dict[str, Any] = {}
            files: dict[str, Path] = {}
            pools: dict[str, list[tuple[str, str, str]]] = {}
            for name, bench in benches.items():  # the same seed: the same requests, each in its own cases
                pool, traffic[name] = bench.traffic()
                files[name] = tmp / f"requests-{name.replace(' ', '-')}.tsv"
                files[name].write_text("".join(f"{p}\t{t}\t{b}\n" for p, t, b in pool))
                print(
                    f"{name}: {traffic[name]['requests']} distinct shares over {traffic[name]['cases']} cases"
                )
                pools[name] = pool
            files["baseline"] = files["sqlite x1"]  # the body is all the baseline reads
            if args.rounds == 0:
                print(json.dumps(traffic, indent=2))
                return
            for name, g in gateways.items():
                prime(g.urls[1:], pools[name])
            if args.warmup:
                for name, setup in setups.items():
                    wrk_at(setup.urls, files[name], args.warmup, args)
            for name, g in gateways.items():
                setups[name].metrics_before = g.metrics()
            signed = dict.fromkeys(gateways, 0)
            for n in range(args.rounds):  # taking turns: load from elsewhere weighs on every setup
                for name, setup in setups.items():
                    setup.measure(files[name], args.duration, args)
                    if name in gateways:  # a checkpoint a round, by each replica in turn
                        g = gateways[name]
                        signed[name] += ask_checkpoints(g, auditors[name], [g.urls[n % len(g.urls)]])
            after = {name: g.metrics() for name, g in gateways.items()}
            for name, g in gateways.items():
                signed[name] += ask_checkpoints(g, auditors[name], g.urls)
        finally:
            stop([baseline, *(p for g in gateways.values() for p in g.procs)])
        logs = {
            name: verify(g) | {"checkpointsAskedOfReplicas": signed[name]} for name, g in gateways.items()
        }
    report(args, setups, traffic, after, logs, load_before)


def report(
    args: argparse.Namespace,
    setups: dict[str, Setup],
    traffic: dict[str, Any],
    after: dict[str, list[str]],
    logs: dict[str, dict[str, Any]],
    load_before: tuple[float, float, float],
) -> None:
    runs: dict[str, Any] = {}
    for name, setup in setups.items():
        run = combine(setup.rounds)
        run["cpuMsPerRequest"] = {k: 1000 * v / run["requests"] for k, v in sorted(setup.cpu.items())}
        run["failed"] = failures(run)
        if setup.gateway is not None:
            run["caches"] = summed_caches(after[name], setup.metrics_before)
            run["gatewaySteps"] = summed_steps(after[name], setup.metrics_before)
            run["auditLog"] = logs[name]
        runs[name] = run
    base = runs["baseline"]["rps"]
    load_after = os.getloadavg()
    print(
        f"\nshare path under wrk, {args.connections} connections a setup, {args.rounds} x {args.duration} s "
        f"each, the setups taking turns; {traffic['sqlite x1']['requests']} distinct shares over "
        f"{traffic['sqlite x1']['cases']} cases"
    )
    print(
        f"machine: {os.cpu_count()} cores, shared with other work; load average (1 min) "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(
        f"{'':<14} {'req/s':>7} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7} {'/baseline':>10}"
        "  CPU ms a request"
    )
    for name, r in runs.items():
        lat = r["latencyUs"]
        errors = sum(n for s, n in r["statuses"].items() if s.startswith("5") or s == "429")
        errors += sum(n for k, n in r["socketErrors"].items() if k != "status")
        cpu = ", ".join(f"{kind} {ms:.2f}" for kind, ms in r["cpuMsPerRequest"].items())
        print(
            f"{name:<14} {r['rps']:>7.0f} {lat['p50'] / 1000:>10.1f} {lat['p90'] / 1000:>8.1f} "
            f"{lat['p99'] / 1000:>8.1f} {errors:>7} {r['rps'] / base:>10.3f}  {cpu}"
        )
    three, one = runs["postgresql x3"], runs["postgresql x1"]
    print(
        f"three replicas / one on PostgreSQL: {three['rps'] / one['rps']:.2f} in requests a second, "
        f"{sum(three['cpuMsPerRequest'].values()) / sum(one['cpuMsPerRequest'].values()):.2f} in CPU a "
        "request; two cores for all, so not scale: the second core one process cannot use, less what "
        "coordinating costs (the CPU a request)"
    )
    for name, r in runs.items():
        if "gatewaySteps" in r:
            steps = ", ".join(
                f"{step} {s['count'] / r['requests']:.2f} a request of {s['meanMs']:.1f} ms"
                for step, s in r["gatewaySteps"].items()
                if s["count"]
            )
            caches = ", ".join(f"{c} {v['hitRate']:.4f}" for c, v in sorted(r["caches"].items()))
            print(f"{name}: {steps}; cache hit rates {caches or 'none counted'}")
    for name, log in logs.items():
        verdict = "verified" if log["ok"] else f"DOES NOT VERIFY: {log['reason']}"
        print(
            f"audit log, {name}: {verdict}, {log['entries']} entries, {log['checkpoints']} checkpoints "
            f"({log['checkpointsAskedOfReplicas']} asked of its replicas: one a round, then one of each; "
            "a checkpoint at a size already stored is not stored again)"
        )
    bad = [f"{name}: {why}" for name, r in runs.items() for why in r["failed"]]
    bad += [f"audit log of {name}: {log['reason']}" for name, log in logs.items() if not log["ok"]]
    result = {
        "bench": "replicas",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine() | {"loadAverage": {"before": load_before, "after": load_after}},
        "note": "a 2-core machine shared with other work: three replicas compete for the same cores as "
        "one, so not scale; their requests a second add the second core a single-worker process cannot "
        "use, less the coordination, whose cost is the CPU time a request",
        "settings": {
            "connections": args.connections,
            "connectionsPerReplica": split(args.connections, 3),
            "wrkThreadsPerProcess": args.threads,
            "roundSeconds": args.duration,
            "rounds": args.rounds,
            "warmupSeconds": args.warmup,
            "seed": args.seed,
            "gateway": "gateway serve, one uvicorn worker each: embedded engine, simulated agencies, "
            "GATEWAY_RATE_LIMIT=1000000/second (in-process limiter)",
            "replicas": "three gateway serve on one PostgreSQL database and one data directory, "
            f"GATEWAY_PUBLIC_URL={FRONT}; one wrk a replica at the same time, summed",
        },
        "traffic": traffic,
        "setups": runs,
        "ratios": {name: r["rps"] / base for name, r in runs.items()}
        | {"threeOverOne": three["rps"] / one["rps"]},
        "failed": bad,
    }
    if not args.no_save:
        out = write_results("replicas", result, indent=2)
        print(f"results: {out.relative_to(REPO_ROOT)}")
    if bad:
        raise SystemExit(f"failed run: {'; '.join(bad)}")


if __name__ == "__main__":
    main()
