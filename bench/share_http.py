"""The share path under wrk: the real gateway against a bare FastAPI endpoint taking the same body.

    .venv/bin/python -m bench.share_http                 # one uvicorn worker each, 16 connections, 20 s
    .venv/bin/python -m bench.share_http --workers 2     # two workers each (both cores)
    .venv/bin/python -m bench.share_http --duration 30 --cases 400 --no-save

Needs wrk (``apt-get install -y wrk``). Both servers run as their own processes on loopback, with the
same number of uvicorn workers: (a) ``bench._baseline_app``, the gateway's ``ShareIn`` model behind a
bare FastAPI route, and (b) ``gateway serve`` on a fresh data directory (SQLite, embedded engine,
simulated agency systems). The bench registers two agency systems per agency, gets each a real access
token at the token endpoint, opens ``--cases`` cases through the API in varied flows, steps, tracks and
subjects, and builds a pool of share requests from the policy's own data: varied information types,
purposes, payload fields, 1 to 3 recipients, each sent by a real agency's token. Every candidate is sent
once (which also warms both servers up); those the gateway answers 200 make the pool, allowed and refused
recipients mixed as real traffic mixes them. wrk then replays that pool (bench/share_http.lua) against
each server in turn: a warm-up, then the measured run.

The per-client rate limit is raised for the run (``GATEWAY_RATE_LIMIT=1000000/second``): the limiter's
cost stays in the figures, its refusals do not. A 5xx, a 429 or a socket error in a measured run fails
the run (exit 1). Results, with the machine's description, go to ``bench/results/share_http-<date>.json``
(``-w<N>`` added for more than one worker). Cache hit rates are read from the gateway's ``/metrics``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench._machine import describe, write_results
from gateway.auth import ClientRegistry, generate_keypair, make_client_assertion
from gateway.bsn import is_valid_bsn
from gateway.db import make_engine, make_sessionmaker
from gateway.migrations import upgrade
from gateway.settings import REPO_ROOT, Settings

BENCH_DIR = Path(__file__).resolve().parent
LUA = BENCH_DIR / "share_http.lua"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SUBJECT_ROLES = ["slachtoffer", "pleger", "kind", "ouder", "betrokkene"]
CLIENTS_PER_AGENCY = 2
PACKAGES = [
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "sqlalchemy",
    "regopy",
    "joserfc",
    "authlib",
    "limits",
    "prometheus-client",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}) before answering {url}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


def test_bsns(n: int) -> list[str]:
    """Fictional BSNs from the RvIG test range (999990xxx and on), valid under the elfproef."""
    out: list[str] = []
    candidate = 999990000
    while len(out) < n:
        if is_valid_bsn(str(candidate)):
            out.append(str(candidate))
        candidate += 1
    return out


class Facts:
    """What the requests are made of, read from the policy's data.json (flows, types, grants)."""

    def __init__(self, policy_dir: Path) -> None:
        path = next(policy_dir.rglob("data.json"))
        data = json.loads(path.read_text())
        self.flows: dict[str, list[str]] = {f: list(s["order"]) for f, s in data["flows"].items()}
        self.steps: dict[str, dict[str, Any]] = {f: s["steps"] for f, s in data["flows"].items()}
        self.agencies: list[str] = sorted(data["agencies"])
        self.purposes: list[str] = sorted(data["purposes"])
        self.types: dict[str, list[str]] = {t: list(s["fields"]) for t, s in data["informationTypes"].items()}
        self.openers: list[str] = list(data.get("caseOpeners", ["politie", "veilig_thuis"]))
        samenloop = data.get("samenloop", {})
        self.samenloop_types = set(samenloop.get("informationTypes", []))
        self.samenloop_recipients = set(samenloop.get("recipients", []))
        minor = data.get("minorRequired", {})
        self.minor_recipients = set(minor.get("recipients", []))
        self.minor_role = str(minor.get("subjectRole", "kind"))
        # grants[type][receiver][sender] -> row; indexed here by (type, sender) -> {receiver: row}.
        self.grants: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for type_, receivers in data["grants"].items():
            for receiver, senders in receivers.items():
                for sender, row in senders.items():
                    self.grants.setdefault((type_, sender), {})[receiver] = row


def machine() -> dict[str, Any]:
    """The machine and the code measured (bench._machine), with wrk's version."""
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return describe(PACKAGES) | {"wrk": (wrk.stdout or wrk.stderr).split("\n")[0].strip()}


class Gateway:
    """``replicas`` ``gateway serve`` processes on one data directory and one database (SQLite in the
    data directory by default), each on its own loopback port, with the bench's settings: the rate limit
    raised, hour-long tokens, the policy directory given. Several replicas share ``public_url`` (the
    front they would stand behind) as the issuer of their tokens and the audience of client assertions."""

    def __init__(
        self,
        data_dir: Path,
        policy_dir: Path,
        *,
        workers: int = 1,
        replicas: int = 1,
        database_url: str | None = None,
        public_url: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.workers = workers
        self.urls = [f"http://127.0.0.1:{free_port()}" for _ in range(replicas)]
        self.public_url = public_url
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = dict(
            os.environ,
            GATEWAY_DATA_DIR=str(data_dir),
            GATEWAY_HOST="127.0.0.1",
            GATEWAY_RATE_LIMIT="1000000/second",
            GATEWAY_ACCESS_TOKEN_TTL="3600",
            GATEWAY_POLICY_DIR=str(policy_dir),
        )
        for name in (
            "GATEWAY_DATABASE_URL",
            "GATEWAY_POLICY_ENGINE",
            "GATEWAY_CONNECTORS",
            "GATEWAY_PUBLIC_URL",
        ):
            self.env.pop(name, None)
        if database_url:
            self.env["GATEWAY_DATABASE_URL"] = database_url
        if public_url:
            self.env["GATEWAY_PUBLIC_URL"] = public_url

    @property
    def url(self) -> str:
        """The first replica's URL (the only one, by default): where the set-up traffic goes."""
        return self.urls[0]

    @property
    def token_audience(self) -> str:
        """The token endpoint as the client assertions must name it: the front's, or the server's own."""
        return f"{self.public_url or self.url}/oauth2/token"

    def settings(self) -> Settings:
        """The settings the replicas run with, as far as the bench needs them (database, keys, issuer)."""
        return Settings(data_dir=self.data_dir, database_url=self.database_url, public_url=self.public_url)

    def register_clients(self, agencies: list[str]) -> dict[str, bytes]:
        """Migrate the database and register ``CLIENTS_PER_AGENCY`` agency systems per agency before
        any replica starts; their private keys by client id."""
        settings = self.settings()
        settings.data_dir.mkdir(mode=0o700, exist_ok=True)
        engine = make_engine(settings.effective_database_url)
        keys: dict[str, bytes] = {}
        try:
            upgrade(engine)
            registry = ClientRegistry(make_sessionmaker(engine))
            for agency in agencies:
                for n in range(CLIENTS_PER_AGENCY):
                    private_pem, public_pem = generate_keypair("Ed25519")
                    client_id = f"{agency}-bench-{n}"
                    registry.register(client_id, agency, "agency_system", public_pem)
                    keys[client_id] = private_pem
        finally:
            engine.dispose()
        return keys

    def launch(self, index: int) -> subprocess.Popen[bytes]:
        """Start replica ``index`` (not waiting for it)."""
        port = self.urls[index].rsplit(":", 1)[1]
        command = [str(Path(sys.executable).parent / "gateway"), "serve", "--port", port]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        proc = subprocess.Popen(command, env=self.env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def wait(self) -> None:
        for url, proc in zip(self.urls, self.procs, strict=True):
            wait_up(f"{url}/healthz", proc)

    def start(self) -> None:
        """Start every replica: the first alone, as it makes the keys in the shared data directory."""
        self.launch(0)
        if len(self.urls) > 1:
            wait_up(f"{self.url}/healthz", self.procs[0])
            for index in range(1, len(self.urls)):
                self.launch(index)
        self.wait()

    def metrics(self) -> list[str]:
        """Each replica's ``/metrics``."""
        return [httpx.get(f"{url}/metrics", timeout=10).text for url in self.urls]


def start_baseline(port: int, workers: int) -> subprocess.Popen[bytes]:
    """The bare FastAPI endpoint of bench._baseline_app (not waiting for it)."""
    command = [sys.executable, "-m", "bench._baseline_app", "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(command, cwd=REPO_ROOT)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def wrk_command(
    url: str, requests_file: Path, seconds: int, *, threads: int, connections: int, script: Path = LUA
) -> list[str]:
    """wrk replaying ``requests_file`` (bench/share_http.lua, or a script built on it) at ``url``."""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        str(requests_file),
    ]


def wrk_result(stdout: str) -> dict[str, Any]:
    """The ``WRK-RESULT`` line the script's done() prints, with the requests a second."""
    line = next(x for x in stdout.splitlines() if x.startswith("WRK-RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("WRK-RESULT "))
    result["rps"] = result["requests"] / result["seconds"]
    return result


class Bench:
    """The traffic of a run against one gateway set-up: its agency systems' tokens, the cases opened
    through its API and the pool of share requests wrk replays."""

    def __init__(self, args: argparse.Namespace, gateway: Gateway, *, seed: int | None = None) -> None:
        self.args = args
        self.gateway = gateway
        self.rng = random.Random(args.seed if seed is None else seed)
        self.facts = Facts(args.policy_dir)
        self.keys: dict[str, bytes] = {}
        self.tokens: dict[str, str] = {}
        self.local = threading.local()
        self.gw_url = gateway.url

    def register_clients(self) -> None:
        self.keys = self.gateway.register_clients(self.facts.agencies)

    def fetch_tokens(self) -> None:
        """A real token for every client at the token endpoint, taking the replicas in turn (a token
        from one is good at every other)."""
        urls = self.gateway.urls
        with httpx.Client(timeout=30) as http:
            for n, (client_id, key) in enumerate(self.keys.items()):
                r = http.post(
                    f"{urls[n % len(urls)]}/oauth2/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_assertion_type": ASSERTION_TYPE,
                        "client_assertion": make_client_assertion(
                            client_id, key, self.gateway.token_audience
                        ),
                    },
                )
                r.raise_for_status()
                self.tokens[client_id] = r.json()["access_token"]

    def client_of(self, agency: str) -> str:
        return f"{agency}-bench-{self.rng.randrange(CLIENTS_PER_AGENCY)}"

    def call(self, method: str, path: str, client_id: str, body: Any) -> httpx.Response:
        """One API call as ``client_id``, on this thread's keep-alive connection."""
        http = getattr(self.local, "http", None)
        if http is None:
            http = self.local.http = httpx.Client(base_url=self.gw_url, timeout=60)
        headers = {"Authorization": f"Bearer {self.tokens[client_id]}"}
        return http.request(method, path, json=body, headers=headers)

    def traffic(self) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
        """Tokens, cases and the pool of share requests (with its summary), as one step."""
        self.fetch_tokens()
        t0 = time.perf_counter()
        cases = self.open_cases()
        pool, summary = self.build_pool(cases)
        summary["casesOpened"] = len(cases)
        summary["setupSeconds"] = round(time.perf_counter() - t0, 1)
        return pool, summary

    # -- cases -----------------------------------------------------------------------------------------

    def open_cases(self) -> list[dict[str, Any]]:
        bsns = test_bsns(40)
        plans = []
        for _ in range(self.args.cases):
            flow = self.rng.choice(sorted(self.facts.flows))
            roles = self.rng.sample(SUBJECT_ROLES, self.rng.randint(1, 4))
            plans.append(
                {
                    "flow": flow,
                    "step": self.rng.choice(self.facts.flows[flow]),
                    "opener": self.rng.choice(self.facts.openers),
                    "subjects": [{"role": r, "bsn": self.rng.choice(bsns)} for r in roles],
                    "zorg": self.rng.random() < 0.4,
                    "straf": self.rng.random() < 0.4,
                }
            )

        def open_one(plan: dict[str, Any]) -> dict[str, Any] | None:
            client = f"{plan['opener']}-bench-0"
            body = {"flow": plan["flow"], "subjects": plan["subjects"], "step": plan["step"]}
            r = self.call("POST", "/v1/cases", client, body)
            if r.status_code != 201:  # not a step this opener may open in: the flow's first
                body.pop("step")
                r = self.call("POST", "/v1/cases", client, body)
            if r.status_code != 201:
                return None
            case: dict[str, Any] = r.json()
            for track, owner in (("zorg", "veilig_thuis"), ("straf", "politie")):
                if plan[track]:
                    path = f"/v1/cases/{case['caseId']}/tracks/{track}"
                    t = self.call("PUT", path, f"{owner}-bench-0", {"open": True})
                    if t.status_code == 200:
                        case = t.json()
            return case

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            cases = [c for c in pool.map(open_one, plans) if c is not None]
        if not cases:
            raise SystemExit("no case could be opened")
        return cases

    # -- share requests --------------------------------------------------------------------------------

    def payload(self, type_: str) -> dict[str, Any]:
        fields = self.facts.types[type_]
        chosen = self.rng.sample(fields, self.rng.randint(min(3, len(fields)), len(fields)))
        payload: dict[str, Any] = {}
        for name in chosen:
            kind = self.rng.random()
            if kind < 0.15:
                payload[name] = self.rng.randint(0, 10_000)
            elif kind < 0.25:
                payload[name] = [{"rol": self.rng.choice(SUBJECT_ROLES), "leeftijd": self.rng.randint(1, 80)}]
            else:
                payload[name] = "fictief " * self.rng.randint(1, 12)
        if self.rng.random() < 0.3:
            payload["interneOpmerking"] = "niet voor derden"  # a field no grant lists: minimised away
        return payload

    def candidate(self, cases: list[dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
        """A share as a real agency system would send it: mostly one the policy should allow (three in
        four), the rest anything an agency might try (wrong step, purpose, recipient or type)."""
        if self.rng.random() < 0.75:
            for _ in range(20):
                made = self.allowable(self.rng.choice(cases))
                if made is not None:
                    return made
        return self.anything(self.rng.choice(cases))

    def allowable(self, case: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
        """A share meant to pass: from a core participant of the case's step, of a type it may send, to
        1-3 participants with a grant for a purpose of this step (and the tracks and subjects it needs)."""
        facts = self.facts
        step_name = f"{case['flow']}/{case['step']}"
        step = facts.steps[case["flow"]][case["step"]]
        step_purposes = set(step.get("purposes", []))
        participants = {*step.get("core", []), *step.get("consulted", []), *step.get("conditional", [])}
        roles = {s["role"] for s in case.get("subjects", [])}
        tracks = case.get("tracks", {})
        sender = self.rng.choice(sorted(step.get("core", [])) or [case["openedBy"]])
        options: list[tuple[str, str, set[str]]] = []  # (type, recipient, purposes)
        for (type_, from_), receivers in facts.grants.items():
            if from_ != sender:
                continue
            for recipient, row in receivers.items():
                if recipient == sender or recipient not in participants:
                    continue
                if row.get("steps") and step_name not in row["steps"]:
                    continue
                if recipient in facts.minor_recipients and facts.minor_role not in roles:
                    continue
                if type_ in facts.samenloop_types and recipient in facts.samenloop_recipients:
                    if not (tracks.get("zorg") and tracks.get("straf")):
                        continue
                purposes = set(row.get("purposes", [])) & step_purposes
                if purposes:
                    options.append((type_, recipient, purposes))
        if not options:
            return None
        type_, first, purposes = self.rng.choice(options)
        purpose = self.rng.choice(sorted(purposes))
        more = [r for t, r, p in options if t == type_ and r != first and purpose in p]
        recipients = [first, *self.rng.sample(more, min(len(more), self.rng.choice([0, 1, 1, 2])))]
        body = {
            "informationType": type_,
            "purpose": purpose,
            "recipients": recipients,
            "payload": self.payload(type_),
        }
        return f"/v1/cases/{case['caseId']}/shares", self.client_of(sender), body

    def anything(self, case: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """A share an agency might try: a participant or anyone, any type, purpose and recipients."""
        step = self.facts.steps[case["flow"]][case["step"]]
        participants = sorted({case["openedBy"], *step.get("core", []), *step.get("consulted", [])})
        sender = self.rng.choice(participants if self.rng.random() < 0.85 else self.facts.agencies)
        sendable = sorted(t for (t, s) in self.facts.grants if s == sender)
        if sendable and self.rng.random() < 0.9:
            type_ = self.rng.choice(sendable)
        else:
            type_ = self.rng.choice(sorted(self.facts.types))
        granted = self.facts.grants.get((type_, sender), {})
        others = [a for a in self.facts.agencies if a != sender]
        count = self.rng.choice([1, 1, 2, 2, 3])
        pool = sorted(granted) if granted and self.rng.random() < 0.75 else others
        recipients = self.rng.sample(pool, min(count, len(pool)))
        if len(recipients) < count:
            recipients += self.rng.sample([a for a in others if a not in recipients], count - len(recipients))
        row_purposes = sorted({p for r in recipients if r in granted for p in granted[r].get("purposes", [])})
        step_purposes = list(step.get("purposes", []))
        roll = self.rng.random()
        if row_purposes and roll < 0.6:
            purpose = self.rng.choice(row_purposes)
        elif step_purposes and roll < 0.85:
            purpose = self.rng.choice(step_purposes)
        else:
            purpose = self.rng.choice(self.facts.purposes)
        body = {
            "informationType": type_,
            "purpose": purpose,
            "recipients": recipients,
            "payload": self.payload(type_),
        }
        return f"/v1/cases/{case['caseId']}/shares", self.client_of(sender), body

    def build_pool(self, cases: list[dict[str, Any]]) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
        candidates = [self.candidate(cases) for _ in range(self.args.candidates)]
        statuses: dict[str, int] = {}
        allowed = refused = 0
        codes: dict[str, int] = {}
        pool: list[tuple[str, str, str]] = []

        def send(item: tuple[str, str, dict[str, Any]]) -> tuple[int, Any]:
            path, client_id, body = item
            r = self.call("POST", path, client_id, body)
            return r.status_code, r.json() if r.status_code == 200 else None

        with concurrent.futures.ThreadPoolExecutor(8) as pool_threads:
            for item, (status, answer) in zip(candidates, pool_threads.map(send, candidates), strict=True):
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status != 200:
                    continue
                path, client_id, body = item
                results = answer["results"]
                allowed += sum(r["allowed"] for r in results)
                refused += sum(not r["allowed"] for r in results)
                for r in results:
                    if not r["allowed"]:
                        for reason in r.get("reasons") or [{}]:
                            code = str(reason.get("code"))
                            codes[code] = codes.get(code, 0) + 1
                text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
                pool.append((path, self.tokens[client_id], text))
        if len(pool) < 100:
            raise SystemExit(
                f"only {len(pool)} of {len(candidates)} candidate shares were answered 200: {statuses}"
            )
        self.rng.shuffle(pool)
        bodies = [json.loads(b) for _, _, b in pool]
        summary = {
            "candidates": len(candidates),
            "candidateStatuses": statuses,
            "requests": len(pool),
            "cases": len({p for p, _, _ in pool}),
            "clients": len({t for _, t, _ in pool}),
            "informationTypes": len({b["informationType"] for b in bodies}),
            "purposes": len({b["purpose"] for b in bodies}),
            "recipientsPerShare": {
                str(n): sum(len(b["recipients"]) == n for b in bodies) for n in range(1, 4)
            },
            "recipientResults": {"allowed": allowed, "refused": refused},
            "refusalReasons": dict(sorted(codes.items(), key=lambda kv: -kv[1])),
            "meanBodyBytes": round(sum(len(b.encode()) for _, _, b in pool) / len(pool)),
        }
        return pool, summary

    # -- load ------------------------------------------------------------------------------------------

    def wrk(self, url: str, requests_file: Path, seconds: int) -> dict[str, Any]:
        """One wrk run at ``url`` with the bench's threads and connections."""
        args = self.args
        command = wrk_command(url, requests_file, seconds, threads=args.threads, connections=args.connections)
        return wrk_result(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    def profile(self, out: Path, requests_file: Path) -> None:
        """One more gateway round of wrk under py-spy (gateway and its subprocesses), raw and SVG."""
        from bench.profile_breakdown import report

        spy = str(Path(sys.executable).parent / "py-spy")
        pid = str(self.gateway.procs[0].pid)
        raw = out.with_suffix(".txt")
        seconds = str(self.args.duration)
        common = [
            "--pid",
            pid,
            "--subprocesses",
            "--nonblocking",
            "--duration",
            seconds,
            "--rate",
            "250",
            "--gil",
        ]
        for fmt, path, extra in (("raw", raw, ["--nolineno"]), ("flamegraph", out.with_suffix(".svg"), [])):
            spying = subprocess.Popen(
                [spy, "record", *common, *extra, "--format", fmt, "--output", str(path)]
            )
            time.sleep(1)
            self.wrk(self.gw_url, requests_file, self.args.duration)
            spying.wait(timeout=60)
        print(report(raw))

    def metrics(self) -> str:
        return self.gateway.metrics()[0]


TIMED = {
    "policyDecision": "gateway_policy_decision_seconds",
    "auditAppend": "gateway_audit_append_seconds",
}


def timings(metrics_text: str) -> dict[str, dict[str, float]]:
    """Count and total seconds of the gateway's timed steps (Prometheus histograms' _count and _sum)."""
    out: dict[str, dict[str, float]] = {}
    for name, metric in TIMED.items():
        found = {}
        for part in ("count", "sum"):
            m = re.search(rf"^{metric}_{part} (\S+)$", metrics_text, re.M)
            found[part] = float(m[1]) if m else 0.0
        out[name] = found
    return out


def timing_delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per timed step over the measured rounds: how many, and the mean milliseconds of one."""
    out: dict[str, Any] = {}
    for name in after:
        count = after[name]["count"] - before[name]["count"]
        total = after[name]["sum"] - before[name]["sum"]
        out[name] = {"count": int(count), "meanMs": 1000 * total / count if count else None}
    return out


def _processes(root: int) -> list[int]:
    """``root`` and every process under it (from /proc; Linux only)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return found


def cpu_seconds(root: int, since: dict[int, tuple[str, float]] | None = None) -> Any:
    """CPU seconds (user + system) of ``root``'s process tree, by pid with the kind of process; with
    ``since``, the seconds spent after it summed by kind: the server's own processes ("server") and the
    policy engine's workers ("policy workers"). Processes that ended in between are not counted."""
    tick = os.sysconf("SC_CLK_TCK")
    now: dict[int, tuple[str, float]] = {}
    for pid in _processes(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        kind = "policy workers" if b"_worker_main" in cmdline else "server"
        now[pid] = (kind, (int(fields[11]) + int(fields[12])) / tick)
    if since is None:
        return now
    spent: dict[str, float] = {}
    for pid, (kind, secs) in now.items():
        spent[kind] = spent.get(kind, 0.0) + secs - since.get(pid, (kind, 0.0))[1]
    return spent


def cache_rates(
    metrics_text: str, before: dict[str, dict[str, float]] | None = None
) -> dict[str, dict[str, float]]:
    """Hit rates of the caches the gateway counts as ``gateway_cache_{hits,misses}_total{cache=...}``,
    since ``before`` when given (so the warm-up and the set-up do not count). With several workers this
    is the one process that answered ``/metrics``: each worker counts its own."""
    counts: dict[str, dict[str, float]] = {}
    for m in re.finditer(r'^gateway_cache_(hits|misses)_total\{cache="([^"]+)"\} (\S+)$', metrics_text, re.M):
        counts.setdefault(m[2], {"hits": 0.0, "misses": 0.0})[m[1]] = float(m[3])
    for name, c in counts.items():
        if before and name in before:
            c["hits"] -= before[name]["hits"]
            c["misses"] -= before[name]["misses"]
        total = c["hits"] + c["misses"]
        c["hitRate"] = c["hits"] / total if total else 0.0
    return counts


def failures(result: dict[str, Any]) -> list[str]:
    """Why a measured run does not count: a 5xx, a 429, a socket error or an engine timeout."""
    bad = [
        f"{n} answers {s}" for s, n in sorted(result["statuses"].items()) if s.startswith("5") or s == "429"
    ]
    bad += [
        f"{n} socket {kind} errors" for kind, n in result["socketErrors"].items() if n and kind != "status"
    ]
    if result.get("engineTimeouts"):
        bad.append(f"{result['engineTimeouts']} answers refused by an engine timeout (failing closed)")
    return bad


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one side as one figure: requests over seconds, the median of the rounds' medians,
    the worst round's p90, p99 and max, and every count summed."""
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    statuses: dict[str, int] = {}
    for r in rounds:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    medians = sorted(r["latencyUs"]["p50"] for r in rounds)
    return {
        "rps": requests / seconds,
        "requests": requests,
        "seconds": seconds,
        "statuses": statuses,
        "allowed": sum(r["allowed"] for r in rounds),
        "refused": sum(r["refused"] for r in rounds),
        "engineTimeouts": sum(r["engineTimeouts"] for r in rounds),
        "socketErrors": {k: sum(r["socketErrors"][k] for r in rounds) for k in rounds[0]["socketErrors"]},
        "latencyUs": {
            "p50": medians[len(medians) // 2],
            "p90": max(r["latencyUs"]["p90"] for r in rounds),
            "p99": max(r["latencyUs"]["p99"] for r in rounds),
            "max": max(r["latencyUs"]["max"] for r in rounds),
        },
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes, each side")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (it shares the machine)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured round, each side")
    parser.add_argument(
        "--rounds", type=int, default=3, help="measured rounds, baseline and gateway taking turns"
    )
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up load, each side")
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=1200, help="share requests tried for the pool")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--policy-dir", type=Path, default=REPO_ROOT / "policies")
    parser.add_argument("--no-save", action="store_true", help="print only, write no results file")
    parser.add_argument(
        "--profile",
        type=Path,
        help="after the measured rounds, one more gateway round under py-spy: PROFILE.txt (raw stacks) "
        "and PROFILE.svg (flame graph), with the breakdown by component printed",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base_port = free_port()
        base_url = f"http://127.0.0.1:{base_port}"
        gateway = Gateway(tmp / "data", args.policy_dir, workers=args.workers)
        bench = Bench(args, gateway)
        baseline = start_baseline(base_port, args.workers)  # it starts while the clients are registered
        try:
            bench.register_clients()
            gateway.launch(0)
            wait_up(f"{base_url}/docs", baseline)
            gateway.wait()
            pool, traffic = bench.traffic()
            if args.rounds == 0:  # the traffic only: what the pool holds and why recipients are refused
                print(json.dumps(traffic, indent=2))
                return
            requests_file = tmp / "requests.tsv"
            requests_file.write_text("".join(f"{p}\t{t}\t{b}\n" for p, t, b in pool))
            sides = {"baseline": base_url, "gateway": gateway.url}
            if args.warmup:
                for url in sides.values():
                    bench.wrk(url, requests_file, args.warmup)
            scraped = bench.metrics()
            before, timed_before = cache_rates(scraped), timings(scraped)
            if args.workers > 1:
                # /metrics is one worker's, and the next scrape may reach the other: no differences then;
                # the figures are that worker's since it started, set-up and warm-up included.
                before, timed_before = {}, timings("")
            # Taking turns, so that a machine busy with something else weighs on both sides alike.
            measured: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
            roots = {"baseline": baseline.pid, "gateway": gateway.procs[0].pid}
            cpu: dict[str, dict[str, float]] = {side: {} for side in sides}
            for _ in range(args.rounds):
                for side, url in sides.items():
                    start = cpu_seconds(roots[side])
                    measured[side].append(bench.wrk(url, requests_file, args.duration))
                    for kind, secs in cpu_seconds(roots[side], since=start).items():
                        cpu[side][kind] = cpu[side].get(kind, 0.0) + secs
            scraped = bench.metrics()
            caches = cache_rates(scraped, before)
            steps = timing_delta(timings(scraped), timed_before)
            runs = {side: combine(rounds) for side, rounds in measured.items()}
            for side, run in runs.items():
                run["cpuMsPerRequest"] = {k: 1000 * v / run["requests"] for k, v in sorted(cpu[side].items())}
            if args.profile:
                bench.profile(args.profile, requests_file)
        finally:
            stop([baseline, *gateway.procs])

    base, gw = runs["baseline"], runs["gateway"]
    ratio = gw["rps"] / base["rps"]
    print(
        f"share path under wrk: {args.workers} worker(s) each, {args.connections} connections, "
        f"{args.rounds} x {args.duration} s each side; {traffic['requests']} distinct shares over "
        f"{traffic['cases']} cases, "
        f"{traffic['clients']} clients, {traffic['informationTypes']} information types, "
        f"{traffic['purposes']} purposes; recipients allowed/refused in the pool "
        f"{traffic['recipientResults']['allowed']}/{traffic['recipientResults']['refused']}"
    )
    for side, r in runs.items():
        parts = ", ".join(f"{kind} {ms:.2f} ms" for kind, ms in r["cpuMsPerRequest"].items())
        print(f"CPU per request, {side}: {parts}")
    after = os.getloadavg()[0]
    print(f"load average (1 min) {load_before[0]:.1f} before, {after:.1f} after, {os.cpu_count()} cores")
    print(f"{'':<10} {'req/s':>9} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8}  answers")
    for side, r in runs.items():
        lat = r["latencyUs"]
        print(
            f"{side:<10} {r['rps']:>9.0f} {lat['p50'] / 1000:>10.2f} {lat['p90'] / 1000:>8.2f} "
            f"{lat['p99'] / 1000:>8.2f}  {r['statuses']}"
        )
    print(
        f"ratio gateway/baseline {ratio:.3f} (target >= 0.25); "
        f"gateway p99 {gw['latencyUs']['p99'] / 1000:.1f} ms "
        "(target < 150 ms)"
    )
    print(
        f"gateway recipient results under load: allowed {gw['allowed']}, refused {gw['refused']}, "
        f"engine timeouts {gw['engineTimeouts']}"
    )
    for name, c in sorted(caches.items()):
        print(f"cache {name}: hit rate {c['hitRate']:.4f} ({c['hits']:.0f} hits, {c['misses']:.0f} misses)")
    if not caches:
        print("caches: none counted in /metrics")
    for name, step in steps.items():
        if step["count"]:
            per = step["count"] / gw["requests"]
            print(f"{name}: {step['count']} ({per:.2f} a request), mean {step['meanMs']:.2f} ms")
    bad = failures(base) + failures(gw)
    result = {
        "bench": "share_http",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        # Other work on the machine weighs on both sides (they take turns) but not necessarily alike.
        "machine": machine() | {"loadAverage": {"before": load_before, "after": os.getloadavg()}},
        "settings": {
            "workers": args.workers,
            "connections": args.connections,
            "wrkThreads": args.threads,
            "roundSeconds": args.duration,
            "rounds": args.rounds,
            "warmupSeconds": args.warmup,
            "seed": args.seed,
            "gateway": "gateway serve: SQLite, embedded engine, simulated agencies, "
            "GATEWAY_RATE_LIMIT=1000000/second",
        },
        "traffic": traffic,
        "baseline": base,
        "gateway": gw,
        "ratio": ratio,
        "targets": {"ratio": 0.25, "p99Ms": 150},
        "caches": caches,
        "gatewaySteps": steps,
        "failed": bad,
    }
    if not args.no_save:
        suffix = f"-w{args.workers}" if args.workers > 1 else ""
        out = write_results("share_http", result, suffix=suffix, indent=2)
        print(f"results: {out.relative_to(REPO_ROOT)}")
    if bad:
        raise SystemExit(f"failed run: {'; '.join(bad)}")


if __name__ == "__main__":
    main()
