"""A simulated agency system over HTTP: the far end of ``HttpConnector``, per ``docs/agency-api.yaml``.

Built on the receiver library (``connectors.receiver``) that a real agency system can use too: it
verifies each request's signature against the gateway's JWKS, stores each delivery once per message id
(in its own SQLite file, so a restart keeps them), and answers fetches from the simulated records
(``connectors.simulated``). ``gateway sim-agency --agency om --port N`` runs one.

For tests and demos it can be told to misbehave, at start (``--behaviour slow=0.5``) or at run time
(``POST /sim/behaviour``, from loopback only):

- ``slow=S``: wait S seconds before answering anything;
- ``fail=N``: answer the next N deliveries 503 without storing them (``-1``: until told otherwise);
- ``fail-after-store=N``: store the next N new deliveries, then answer 500, so that the gateway tries
  again and the same message is answered twice (the second time as a duplicate, kept once);
- ``timeout-after-store=N``: store the next N new deliveries, then hold the answer ``hang`` seconds
  (default 30), past the gateway's timeout;
- ``down=true``: the system is down (health 503, every call 503).

``GET /sim/received`` (loopback only too) lists the stored message ids with how many times each was
delivered.
Errors are RFC 9457 problem documents that never echo the request body back: it holds case data.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors._wire import DELIVERIES_PATH, FETCH_PATH, HEALTH_PATH, delivery_from, fetch_from, result_json
from connectors.base import ConnectorRejected, ConnectorUnavailable
from connectors.receiver import AcceptUnsigned, Answer, DeliveryReceiver, MessageStore
from connectors.simulated import SimulatedAgencySystem

BEHAVIOUR_PATH = "/sim/behaviour"
RECEIVED_PATH = "/sim/received"


@dataclass
class Behaviour:
    """How the simulated system misbehaves now (see the module's docstring)."""

    slow: float = 0.0
    fail: int = 0
    fail_after_store: int = 0
    timeout_after_store: int = 0
    hang: float = 30.0
    down: bool = False

    @classmethod
    def parse(cls, specs: list[str]) -> Behaviour:
        """``["slow=0.5", "fail=2"]`` -> a behaviour; ``ValueError`` naming a bad one."""
        b = cls()
        for spec in specs:
            name, _, value = spec.partition("=")
            b.update({name.strip().replace("-", "_"): value.strip() or "1"})
        return b

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` (snake_case or camelCase names); ``ValueError`` for an unknown or bad one."""
        known = {f.name: f.type for f in fields(self)}
        for raw, value in changes.items():
            name = "".join("_" + c.lower() if c.isupper() else c for c in raw)
            if name not in known:
                raise ValueError(f"unknown behaviour {raw!r}; expected one of {', '.join(known)}")
            try:
                if name == "down":
                    parsed: Any = (
                        value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
                    )
                elif name in ("slow", "hang"):
                    parsed = float(value)
                    if not 0 <= parsed <= 600:
                        raise ValueError
                else:
                    parsed = int(value)
                    if parsed < -1:
                        raise ValueError
            except (TypeError, ValueError):
                raise ValueError(f"behaviour {raw!r}: not a valid value") from None
            setattr(self, name, parsed)


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _respond(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, media_type=answer.media_type)


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SimulatedAgencyServer:
    """One agency's system: the receiver library over a simulated back office, with behaviours."""

    def __init__(
        self,
        system: SimulatedAgencySystem,
        receiver: DeliveryReceiver | None = None,
        behaviour: Behaviour | None = None,
    ) -> None:
        self.system = system
        # UNSAFE default for tests that exercise something else than signatures; sim-agency always
        # passes a receiver that verifies against the gateway's JWKS.
        self.receiver = receiver or DeliveryReceiver(
            AcceptUnsigned(), MessageStore(":memory:"), system.agency
        )
        self.behaviour = behaviour or Behaviour()
        self._lock = threading.Lock()
        self.fetches = 0

    def _take(self, counter: str) -> bool:
        with self._lock:
            left = getattr(self.behaviour, counter)
            if left == 0:
                return False
            if left > 0:
                setattr(self.behaviour, counter, left - 1)
            return True

    async def deliveries(self, request: Request) -> Response:
        body = await request.body()
        if self.behaviour.slow:
            await asyncio.sleep(self.behaviour.slow)
        if self.behaviour.down or not self.system.health():
            return _problem(503, "Unavailable", "system is down (simulated)")
        if self._take("fail"):
            return _problem(503, "Unavailable", "failing on purpose (simulated)")
        answer = await asyncio.to_thread(
            self.receiver.receive, request.method, str(request.url), request.headers.items(), body
        )
        if answer.delivery is not None:
            try:
                self.system.deliver(delivery_from(answer.delivery, request.headers.get("traceparent")))
            except ConnectorRejected as e:
                return _problem(422, "Refused", e.detail)
        if answer.stored and self._take("fail_after_store"):
            return _problem(500, "Internal error", "stored, then failed on purpose (simulated)")
        if answer.stored and self._take("timeout_after_store"):
            await asyncio.sleep(self.behaviour.hang)
        return _respond(answer)

    async def fetch(self, request: Request) -> Response:
        body = await request.body()
        if self.behaviour.slow:
            await asyncio.sleep(self.behaviour.slow)
        if self.behaviour.down:
            return _problem(503, "Unavailable", "system is down (simulated)")
        answer = await asyncio.to_thread(
            self.receiver.check_fetch, request.method, str(request.url), request.headers.items(), body
        )
        if answer.fetch is None:
            return _respond(answer)
        try:
            result = self.system.fetch(fetch_from(answer.fetch, request.headers.get("traceparent")))
        except ConnectorUnavailable as e:
            return _problem(503, "Unavailable", e.detail)
        except ConnectorRejected as e:
            return _problem(422, "Refused", e.detail)
        with self._lock:
            self.fetches += 1
        return JSONResponse(result_json(result))

    async def health(self, _request: Request) -> Response:
        up = self.system.health() and not self.behaviour.down
        return JSONResponse(
            {"agency": self.system.agency, "status": "up" if up else "down"}, 200 if up else 503
        )

    async def set_behaviour(self, request: Request) -> Response:
        if not _loopback(request):
            return _problem(403, "Forbidden", "behaviour can be changed from loopback only")
        try:
            try:
                changes = await request.json()
            except ValueError:
                raise ValueError("the body is not JSON") from None
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            with self._lock:
                self.behaviour.update(changes)
        except ValueError as e:
            return _problem(400, "Invalid input", str(e))
        if "down" in changes:
            self.system.set_down(self.behaviour.down)
        return JSONResponse(asdict(self.behaviour))

    async def received(self, request: Request) -> Response:
        if not _loopback(request):
            return _problem(403, "Forbidden", "the received messages can be listed from loopback only")
        messages = [{"messageId": m, "times": t} for m, t in self.receiver.store.received()]
        return JSONResponse({"agency": self.system.agency, "messages": messages, "fetches": self.fetches})

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route(DELIVERIES_PATH, self.deliveries, methods=["POST"]),
                Route(FETCH_PATH, self.fetch, methods=["POST"]),
                Route(HEALTH_PATH, self.health, methods=["GET"]),
                Route(BEHAVIOUR_PATH, self.set_behaviour, methods=["POST"]),
                Route(RECEIVED_PATH, self.received, methods=["GET"]),
            ]
        )


def make_agency_app(
    system: SimulatedAgencySystem,
    receiver: DeliveryReceiver | None = None,
    behaviour: Behaviour | None = None,
) -> Starlette:
    """An app serving ``system``; without ``receiver``, signatures are NOT checked (tests only)."""
    return SimulatedAgencyServer(system, receiver, behaviour).app()
