"""One transaction per exchange (issue 8, item 1): the database failing at each write of each exchange.

The faults are real database errors raised at the gateway's own connection, not a mock of a service:
an engine ``before_cursor_execute`` hook raises ``sqlite3.OperationalError`` (``disk I/O error`` or
``database or disk is full``, with SQLite's own error codes) when the chosen statement runs, and a
wrapped ``do_commit`` makes the COMMIT itself fail. SQLAlchemy wraps both as it wraps the driver's own
errors. A fault only fires in the exchange's own transaction, recognised by its first own statement
(``within``), so the reads and the other appends of the same request are untouched. On PostgreSQL the
hook instead swaps the statement for one the server fails with ``disk_full``, which aborts the
transaction as the real fault would.

For each write of each exchange (shares to one and to three recipients, a case opened, moved and a
track changed, an acknowledgement, a request's answer), over real HTTP: the answer is a 503
problem+json (never a 500, never a 200), nothing of the exchange was stored (no message, no case
change, no push, no new audit entry), the log verifies, and once the fault is gone the same request
succeeds and is stored exactly once. A caller whose writes fail does not harm another caller committed
in the same group-commit batch.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from audit import verify_log
from gateway.app import create_app
from gateway.models import Case
from tests.e2e.conftest import (
    AGENCIES,
    BSN_KIND,
    BSN_PLEGER,
    BSN_SLACHTOFFER,
    Gateway,
    fresh_pg_database,
    start_gateway,
)
from tests.live import serve

PROBLEM = "application/problem+json"
#: A hang guard for waits on other threads, not a measurement.
HANG_GUARD = 30.0

ERRORS = {
    "io": ("disk I/O error", sqlite3.SQLITE_IOERR, "SQLITE_IOERR"),
    "full": ("database or disk is full", sqlite3.SQLITE_FULL, "SQLITE_FULL"),
}
#: The same faults as PostgreSQL's own SQLSTATEs (condition names, for RAISE ... USING ERRCODE).
PG_ERRORS = {"io": ("io_error", psycopg.errors.IoError), "full": ("disk_full", psycopg.errors.DiskFull)}

COMMIT = "COMMIT"
INVOLVE = "UPDATE cases SET involved"
AUDIT_WRITES = (
    "INSERT INTO audit_entries",
    "INSERT INTO audit_entry_agencies",
    "INSERT INTO audit_entry_subjects",
    "INSERT INTO audit_nodes",
    COMMIT,
)


def db_error(kind: str, dialect: str = "sqlite") -> Exception:
    """The error the driver itself raises for ``kind``, with its error code (which `fault_kind` reads)."""
    message, code, name = ERRORS[kind]
    if dialect == "postgresql":
        return PG_ERRORS[kind][1](message)
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    error.sqlite_errorname = name
    return error


# -- fault injection at the connection -----------------------------------------------------------------

_TX = "test_atomic_tx"  # conn.info: the number of the connection's current transaction
_MARKS = "test_atomic_marks"  # conn.info: the rules whose ``within`` statement ran in it


def _mentions(parameters: Any, value: str) -> bool:
    return value in repr(parameters)


@dataclass(eq=False)
class Rule:
    """Fail ``target`` (a statement prefix, or COMMIT) in a transaction that ran ``within``.

    ``only`` restricts both statements to those whose parameters name that value (a case id);
    ``times`` bounds how often it fires (None: until removed). ``landed``: let the COMMIT happen, then
    report it failed (a connection lost during COMMIT). ``rolls_back``: the failed statement also ends
    the whole transaction, as SQLite may do on an I/O error or a full disk ("the transaction may or may
    not be rolled back automatically"). ``after_commit``: fire only once a transaction that ran
    ``within`` has committed (a read after the exchange's commit).
    """

    target: str
    within: str | None
    error: str
    only: str | None = None
    times: int | None = None
    landed: bool = False
    rolls_back: bool = False
    after_commit: bool = False
    fired: int = 0
    armed: bool = False

    def matches(self, prefix: str | None, statement: str, parameters: Any) -> bool:
        if prefix is None:
            return True
        return statement.startswith(prefix) and (self.only is None or _mentions(parameters, self.only))

    def spent(self) -> bool:
        return (self.times is not None and self.fired >= self.times) or (self.after_commit and not self.armed)


@dataclass(eq=False)
class Hold:
    """Stop the first statement matching ``prefix`` (and naming ``only``) until ``release`` is set."""

    prefix: str
    only: str
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class Faults:
    """Fault injection on one engine: statements through ``before_cursor_execute``, COMMIT via the dialect."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.rules: list[Rule] = []
        self.holds: list[Hold] = []
        self.statements: list[tuple[int, str, str]] = []  # (transaction, statement, parameters)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._real_commit = engine.dialect.do_commit
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._before, retval=True)
        engine.dialect.do_commit = self._commit  # type: ignore[method-assign]

    def fail(self, target: str, *, within: str | None, error: str = "io", **kw: Any) -> Rule:
        rule = Rule(target, within, error, **kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def hold(self, prefix: str, only: str) -> Hold:
        hold = Hold(prefix, only)
        with self._lock:
            self.holds.append(hold)
        return hold

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            for hold in self.holds:
                hold.release.set()
            self.holds.clear()

    def close(self) -> None:
        self.clear()
        event.remove(self.engine, "begin", self._begin)
        event.remove(self.engine, "before_cursor_execute", self._before)
        del self.engine.dialect.do_commit  # the instance attribute: the class's method shows again

    def transactions(self, prefix: str, value: str) -> set[int]:
        """The transactions in which a statement starting with ``prefix`` and naming ``value`` ran."""
        with self._lock:
            return {tx for tx, s, p in self.statements if s.startswith(prefix) and value in p}

    def _begin(self, conn: sa.Connection) -> None:
        conn.info[_TX] = next(self._numbers)
        conn.info[_MARKS] = set()

    def _before(
        self, conn: sa.Connection, cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> tuple[str, Any]:
        marks: set[int] = conn.info.setdefault(_MARKS, set())
        with self._lock:
            self.statements.append((conn.info.get(_TX, 0), statement, repr(parameters)))
            holds = [
                h for h in self.holds if statement.startswith(h.prefix) and _mentions(parameters, h.only)
            ]
            self.holds = [h for h in self.holds if h not in holds]
            firing = None
            for rule in self.rules:
                if rule.within is not None and rule.matches(rule.within, statement, parameters):
                    marks.add(id(rule))
                if (
                    firing is None
                    and rule.target != COMMIT
                    and not rule.spent()
                    and (rule.within is None or rule.after_commit or id(rule) in marks)
                    and rule.matches(rule.target, statement, parameters)
                ):
                    rule.fired += 1
                    firing = rule
        for hold in holds:
            hold.entered.set()
            assert hold.release.wait(HANG_GUARD), "a held statement was never released"
        if firing is None:
            return statement, parameters
        if conn.dialect.name == "postgresql":
            # The server itself fails the statement, and so aborts the transaction, as a full disk would.
            code = PG_ERRORS[firing.error][0]
            failing = f"DO $$ BEGIN RAISE EXCEPTION 'injected fault' USING ERRCODE = '{code}'; END $$"
            return failing, [{}] if many else {}
        if firing.rolls_back:
            cursor.connection.rollback()
        raise db_error(firing.error)

    def _commit(self, connection: Any) -> None:
        marks: set[int] = connection.info.get(_MARKS, set())
        with self._lock:
            firing = None
            for rule in self.rules:
                if rule.target == COMMIT and not rule.spent() and (rule.within is None or id(rule) in marks):
                    rule.fired += 1
                    firing = rule
                    break
        if firing is None:
            self._real_commit(connection)
            with self._lock:
                for rule in self.rules:
                    if rule.after_commit and id(rule) in marks:
                        rule.armed = True
            return
        if firing.landed:
            self._real_commit(connection)
        raise db_error(firing.error, self.engine.dialect.name)


# -- the gateway and its state ------------------------------------------------------------------------


class Agencies:
    """One HTTP client per agency system, each with a token that outlives the module."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._clients: dict[str, httpx.Client] = {}

    def __call__(self, agency: str) -> httpx.Client:
        if agency not in self._clients:
            self._clients[agency] = httpx.Client(
                base_url=self.gw.base,
                headers={"Authorization": f"Bearer {self.gw.token(f'{agency}-system')}"},
                timeout=HANG_GUARD,
            )
        return self._clients[agency]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


@dataclass
class World:
    gw: Gateway
    agency: Agencies

    @property
    def rt(self) -> Any:
        return self.gw.runtime


def make_world(data_dir: Path, **settings: Any) -> Iterator[World]:
    runtime, sock = start_gateway(data_dir, rate_limit="100000/second", access_token_ttl=3600, **settings)
    with serve(create_app(runtime=runtime), sock=sock) as base:
        gw = Gateway(base=base, runtime=runtime)
        for agency in AGENCIES:
            gw.register(f"{agency}-system", agency, "agency_system")
        agencies = Agencies(gw)
        yield World(gw, agencies)
        agencies.close()
        gw.http.close()
    runtime.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from make_world(tmp_path_factory.mktemp("atomic"))


@pytest.fixture(scope="module")
def pg_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with fresh_pg_database("vd_atomic") as (url, _admin, _name):
        yield from make_world(tmp_path_factory.mktemp("atomic-pg"), database_url=url)


@pytest.fixture()
def faults(world: World) -> Iterator[Faults]:
    f = Faults(world.rt.db)
    yield f
    f.close()


@pytest.fixture()
def pg_faults(pg_world: World) -> Iterator[Faults]:
    f = Faults(pg_world.rt.db)
    yield f
    f.close()


@dataclass(frozen=True)
class State:
    """Everything an exchange can change: the log's size, every row it writes, every push."""

    log: int
    rows: dict[str, list[tuple[Any, ...]]]
    pushed: dict[str, int]


def state(w: World) -> State:
    with w.rt.db.connect() as c:
        rows = {
            table: [tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
            for table in ("cases", "subjects", "messages")
        }
    pushed = {a: len(getattr(conn, "received", [])) for a, conn in w.rt.connectors.items()}
    return State(w.rt.audit.size(), rows, pushed)


def new_entries(w: World, since: int) -> list[dict[str, Any]]:
    return [e.entry for e in w.rt.audit.entries(since, w.rt.audit.size())]


def kinds(entries: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    return Counter((e["type"], e["action"], e["outcome"]) for e in entries)


def assert_verifies(w: World) -> None:
    result = verify_log(w.rt.audit, w.rt.audit.verifier_keys())
    assert result.ok, result.reason


def case_row(w: World, case_id: str) -> Any:
    with w.rt.db.connect() as c:
        return c.execute(sa.text("SELECT * FROM cases WHERE case_id = :id"), {"id": case_id}).mappings().one()


def involved(w: World, case_id: str) -> set[str]:
    with w.rt.db.connect() as c:
        return set(c.execute(sa.select(Case.involved).where(Case.case_id == case_id)).scalar_one())


def case_entries(w: World, case_id: str, action: str) -> list[dict[str, Any]]:
    return [e for e in new_entries(w, 0) if e.get("caseId") == case_id and e["action"] == action]


def messages_of(w: World, case_id: str) -> list[Any]:
    with w.rt.db.connect() as c:
        return list(
            c.execute(
                sa.text("SELECT message_id, share_id, recipient, acked_at FROM messages WHERE case_id = :id"),
                {"id": case_id},
            ).mappings()
        )


def open_case(w: World, flow: str = "acuut") -> str:
    subjects = [{"role": r, "bsn": b} for r, b in (("slachtoffer", BSN_SLACHTOFFER), ("kind", BSN_KIND))]
    r = w.agency("politie" if flow == "acuut" else "veilig_thuis").post(
        "/v1/cases", json={"flow": flow, "subjects": subjects}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["caseId"])


def move(w: World, case_id: str, step: str, by: str) -> None:
    r = w.agency(by).post(f"/v1/cases/{case_id}/transitions", json={"step": step})
    assert r.status_code == 200, r.text


def set_track(w: World, case_id: str, track: str, by: str) -> None:
    r = w.agency(by).put(f"/v1/cases/{case_id}/tracks/{track}", json={"open": True})
    assert r.status_code == 200, r.text


def share_body(recipients: list[str], information_type: str, purpose: str) -> dict[str, Any]:
    return {
        "informationType": information_type,
        "purpose": purpose,
        "recipients": recipients,
        "payload": {"aard": "fysiek geweld", "conclusie": "onveilig"},
    }


MELDING_TO_VT = share_body(["veilig_thuis"], "melding", "veiligheid_herstellen")
BEOORDELING_TO_3 = share_body(
    ["om", "reclassering", "rvdk"], "veiligheidsbeoordeling", "zorg_en_straf_afstemmen"
)


# -- the exchanges ------------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One prepared exchange: ``send`` makes the identical request each time it is called.

    ``before`` are the entries the request commits before its own transaction (a request's decision);
    ``own`` the entries of the exchange itself; ``stored`` checks, after a success, that the exchange
    is there exactly once.
    """

    send: Callable[[], httpx.Response]
    status: int
    own: Counter[tuple[str, str, str]]
    stored: Callable[[httpx.Response], None]
    before: Counter[tuple[str, str, str]] = field(default_factory=Counter)


def prepare_share(w: World, three: bool) -> Attempt:
    if three:
        # acuut/veiligheidsmaatregelen with both tracks open: all five agencies take part, and
        # veilig_thuis's assessment may go to om, reclassering and rvdk, who do not take part yet.
        case_id = open_case(w)
        for step in ("motorkapoverleg", "onderzoek", "veiligheidsmaatregelen"):
            move(w, case_id, step, by="politie")
        set_track(w, case_id, "zorg", by="veilig_thuis")
        set_track(w, case_id, "straf", by="politie")
        sender, body = "veilig_thuis", BEOORDELING_TO_3
    else:
        case_id = open_case(w)
        sender, body = "politie", MELDING_TO_VT
    recipients = list(body["recipients"])
    assert not involved(w, case_id) & set(recipients), "the share must add to the case's involvement"

    def stored(r: httpx.Response) -> None:
        results = r.json()["results"]
        assert [x["allowed"] for x in results] == [True] * len(recipients), results
        sent = {x["messageId"]: x["recipient"] for x in results}
        rows = messages_of(w, case_id)
        assert {m["message_id"]: m["recipient"] for m in rows} == sent  # once each, nothing of the failure
        assert {m["share_id"] for m in rows} == {r.json()["shareId"]}
        assert involved(w, case_id) >= {sender, *recipients}
        for message_id, recipient in sent.items():
            pushes = [d for d in w.rt.connectors[recipient].received if d.message_id == message_id]
            assert len(pushes) == 1
            assert not [
                d for d in w.rt.connectors[recipient].received if d.case_id == case_id and d not in pushes
            ]

    return Attempt(
        send=lambda: w.agency(sender).post(f"/v1/cases/{case_id}/shares", json=body),
        status=200,
        # Each push's outcome is an entry of its own, after the share's transaction.
        own=Counter(
            {
                ("exchange", "share", "authorised"): len(recipients),
                ("delivery", "push", "delivered"): len(recipients),
            }
        ),
        stored=stored,
    )


def prepare_open(w: World) -> Attempt:
    subjects = [{"role": "slachtoffer", "bsn": BSN_SLACHTOFFER}, {"role": "pleger", "bsn": BSN_PLEGER}]
    body = {"flow": "acuut", "subjects": subjects}
    open_case(w)  # so that there is a case to read when the log's parity needs a padding entry
    with w.rt.db.connect() as c:
        known = set(c.execute(sa.text("SELECT case_id FROM cases")).scalars())

    def stored(r: httpx.Response) -> None:
        case_id = r.json()["caseId"]
        with w.rt.db.connect() as c:
            now = set(c.execute(sa.text("SELECT case_id FROM cases")).scalars())
            subject_rows = c.execute(
                sa.text("SELECT count(*) FROM subjects WHERE case_id = :id"), {"id": case_id}
            ).scalar()
        assert now - known == {case_id}  # one case, once
        assert subject_rows == 2

    return Attempt(
        send=lambda: w.agency("politie").post("/v1/cases", json=body),
        status=201,
        own=Counter({("case", "case.open", "opened"): 1}),
        stored=stored,
    )


def prepare_transition(w: World) -> Attempt:
    case_id = open_case(w)
    assert "veilig_thuis" not in involved(w, case_id)

    def stored(r: httpx.Response) -> None:
        row = case_row(w, case_id)
        assert (row["flow"], row["step"]) == ("acuut", "motorkapoverleg")
        assert "veilig_thuis" in involved(w, case_id)

    return Attempt(
        send=lambda: w.agency("veilig_thuis").post(
            f"/v1/cases/{case_id}/transitions", json={"step": "motorkapoverleg"}
        ),
        status=200,
        own=Counter({("case", "case.transition", "moved"): 1}),
        stored=stored,
    )


def prepare_track(w: World) -> Attempt:
    case_id = open_case(w)
    assert "veilig_thuis" not in involved(w, case_id)

    def stored(r: httpx.Response) -> None:
        assert bool(case_row(w, case_id)["zorg"]) is True
        assert "veilig_thuis" in involved(w, case_id)

    return Attempt(
        send=lambda: w.agency("veilig_thuis").put(f"/v1/cases/{case_id}/tracks/zorg", json={"open": True}),
        status=200,
        own=Counter({("case", "case.track", "opened"): 1}),
        stored=stored,
    )


def prepare_ack(w: World) -> Attempt:
    case_id = open_case(w)
    r = w.agency("politie").post(f"/v1/cases/{case_id}/shares", json=MELDING_TO_VT)
    assert r.status_code == 200, r.text
    message_id = r.json()["results"][0]["messageId"]

    def stored(r: httpx.Response) -> None:
        [row] = messages_of(w, case_id)
        assert row["acked_at"] is not None
        inbox = w.agency("veilig_thuis").get("/v1/inbox").json()["messages"]
        assert message_id not in {m["messageId"] for m in inbox}

    return Attempt(
        send=lambda: w.agency("veilig_thuis").post(f"/v1/inbox/{message_id}/ack"),
        status=204,
        own=Counter({("delivery", "ack", "acknowledged"): 1}),
        stored=stored,
    )


def prepare_request(w: World) -> Attempt:
    case_id = open_case(w, flow="structureel")
    move(w, case_id, "informatie_combineren", by="veilig_thuis")
    assert "politie" not in involved(w, case_id)
    body = {
        "informationType": "strafrechtelijke_informatie",
        "purpose": "veiligheid_beoordelen",
        "holder": "politie",
    }

    def stored(r: httpx.Response) -> None:
        assert r.json()["data"]
        assert involved(w, case_id) >= {"veilig_thuis", "politie"}

    return Attempt(
        send=lambda: w.agency("veilig_thuis").post(f"/v1/cases/{case_id}/requests", json=body),
        status=200,
        own=Counter({("exchange", "request", "answered"): 1}),
        stored=stored,
        # The decision is committed before the holder is asked; the answer is the exchange.
        before=Counter({("decision", "request", "authorised"): 1}),
    )


@dataclass(frozen=True)
class Exchange:
    name: str
    prepare: Callable[[World], Attempt]
    within: str  # the exchange's first own statement: it marks the exchange's transaction
    writes: tuple[str, ...]  # the exchange's own statements; then the audit log's
    audit: tuple[str, ...] = AUDIT_WRITES


EXCHANGES = [
    Exchange(
        "share-to-1",
        lambda w: prepare_share(w, three=False),
        "INSERT INTO messages",
        ("INSERT INTO messages", INVOLVE),
    ),
    Exchange(
        "share-to-3",
        lambda w: prepare_share(w, three=True),
        "INSERT INTO messages",
        ("INSERT INTO messages", INVOLVE),
    ),
    Exchange("case-open", prepare_open, "INSERT INTO cases", ("INSERT INTO cases", "INSERT INTO subjects")),
    Exchange(
        "case-transition",
        prepare_transition,
        "UPDATE cases SET flow",
        ("UPDATE cases SET flow", INVOLVE),
    ),
    Exchange("case-track", prepare_track, "UPDATE cases SET zorg", ("UPDATE cases SET zorg", INVOLVE)),
    # An acknowledgement names the message, not the people: its entry has no subject rows.
    Exchange(
        "ack",
        prepare_ack,
        "UPDATE messages SET acked_at",
        ("UPDATE messages SET acked_at",),
        tuple(a for a in AUDIT_WRITES if a != "INSERT INTO audit_entry_subjects"),
    ),
    Exchange("request-answer", prepare_request, "SELECT cases.involved", (INVOLVE,)),
]
BY_NAME = {e.name: e for e in EXCHANGES}
# Each write with one of the two faults, in turn: every exchange meets both, at half the runs.
WRITES = [
    (e.name, write, ("io", "full")[i % 2]) for e in EXCHANGES for i, write in enumerate((*e.writes, *e.audit))
]


def pad_for_nodes(w: World, attempt: Attempt) -> None:
    """Make the log's size such that the exchange's own append stores tree nodes.

    A leaf stores nodes only when it makes the size even; an exchange of one entry must start at an
    odd size. One case read (an audit entry of its own) fixes the parity.
    """
    start = w.rt.audit.size() + sum(attempt.before.values())
    # The pushes' outcomes are logged after the exchange's transaction: not part of its append.
    own = sum(n for (type_, action, _), n in attempt.own.items() if (type_, action) != ("delivery", "push"))
    if own == 1 and start % 2 == 0:
        with w.rt.db.connect() as c:
            pad = c.execute(sa.select(Case.case_id).where(Case.opened_by == "politie")).scalars().first()
        if pad is None:
            open_case(w)  # one entry: case.open
        else:
            assert w.agency("politie").get(f"/v1/cases/{pad}").status_code == 200  # one entry: case.read
    assert (w.rt.audit.size() + sum(attempt.before.values())) % 2 == 1 or own > 1


def assert_problem_503(r: httpx.Response, error: str = "io") -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["fault"] == {"io": "unavailable", "full": "full"}[error]
    assert r.headers.get("retry-after", "").isdigit()
    text = r.text
    assert "INSERT" not in text and "UPDATE" not in text and "audit_entries" not in text  # no statement


@pytest.mark.parametrize(("exchange", "write", "error"), WRITES, ids=[f"{n}:{w}:{e}" for n, w, e in WRITES])
def test_a_failed_write_stores_nothing_and_the_retry_stores_it_once(
    world: World, faults: Faults, exchange: str, write: str, error: str
) -> None:
    failed_then_retried(world, faults, BY_NAME[exchange], write, error)


# On PostgreSQL the audit rows go in by COPY, beside the statements an engine hook sees: the faults are
# the exchange's own statements, failed by the server itself (which aborts the transaction), and COMMIT.
PG_WRITES = [(e.name, write) for e in EXCHANGES for write in (*e.writes, COMMIT)]


@pytest.mark.parametrize(("exchange", "write"), PG_WRITES, ids=[f"{n}:{w}" for n, w in PG_WRITES])
def test_on_postgresql_a_failed_write_stores_nothing_and_the_retry_stores_it_once(
    pg_world: World, pg_faults: Faults, exchange: str, write: str
) -> None:
    failed_then_retried(pg_world, pg_faults, BY_NAME[exchange], write, "full")


def failed_then_retried(world: World, faults: Faults, ex: Exchange, write: str, error: str) -> None:
    """``write`` fails in ``ex``'s transaction: 503 and nothing stored; without the fault, stored once."""
    exchange = ex.name
    attempt = ex.prepare(world)
    pad_for_nodes(world, attempt)
    before = state(world)

    rule = faults.fail(write, within=ex.within, error=error)
    r = attempt.send()
    assert rule.fired >= 1, f"{write} never ran in the {exchange} transaction"
    assert_problem_503(r, error)
    after = state(world)
    assert kinds(new_entries(world, before.log)) == attempt.before  # nothing of the exchange logged
    assert after.rows == before.rows  # no message, no acknowledgement, no case change, no involvement
    assert after.pushed == before.pushed  # nothing delivered
    assert_verifies(world)

    faults.clear()
    since = world.rt.audit.size()
    r = attempt.send()
    assert r.status_code == attempt.status, r.text
    assert kinds(new_entries(world, since)) == attempt.before + attempt.own
    attempt.stored(r)
    assert_verifies(world)


@pytest.mark.parametrize("exchange", [e.name for e in EXCHANGES])
def test_a_commit_that_landed_but_reported_failure_counts_once(
    world: World, faults: Faults, exchange: str
) -> None:
    """A COMMIT that went through and then failed (a connection lost during it): a success, stored once."""
    ex = BY_NAME[exchange]
    attempt = ex.prepare(world)
    since = world.rt.audit.size()
    rule = faults.fail(COMMIT, within=ex.within, landed=True)
    r = attempt.send()
    assert rule.fired == 1
    assert r.status_code == attempt.status, r.text
    assert kinds(new_entries(world, since)) == attempt.before + attempt.own
    attempt.stored(r)
    assert_verifies(world)


def test_a_case_whose_read_back_fails_after_its_commit_is_answered_opened_once(
    world: World, faults: Faults
) -> None:
    """The case and its entry are committed; reading it back then fails: still 201, not 503.

    A 503 would tell the opener that nothing happened, and its retry would open the case twice.
    """
    attempt = prepare_open(world)
    since = world.rt.audit.size()
    faults.fail("SELECT cases.case_id", within="INSERT INTO cases", after_commit=True)
    r = attempt.send()
    assert r.status_code == 201, r.text
    assert kinds(new_entries(world, since)) == attempt.own
    attempt.stored(r)
    body = r.json()
    assert (body["flow"], body["step"], body["openedBy"]) == ("acuut", "fysieke_veiligheid", "politie")
    assert [s["role"] for s in body["subjects"]] == ["slachtoffer", "pleger"]
    faults.clear()
    assert world.agency("politie").get(f"/v1/cases/{body['caseId']}").json() == body


@pytest.mark.parametrize(
    ("exchange", "within"),
    [("case-transition", "UPDATE cases SET flow"), ("case-track", "UPDATE cases SET zorg")],
)
def test_a_case_change_whose_read_back_fails_after_its_commit_is_answered_done(
    world: World, faults: Faults, exchange: str, within: str
) -> None:
    """The change and its entry are committed; reading the case back then fails: 200, not a 503."""
    attempt = BY_NAME[exchange].prepare(world)
    since = world.rt.audit.size()
    faults.fail("SELECT cases.case_id", within=within, after_commit=True)
    r = attempt.send()
    assert r.status_code == 200, r.text
    assert kinds(new_entries(world, since)) == attempt.own
    attempt.stored(r)
    faults.clear()
    assert world.agency("veilig_thuis").get(f"/v1/cases/{r.json()['caseId']}").json() == r.json()


# -- callers in one group-commit batch ----------------------------------------------------------------


def queued(w: World) -> int:
    """How many appends wait in the audit log's group-commit queue (white box: to build a batch)."""
    return len(w.rt.audit._group.queue)


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.005)


def share_in(w: World, case_id: str) -> httpx.Response:
    return w.agency("politie").post(f"/v1/cases/{case_id}/shares", json=MELDING_TO_VT)


def batch_of_two(w: World, faults: Faults, first: str, second: str) -> tuple[httpx.Response, httpx.Response]:
    """Share in ``first`` and ``second`` committed in one batch: both queued behind a held leader."""
    lead_case = open_case(w)
    hold = faults.hold("INSERT INTO messages", only=lead_case)
    with ThreadPoolExecutor(3) as pool:
        lead = pool.submit(share_in, w, lead_case)
        assert hold.entered.wait(HANG_GUARD)
        a = pool.submit(share_in, w, first)
        b = pool.submit(share_in, w, second)
        wait_for(lambda: queued(w) == 2)
        hold.release.set()
        assert lead.result().status_code == 200
        return a.result(), b.result()


@pytest.mark.parametrize("rolls_back", [False, True], ids=["statement-fails", "transaction-rolled-back"])
def test_a_callers_failing_write_does_not_harm_another_in_the_same_batch(
    world: World, faults: Faults, rolls_back: bool
) -> None:
    """One caller's message insert fails in a batch of two: that caller gets 503, the other is stored.

    When the failure also ended the whole transaction (SQLite may do so on an I/O error), the savepoint
    cannot save the batch: it fails as a whole and each caller is retried alone.
    """
    failing_caller_in_a_batch(world, faults, rolls_back)


def test_on_postgresql_a_callers_failing_write_does_not_harm_another_in_the_same_batch(
    pg_world: World, pg_faults: Faults
) -> None:
    """The server fails one caller's insert (aborting the transaction); its savepoint saves the batch."""
    failing_caller_in_a_batch(pg_world, pg_faults, rolls_back=False)


def failing_caller_in_a_batch(world: World, faults: Faults, rolls_back: bool) -> None:
    failing_case, ok_case = open_case(world), open_case(world)
    before = state(world)
    rule = faults.fail(
        "INSERT INTO messages", within="INSERT INTO messages", only=failing_case, rolls_back=rolls_back
    )
    failed, ok = batch_of_two(world, faults, failing_case, ok_case)

    if rolls_back:
        assert rule.fired == 2  # in the batch, which then failed as a whole, and again alone
    else:
        assert rule.fired == 1
        # Both callers' writes ran in one transaction: the batch, not one transaction after the other.
        assert faults.transactions("INSERT INTO messages", failing_case) == faults.transactions(
            "INSERT INTO messages", ok_case
        )
    assert_problem_503(failed)
    assert messages_of(world, failing_case) == []
    assert involved(world, failing_case) == {"politie"}
    assert ok.status_code == 200, ok.text
    [message] = messages_of(world, ok_case)
    assert message["message_id"] == ok.json()["results"][0]["messageId"]
    assert involved(world, ok_case) == {"politie", "veilig_thuis"}
    logged = new_entries(world, before.log)
    assert not [e for e in logged if e.get("caseId") == failing_case]
    shared = [e for e in logged if e.get("caseId") == ok_case and e["action"] == "share"]
    assert [e["refs"]["messageId"] for e in shared] == [message["message_id"]]
    assert_verifies(world)


def test_a_batch_that_fails_once_as_a_whole_stores_each_caller_once(world: World, faults: Faults) -> None:
    """The batch's insert of entries fails once: each caller is retried alone and stored exactly once."""
    first, second = open_case(world), open_case(world)
    rule = faults.fail("INSERT INTO audit_entries", within="INSERT INTO messages", only=first, times=1)
    a, b = batch_of_two(world, faults, first, second)

    assert rule.fired == 1
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    for case_id, r in ((first, a), (second, b)):
        [message] = messages_of(world, case_id)
        assert message["message_id"] == r.json()["results"][0]["messageId"]
        assert [e["refs"]["messageId"] for e in case_entries(world, case_id, "share")] == [
            message["message_id"]
        ]
    assert_verifies(world)


def test_a_failed_push_that_cannot_be_logged_leaves_the_committed_share_answered(
    world: World, faults: Faults
) -> None:
    """The share committed; its push fails and so does the push_failed entry: still the share's 200.

    A 503 here would tell a retrying sender that nothing happened while the message is stored and in
    the inbox: the retry would deliver it twice.
    """
    case_id = open_case(world)
    vt = world.rt.connectors["veilig_thuis"]
    rule = faults.fail("INSERT INTO audit_entries", within=None, only="push_failed")
    vt.set_down(True)
    try:
        r = share_in(world, case_id)
    finally:
        vt.set_down(False)
    assert rule.fired == 1
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert (result["allowed"], result["delivered"]) == (True, False)
    [message] = messages_of(world, case_id)
    assert message["message_id"] == result["messageId"]
    inbox = world.agency("veilig_thuis").get("/v1/inbox").json()["messages"]
    assert result["messageId"] in {m["messageId"] for m in inbox}  # it waits there
    assert [e["outcome"] for e in case_entries(world, case_id, "share")] == ["authorised"]
    assert_verifies(world)
