"""Measure the console's search page at national scale: a million entries, as officers search them.

    .venv/bin/python -m bench.console_search                    # 1,000,000 entries, built once, kept
    .venv/bin/python -m bench.console_search --size 20000       # a smaller log while developing
    make bench-console                                          # the same as the first line

The log is built in a gateway data directory of its own, ``var/bench/console-<size>/`` (kept and
reused: building a million entries takes a while), by the gateway's own code: entries made with
``gateway.services.trail`` (``make_entry``, ``decision_record``) from real decisions of the loaded
policy (each distinct share decided once by the embedded engine and kept in ``decisions.json``),
subjects pseudonymised by the gateway's ``Pseudonymizer`` from valid BSNs, and appended through
``SqlAuditStore.append`` with the runtime's own signing key, 50,000 entries per call (one transaction
each, every leaf, search row and tree node written as in production), on a connection with
``synchronous=OFF`` while building only.

The workload follows the national one (about 56,000 reports a year, some 18 audit entries per case,
spread over weeks; two or three people per case; the five agencies; each case in one step of its flow,
its shares following that step's purposes and parties, some refused; a year of timestamps for a
million entries).

Then, over many varied queries per kind (different cases, people, agencies, purposes, information types,
weeks and depths), it times the console's search as an auditor (sees every entry) and as a privacy
officer (sees the entries naming its agency): through the console route in-process (a ``TestClient``
with a session started from a ``gateway.console.sessions`` login link, so session, CSRF, filter
validation, the lookup's own audit entry for a BSN search, and rendering are all included) and the
store call alone (``rt.audit.search`` with the filters the route hands it). Baselines measured in the
same run: a primary-key SELECT of one entry for the store, the empty search form for the route. Prints
the median and p95 per query kind and writes ``bench/results/console_search-<date>.json``
(``--no-save`` to skip). Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import os
import random
import re
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from bench._machine import REPO_ROOT, describe, write_results

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SECONDS_PER_ENTRY = 365 * 24 * 3600 / 1_000_000  # a million entries is about one year
ENTRIES_PER_CASE = 18
CASE_WINDOW = 36_000  # entries over which one case's entries are spread (about two weeks)
BUILD_BATCH = 50_000
ROLES = ("slachtoffer", "pleger", "kind")
BASE = "http://127.0.0.1:8000"


# -- the log ----------------------------------------------------------------------------------------


def case_of(n: int) -> int:
    """The case of entry ``n``: a window's cases interleave, each case has about 18 entries."""
    per_window = CASE_WINDOW // ENTRIES_PER_CASE
    return (n // CASE_WINDOW) * per_window + n % per_window


def position_in_case(n: int) -> int:
    per_window = CASE_WINDOW // ENTRIES_PER_CASE
    return (n % CASE_WINDOW) // per_window


def case_id(case: int) -> str:
    """A lower-case UUID, as the gateway issues case ids, deterministic in ``case``."""
    return str(uuid.UUID(bytes=hashlib.sha256(f"case-{case}".encode()).digest()[:16], version=4))


def bsn_of(person: int) -> str:
    """A valid (elfproef) BSN for person number ``person``; never a real one's pattern matters here."""
    for prefix in (20_000_000 + 2 * person, 20_000_001 + 2 * person):
        digits = [int(c) for c in f"{prefix:08d}"]
        check = sum(w * d for w, d in zip(range(9, 1, -1), digits, strict=True)) % 11
        if check < 10:
            return f"{prefix:08d}{check}"
    return bsn_of(person + 10**7)  # both candidates had check digit 10: another number


def people(case: int) -> list[int]:
    return [case * 3 + r for r in range(2 + case % 2)]


def time_of(n: int) -> dt.datetime:
    return START + dt.timedelta(seconds=n * SECONDS_PER_ENTRY)


class Workload:
    """Entries as the gateway writes them, from the loaded policy's facts and its real decisions."""

    def __init__(self, rt: Any, cache: Path) -> None:
        from gateway.services import policy_input

        self.rt = rt
        self.facts = rt.process_facts()
        self.policy_input = policy_input
        raw = json.loads(Path(rt.settings.policy_dir / "veiligdelen/facts/data.json").read_text())
        self.flows = raw["flows"]
        self.steps = [(f, s) for f in self.facts.flows() for s in self.facts.steps(f)]
        self.types = sorted(self.facts.information_types())
        self.cache_path = cache
        self.decisions: dict[str, dict[str, Any]] = json.loads(cache.read_text()) if cache.exists() else {}
        self.decided = 0
        self.pseudonyms: dict[int, str] = {}

    def pseudonym(self, person: int) -> str:
        found = self.pseudonyms.get(person)
        if found is None:
            found = self.pseudonyms[person] = self.rt.pseudonymizer.pseudonym(bsn_of(person))
        return found

    def step(self, case: int) -> tuple[str, str, dict[str, Any]]:
        flow, step = self.steps[(case * 7) % len(self.steps)]
        return flow, step, self.flows[flow]["steps"][step]

    def parties(self, spec: dict[str, Any]) -> list[str]:
        return list(dict.fromkeys([*spec["core"], *spec["consulted"], *spec["conditional"]]))

    def context(self, agency: str) -> Any:
        from gateway.auth import Principal
        from gateway.auth.roles import ROLE_SCOPES
        from gateway.services.trail import CallContext
        from gateway.tracing import from_header

        principal = Principal(
            client_id=f"{agency}-system",
            agency=agency,
            role="agency_system",
            scopes=ROLE_SCOPES["agency_system"],
        )
        return CallContext(principal=principal, trace=from_header(None))

    def record(self, case: Any, action: str, actor: str, **given: Any) -> dict[str, Any]:
        from gateway.services.trail import decision_record

        roles = sorted({s.role for s in case.subjects})
        key = json.dumps([action, case.flow, case.step, actor, roles, case.involved, given], sort_keys=True)
        found = self.decisions.get(key)
        if found is None:
            ctx = self.context(actor)
            if action == "share":
                query = self.policy_input.share(ctx, case, self.facts, field_names=[], **given)
            else:
                query = self.policy_input.case_open(ctx, case)
            decision = self.rt.decide(query)
            found = self.decisions[key] = decision_record(decision, given.get("recipients", [None])[0])
            self.decided += 1
        return found

    def case_record(self, case: int) -> Any:
        from gateway.models import CaseRecord, SubjectRecord

        flow, step, spec = self.step(case)
        subjects = tuple(SubjectRecord(i, ROLES[i], self.pseudonym(p)) for i, p in enumerate(people(case)))
        return CaseRecord(
            case_id(case),
            flow,
            step,
            True,
            True,
            spec["core"][0],
            tuple(self.parties(spec)),
            START,
            START,
            subjects,
        )

    def entry(self, n: int) -> dict[str, Any]:
        """Entry ``n``: deterministic in ``n`` except for trace ids and digests."""
        from gateway.services.trail import case_entry, make_entry, payload_digest

        number = case_of(n)
        j = position_in_case(n)
        case = self.case_record(number)
        _flow, _step, spec = self.step(number)
        parties = self.parties(spec)
        senders = spec["core"]
        actor = senders[(n + j) % len(senders)]
        others = [p for p in parties if p != actor] or [p for p in self.facts.agencies() if p != actor]
        recipient = others[(n // 7 + j) % len(others)]
        purposes = spec["purposes"]
        # Mostly a purpose of the step; now and then one that is not (refused, with its reason).
        purpose = purposes[(n + number) % len(purposes)] if n % 11 else sorted(self.facts.purposes())[n % 8]
        info = self.types[(n * 5 + number) % len(self.types)]
        kind = "open" if j == 0 else "share" if j % 2 else ("push", "ack", "read", "whatif")[(j // 2) % 4]
        ctx = self.context(actor)
        if kind == "open":
            decision = self.record(case, "case.open", case.opened_by)
            made = case_entry(
                self.context(case.opened_by),
                case,
                type_="case",
                action="case.open",
                outcome="opened" if decision["allowed"] else "refused",
            )
            made["decision"] = decision
        elif kind in ("share", "whatif"):
            decision = self.record(
                case, "share", actor, information_type=info, purpose=purpose, recipients=[recipient]
            )
            allowed = decision["allowed"]
            made = case_entry(
                ctx,
                case,
                type_="exchange" if kind == "share" else "decision",
                action="share" if kind == "share" else "what-if:share",
                outcome=("authorised" if allowed else "refused") if kind == "share" else "evaluated",
                information_type=info,
                purpose=purpose,
                recipient=recipient,
                digest=payload_digest({"n": n, "k": os.urandom(8).hex()}) if allowed else None,
                refs={"shareId": str(uuid.UUID(int=n))} if kind == "share" else None,
            )
            made["decision"] = decision
        elif kind == "push":
            made = make_entry(
                ctx,
                type_="delivery",
                action="push",
                outcome="delivered",
                case_id=case.case_id,
                counterpart=recipient,
                information_type=info,
                purpose=purposes[n % len(purposes)],
                refs={"messageId": str(uuid.UUID(int=n))},
            )
        elif kind == "ack":
            made = make_entry(
                self.context(recipient),
                type_="delivery",
                action="ack",
                outcome="acknowledged",
                case_id=case.case_id,
                counterpart=actor,
                information_type=info,
                purpose=purposes[n % len(purposes)],
                refs={"messageId": str(uuid.UUID(int=n))},
            )
        else:
            made = case_entry(
                self.context(recipient), case, type_="access", action="case.read", outcome="read"
            )
        made["time"] = time_of(n).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return made

    def save(self) -> None:
        self.cache_path.write_text(json.dumps(self.decisions))


def build(rt: Any, work: Workload, size: int, marker: Path) -> dict[str, Any]:
    """Append entries ``have .. size`` through the store, 50,000 per call; what was done."""
    import audit

    have = rt.audit.size()
    if marker.exists():
        built = json.loads(marker.read_text())
        if built.get("size", 0) >= size:
            print(f"reusing a log of {have:,} entries ({built['size']:,} built) in {marker.parent}")
            return dict(built)
    # The same store code on a connection that does not fsync: the rows are those of production.
    engine = sa.create_engine(f"sqlite:///{marker.parent / 'gateway.db'}", connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=OFF", "foreign_keys=ON", "cache_size=-262144"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    store = audit.SqlAuditStore(engine, rt.signer, max_batch=BUILD_BATCH)
    print(f"building a log of {size:,} entries ({BUILD_BATCH:,} per append) from {have:,} ...", flush=True)
    t0 = time.perf_counter()
    making = 0.0
    for start in range(have, size, BUILD_BATCH):
        m0 = time.perf_counter()
        batch = [work.entry(i) for i in range(start, min(start + BUILD_BATCH, size))]
        making += time.perf_counter() - m0
        store.append(batch)
        work.save()
        done = min(start + BUILD_BATCH, size)
        print(f"  {done:,} entries, {(done - have) / (time.perf_counter() - t0):,.0f} /s", flush=True)
    took = time.perf_counter() - t0
    store.checkpoint()
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    built = {
        "size": size,
        "seconds": round(took, 1),
        "makingSeconds": round(making, 1),
        "decisions": len(work.decisions),
        "how": f"SqlAuditStore.append, {BUILD_BATCH} entries per call, synchronous=OFF while building",
    }
    marker.write_text(json.dumps(built) + "\n")
    print(f"  built {size - have:,} entries in {took:.0f} s ({making:.0f} s making them)")
    return built


# -- measuring --------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


FIGURES: list[dict[str, Any]] = []


def figure(kind: str, path: str, times: list[float], baseline: list[float], baseline_what: str) -> None:
    med, high = statistics.median(times) * 1e3, p95(times) * 1e3
    base = statistics.median(baseline) * 1e3
    print(f"  {kind:<52} {path:<6} {med:9.2f} {high:9.2f} ms   baseline {base:7.2f} ms ({baseline_what})")
    FIGURES.append(
        {
            "kind": kind,
            "path": path,
            "queries": len(times),
            "medianMs": round(med, 3),
            "p95Ms": round(high, 3),
            "baselineMs": round(base, 3),
            "baselineWhat": baseline_what,
        }
    )


class Query:
    """One console search: the route's GET query or POST form, and the store filters it becomes."""

    def __init__(
        self,
        params: dict[str, str],
        store: dict[str, Any],
        *,
        bsn: str | None = None,
        cursor: int | None = None,
        decision: str = "",
    ) -> None:
        self.params, self.store, self.bsn, self.cursor, self.decision = params, store, bsn, cursor, decision


def local(t: dt.datetime) -> str:
    """A ``datetime-local`` form value (Amsterdam time), as the browser sends it."""
    from gateway.console.presenting import _amsterdam

    return t.astimezone(_amsterdam()).replace(tzinfo=None).isoformat(timespec="minutes")


def utc(text: str) -> str:
    from gateway.console.presenting import _amsterdam

    parsed = dt.datetime.fromisoformat(text).replace(tzinfo=_amsterdam()).astimezone(dt.UTC)
    return parsed.isoformat(timespec="microseconds").replace("+00:00", "Z")


def queries(
    work: Workload, n: int, officer: str | None, count: int, rng: random.Random
) -> Iterator[tuple[str, list[Query]]]:
    """Each query kind with ``count`` varied queries; ``officer`` is the agency a privacy officer sees."""
    cases = case_of(n - 1) + 1
    seen: dict[str, Any] = {} if officer is None else {"visible_to": officer}

    def some_case() -> int:
        while True:
            c = rng.randrange(cases)
            if officer is None or officer in work.parties(work.step(c)[2]):
                return c

    span = time_of(n) - START
    window = min(dt.timedelta(days=7), span / 20)

    def week() -> tuple[str, str]:
        begin = START + rng.random() * (span - window)
        return local(begin), local(begin + window)

    agencies = sorted(work.facts.agencies())
    purposes = sorted(work.facts.purposes())

    def deep() -> int:
        return rng.randrange(n // 2, n * 19 // 20)

    yield "first page, no filter", [Query({"cursor": "0"}, dict(seen), cursor=0) for _ in range(count)]
    yield (
        "page deep in (cursor 50-95%), no filter",
        [Query({"cursor": str(c)}, dict(seen), cursor=c) for c in (deep() for _ in range(count))],
    )
    yield (
        "by case id",
        [
            Query({"caseId": cid}, {"case_id": cid, **seen})
            for cid in (case_id(some_case()) for _ in range(count))
        ],
    )
    bsn_queries = []
    for _ in range(count):
        c = some_case()
        person = rng.choice(people(c))
        bsn_queries.append(Query({}, {"subject": work.pseudonym(person), **seen}, bsn=bsn_of(person)))
    yield "by BSN (pseudonym; POST, logged first)", bsn_queries
    picks = [rng.choice(agencies) for _ in range(count)]
    yield "by agency", [Query({"agency": a}, {"agency": a, **seen}) for a in picks]
    yield (
        "by agency, page deep in",
        [
            Query({"agency": a, "cursor": str(c)}, {"agency": a, **seen}, cursor=c)
            for a, c in ((a, deep()) for a in picks)
        ],
    )
    picks = [rng.choice(purposes) for _ in range(count)]
    yield "by purpose", [Query({"purpose": p}, {"purpose": p, **seen}) for p in picks]
    yield (
        "by purpose, page deep in",
        [
            Query({"purpose": p, "cursor": str(c)}, {"purpose": p, **seen}, cursor=c)
            for p, c in ((p, deep()) for p in picks)
        ],
    )
    picks = [rng.choice(work.types) for _ in range(count)]
    yield (
        "by information type",
        [Query({"informationType": t}, {"information_type": t, **seen}) for t in picks],
    )
    yield (
        "by information type + purpose",
        [
            Query({"informationType": t, "purpose": p}, {"information_type": t, "purpose": p, **seen})
            for t, p in zip(picks, (rng.choice(purposes) for _ in picks), strict=True)
        ],
    )
    weeks = [week() for _ in range(count)]
    yield (
        "by time range (a week)",
        [Query({"from": a, "to": b}, {"time_from": utc(a), "time_to": utc(b), **seen}) for a, b in weeks],
    )
    yield (
        "by time range + agency",
        [
            Query(
                {"from": a, "to": b, "agency": g},
                {"time_from": utc(a), "time_to": utc(b), "agency": g, **seen},
            )
            for (a, b), g in zip(weeks, (rng.choice(agencies) for _ in weeks), strict=True)
        ],
    )
    yield (
        "decision refused (no index: <= 5x50 read)",
        [Query({"decision": "geweigerd"}, dict(seen), decision="geweigerd") for _ in range(count)],
    )
    yield (
        "decision refused + agency",
        [
            Query({"decision": "geweigerd", "agency": g}, {"agency": g, **seen}, decision="geweigerd")
            for g in (rng.choice(agencies) for _ in range(count))
        ],
    )
    yield (
        "decision allowed, page deep in",
        [
            Query({"decision": "toegestaan", "cursor": str(c)}, dict(seen), cursor=c, decision="toegestaan")
            for c in (deep() for _ in range(count))
        ],
    )


def measure(rt: Any, work: Workload, n: int, count: int, rng: random.Random) -> None:
    """Both roles: an auditor (an om login) and a privacy officer of politie."""
    from gateway.app import create_app

    app = create_app(runtime=rt)
    for role, agency in (("auditor", "om"), ("privacy_officer", "politie")):
        measure_role(rt, app, work, n, count, rng, role, agency)


def measure_role(
    rt: Any, app: Any, work: Workload, n: int, count: int, rng: random.Random, role: str, agency: str
) -> None:
    from fastapi.testclient import TestClient

    from gateway.console import routes
    from gateway.console.sessions import mint_login_token

    officer = None if role == "auditor" else agency
    who = "auditor (sees all)" if officer is None else f"privacy officer of {officer}"
    browser = TestClient(app, base_url=BASE)
    token = mint_login_token(rt.db, agency, role, subject="bench")
    r = browser.get(f"/console/login?token={token}", follow_redirects=False)
    assert r.status_code == 303, r.text
    form = browser.get("/console/")
    assert form.status_code == 200
    csrf_found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf_found is not None
    csrf = csrf_found.group(1)
    print(f"\n{who}, {n:,} entries, pages of {routes.PAGE}; {count} varied queries per kind")
    print(f"  {'query kind':<52} {'path':<6} {'median':>9} {'p95':>9}")
    route_base = [timed(lambda: browser.get("/console/")) for _ in range(max(count, 30))]
    store_base = [timed(lambda: rt.audit.entry(rng.randrange(n))) for _ in range(max(count, 30) * 5)]

    def route(q: Query) -> None:
        if q.bsn is not None:
            got = browser.post("/console/zoeken", data={"csrf": csrf, "bsn": q.bsn, **q.params})
        else:
            got = browser.get("/console/", params=q.params)
        assert got.status_code == 200, (q.params, got.status_code, got.text[:300])

    def store(q: Query) -> list[Any]:
        if q.decision:
            return list(routes._scan(rt, q.store, q.cursor or 0, q.decision, None)[0])
        return list(rt.audit.search(q.store, limit=routes.PAGE, cursor=q.cursor)[0])

    for kind, batch in queries(work, n, officer, count, rng):
        label = f"{kind} [{'auditor' if officer is None else 'officer'}]"
        for q in batch[:3]:  # warm: the first of a kind reads its index pages from disk
            route(q)
        hits = [len(store(q)) for q in batch]
        via_route = [timed(functools.partial(route, q)) for q in batch]
        via_store = [timed(functools.partial(store, q)) for q in batch]
        figure(label, "route", via_route, route_base, "empty search form")
        figure(
            f"  (median {statistics.median(hits):.0f} hits a page)",
            "store",
            via_store,
            store_base,
            "PK SELECT",
        )
        FIGURES[-1]["kind"] = label
        FIGURES[-1]["medianHits"] = statistics.median(hits)


def save(settings: dict[str, Any], built: dict[str, Any], load_before: tuple[float, ...]) -> Path:
    now = dt.datetime.now(dt.UTC)
    description = describe(["sqlalchemy", "fastapi", "starlette", "jinja2"]) | {
        "sqlite": sqlite3.sqlite_version,
        "loadAverage": {"before": list(load_before), "after": list(os.getloadavg())},
    }
    document = {
        "bench": "console_search",
        "date": now.isoformat(timespec="seconds"),
        "database": "SQLite, WAL, synchronous=FULL (the gateway's settings)",
        "machine": description,
        "settings": settings,
        "build": built,
        "figures": FIGURES,
    }
    return write_results("console_search", document)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="entries in the log (default 1,000,000)")
    parser.add_argument("--dir", type=Path, help="data directory (default var/bench/console-<size>)")
    parser.add_argument("--queries", type=int, default=40, help="varied queries per kind (default 40)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/console_search-*")
    args = parser.parse_args()
    load_before = os.getloadavg()

    from connectors import simulated_connectors
    from gateway.runtime import Runtime
    from gateway.settings import Settings

    data_dir = args.dir or REPO_ROOT / "var" / "bench" / f"console-{args.size}"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    rt = Runtime(Settings(data_dir=data_dir), connectors=dict(simulated_connectors()))
    try:
        work = Workload(rt, data_dir / "decisions.json")
        built = build(rt, work, args.size, data_dir / "built.json")
        measure(rt, work, args.size, args.queries, random.Random(6962))
    finally:
        rt.close()
    if not args.no_save:
        settings = {"size": args.size, "queries": args.queries, "dataDir": str(data_dir)}
        print(f"\nresults: {save(settings, built, load_before)}")


if __name__ == "__main__":
    main()
