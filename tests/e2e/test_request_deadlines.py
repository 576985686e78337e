"""Requests with deadlines (issue 9, item 5): a holder's system that times out or fails, over real HTTP.

The holders are stand-in agency servers (``standins.agency``) under uvicorn, reached by the gateway's
``HttpConnector``. In front of politie's fetch endpoint sits a switch that makes it hang (until the test
releases it, well past the connector's deadline), answer 500, answer something that is not a fetch
result, or refuse; an unreachable holder is a connector aimed at a port nothing listens on.

Each failure is a problem+json (504 for the deadline, 502 for the rest) naming the holder and the kind
of failure, audited as ``holder_timeout`` / ``holder_failed`` with that kind in ``refs.error`` after the
``authorised`` decision, and with no data at all: not in the answer, the entry or anything the holder
said (its marker appears nowhere).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from connectors import Connector, HttpConnector, SimulatedAgencySystem
from connectors._wire import FETCH_PATH
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from standins.agency import make_agency_app
from tests.e2e.conftest import AGENCIES, Gateway
from tests.live import free_port, reserve_socket, serve

PROBLEM = "application/problem+json"
#: The connector's deadline in these tests: short, since the hanging holder costs exactly this long.
DEADLINE = 0.5
#: A hang guard (how long a held fetch may wait for its release), not a measurement.
HANG_GUARD = 30.0
MARKER = "MARKER-holder-said-this"
REQUEST = {
    "informationType": "strafrechtelijke_informatie",
    "purpose": "veiligheid_beoordelen",
    "holder": "politie",
}

ASGIApp = Any


@dataclass
class Switch:
    """What politie's fetch endpoint does: ``None`` answers normally; else ``hang``, ``500``, ``garbage``,
    ``refuse``. A hanging fetch waits for ``release`` (set when the test ends)."""

    mode: str | None = None
    release: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)


def switched(app: ASGIApp, switch: Switch) -> ASGIApp:
    """``app`` with ``switch`` in front of its fetch endpoint."""

    async def answer(send: Any, status: int, body: dict[str, Any], media: str = "application/json") -> None:
        raw = json.dumps(body).encode()
        headers = [(b"content-type", media.encode()), (b"content-length", str(len(raw)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        mode = switch.mode
        if scope["type"] != "http" or scope["path"] != FETCH_PATH or mode is None:
            await app(scope, receive, send)
            return
        switch.entered.set()
        if mode == "hang":
            await asyncio.to_thread(switch.release.wait, HANG_GUARD)
            await answer(send, 200, {"found": True, "data": {"aard": MARKER}})
        elif mode == "500":
            await answer(send, 500, {"detail": MARKER}, "application/problem+json")
        elif mode == "garbage":  # a 200 that is not a fetch result, with data in it all the same
            await answer(send, 200, {"found": "perhaps", "data": {"aard": MARKER}})
        elif mode == "refuse":
            await answer(send, 403, {"title": "Refused", "status": 403, "detail": MARKER}, PROBLEM)
        else:
            raise AssertionError(f"unknown mode {mode!r}")

    return wrapped


@dataclass
class World:
    gw: Gateway
    systems: dict[str, SimulatedAgencySystem]
    switch: Switch
    urls: dict[str, str]

    @property
    def rt(self) -> Runtime:
        return self.gw.runtime


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    systems = {a: SimulatedAgencySystem(a) for a in AGENCIES}
    switch = Switch()
    with ExitStack() as stack:
        apps = {a: make_agency_app(s) for a, s in systems.items()}
        apps["politie"] = switched(apps["politie"], switch)
        urls = {a: stack.enter_context(serve(app)) for a, app in apps.items()}
        connectors: dict[str, Connector] = {a: HttpConnector(a, u, timeout=DEADLINE) for a, u in urls.items()}
        sock = reserve_socket()
        settings = Settings(
            data_dir=tmp_path_factory.mktemp("deadlines"),
            port=sock.getsockname()[1],
            rate_limit="100000/second",
            access_token_ttl=3600,
        )
        runtime = Runtime(settings, connectors=connectors)
        stack.callback(runtime.close)
        base = stack.enter_context(serve(create_app(runtime=runtime), sock=sock))
        gw = Gateway(base=base, runtime=runtime)
        gw.register("politie-system", "politie", "agency_system")
        gw.register("veilig_thuis-system", "veilig_thuis", "agency_system")
        yield World(gw, systems, switch, urls)
        gw.http.close()


@pytest.fixture()
def case_id(world: World) -> Iterator[str]:
    """A structural case at information gathering, whose politie record carries the marker everywhere."""
    case = world.gw.open_case(flow="structureel")
    world.gw.move(case, "informatie_combineren")
    [stock] = world.systems["politie"].records("strafrechtelijke_informatie")[:1]
    world.systems["politie"].put_record(case, "strafrechtelijke_informatie", dict.fromkeys(stock, MARKER))
    yield case
    world.switch.mode = None
    world.switch.release.set()  # a held fetch ends now, not when the server is stopped


def ask(world: World, case_id: str) -> httpx.Response:
    with world.gw.agency("veilig_thuis") as vt:
        return vt.post(f"/v1/cases/{case_id}/requests", json=REQUEST)


def request_entries(world: World, case_id: str) -> list[dict[str, Any]]:
    audit = world.rt.audit
    entries = [e.entry for e in audit.entries(0, audit.size())]
    return [e for e in entries if e.get("caseId") == case_id and e["action"] == "request"]


def assert_failed(
    world: World, case_id: str, r: httpx.Response, status: int, outcome: str, error: str
) -> None:
    """``r`` is the problem of a failed holder, audited after the decision, with no data anywhere."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["status"] == status
    assert problem["type"].endswith("/upstream-timeout" if status == 504 else "/upstream-failed")
    assert (problem["holder"], problem["error"]) == ("politie", error)
    assert "data" not in problem and "fields" not in problem
    assert MARKER not in r.text
    decision, failure = request_entries(world, case_id)
    assert (decision["type"], decision["outcome"]) == ("decision", "authorised")
    assert (failure["type"], failure["outcome"], failure["status"]) == ("exchange", outcome, "error")
    assert failure["refs"] == {"requestId": decision["refs"]["requestId"], "error": error}
    assert failure["counterpart"] == "politie"
    assert "payloadDigest" not in failure  # nothing went out
    assert MARKER not in json.dumps(failure)


def test_a_holder_past_the_deadline_is_a_504_audited_as_holder_timeout(world: World, case_id: str) -> None:
    world.switch.mode = "hang"
    r = ask(world, case_id)
    assert world.switch.entered.is_set()
    assert_failed(world, case_id, r, 504, "holder_timeout", "timeout")
    assert r.headers["retry-after"].isdigit()


@pytest.mark.parametrize(
    ("mode", "error"), [("500", "unavailable"), ("garbage", "unavailable"), ("refuse", "refused")]
)
def test_a_holder_that_fails_is_a_502_audited_as_holder_failed(
    world: World, case_id: str, mode: str, error: str
) -> None:
    world.switch.mode = mode
    r = ask(world, case_id)
    assert_failed(world, case_id, r, 502, "holder_failed", error)
    # Trying later may help a system that is down, not one that refused.
    assert ("retry-after" in r.headers) is (error != "refused")


def test_an_unreachable_holder_is_a_502_audited_as_holder_failed(world: World, case_id: str) -> None:
    connectors = world.rt.connectors
    reachable = connectors["politie"]
    connectors["politie"] = HttpConnector(
        "politie", f"http://127.0.0.1:{free_port()}", timeout=DEADLINE, retry_pause=0.01
    )
    try:
        r = ask(world, case_id)
    finally:
        connectors["politie"] = reachable
    assert_failed(world, case_id, r, 502, "holder_failed", "unreachable")


def test_once_the_holder_answers_again_the_request_is_answered(world: World, case_id: str) -> None:
    world.switch.mode = "500"
    assert ask(world, case_id).status_code == 502
    world.switch.mode = None
    r = ask(world, case_id)
    assert r.status_code == 200, r.text
    assert r.json()["data"] and set(r.json()["data"].values()) == {MARKER}
    outcomes = [(e["type"], e["outcome"]) for e in request_entries(world, case_id)]
    assert outcomes == [
        ("decision", "authorised"),
        ("exchange", "holder_failed"),
        ("decision", "authorised"),
        ("exchange", "answered"),
    ]
