"""The receiving end, for an agency system's developers: verify what the gateway sends, keep it once.

Framework-neutral: give it the method, the URL as the gateway addressed it, the headers and the raw
body; it answers a status and a JSON body. ``make_receiver_app`` wraps it as an ASGI app (Starlette)::

    from connectors.receiver import DeliveryReceiver, GatewayKeys, MessageStore, make_receiver_app

    keys = GatewayKeys("https://gateway.example")            # reads jwks_uri from the RFC 8414 metadata
    receiver = DeliveryReceiver(keys.verifier(), MessageStore("deliveries.db"), agency="om")
    app = make_receiver_app(receiver, on_delivery=hand_to_case_system)   # uvicorn module:app

What it checks, in order, and refuses with a reason (``Refusal``): the ``Content-Digest`` against the
body; the signature (Ed25519, a ``keyid`` in the gateway's JWKS, ``created`` within five minutes, and
covering ``@method``, ``@target-uri``, ``content-type``, ``content-digest`` and, on deliveries,
``idempotency-key``); the body's shape; that ``Idempotency-Key`` is the body's ``messageId`` and the
message is addressed to this agency. Then ``MessageStore.put_once`` keeps each message id once: a
repeated delivery (the gateway delivers at least once) is answered 200 again and not stored twice.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ValidationError

from connectors._wire import DELIVERIES_PATH, FETCH_PATH, HEALTH_PATH, DeliveryBody, FetchBody
from connectors.signatures import IDEMPOTENCY_KEY, SignatureRefused, SignatureVerifier, VerifiedRequest

if TYPE_CHECKING:
    from starlette.applications import Starlette

log = logging.getLogger(__name__)

METADATA_PATH = "/.well-known/oauth-authorization-server"

DELIVERY_KID_PREFIX = "delivery-"
"""The gateway's JWKS also holds its access-token key; only keys whose ``kid`` starts so sign deliveries."""

Headers = Mapping[str, str] | Sequence[tuple[str, str]]


class GatewayKeys:
    """The gateway's public Ed25519 keys by ``kid``, read from its JWKS and cached.

    Give the gateway's base URL (the JWKS address comes from its RFC 8414 metadata) or ``jwks_url``.
    The set is read again after ``refresh_after`` seconds, and at once (at most every ``min_refetch``
    seconds) for an unknown ``kid``, so that a rotated key is picked up without a restart. Only the
    delivery keys count (``kid`` starting ``delivery-``): a signature by the gateway's access-token key,
    which the same JWKS publishes, is refused as an unknown key.
    """

    def __init__(
        self,
        gateway_url: str | None = None,
        *,
        jwks_url: str | None = None,
        client: httpx.Client | None = None,
        refresh_after: float = 300.0,
        min_refetch: float = 5.0,
    ) -> None:
        if (gateway_url is None) == (jwks_url is None):
            raise ValueError("give gateway_url or jwks_url")
        self._gateway_url = gateway_url.rstrip("/") if gateway_url else None
        self._jwks_url = jwks_url
        self._client = client or httpx.Client(timeout=5.0)
        self._refresh_after = refresh_after
        self._min_refetch = min_refetch
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def resolve(self, kid: str) -> Ed25519PublicKey | None:
        """The public key named ``kid``, or ``None`` when the gateway does not publish it."""
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age > self._refresh_after or (kid not in self._keys and age > self._min_refetch):
                try:
                    self._keys = self._fetch()
                    self._fetched_at = time.monotonic()
                except (httpx.HTTPError, ValueError, KeyError) as e:
                    # Keep the keys we had; an unknown kid is refused either way (fail closed).
                    log.warning("cannot read the gateway's JWKS: %s", type(e).__name__)
            return self._keys.get(kid)

    def verifier(self, **kwargs: Any) -> SignatureVerifier:
        """A ``SignatureVerifier`` over these keys."""
        return SignatureVerifier(self.resolve, **kwargs)

    def _fetch(self) -> dict[str, Ed25519PublicKey]:
        url = self._jwks_url
        if url is None:
            meta = self._client.get(f"{self._gateway_url}{METADATA_PATH}")
            meta.raise_for_status()
            url = str(meta.json()["jwks_uri"])
        r = self._client.get(url)
        r.raise_for_status()
        keys: dict[str, Ed25519PublicKey] = {}
        for jwk in r.json().get("keys", []):
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or jwk.get("use", "sig") != "sig":
                continue
            if not isinstance(jwk.get("kid"), str) or not isinstance(jwk.get("x"), str):
                continue
            if not jwk["kid"].startswith(DELIVERY_KID_PREFIX):
                continue
            raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
            keys[jwk["kid"]] = Ed25519PublicKey.from_public_bytes(raw)
        return keys


class MessageStore:
    """Each message id once, in a small SQLite file (mode 0600) that survives restarts.

    ``put_once`` is atomic: of two deliveries of one message id, arriving at once or years apart,
    exactly one returns True. Every later one only counts (``received``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if str(path) != ":memory:" and not self.path.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries (message_id TEXT PRIMARY KEY, body BLOB NOT NULL, "
                "received_at REAL NOT NULL, times INTEGER NOT NULL DEFAULT 1)"
            )

    def put_once(self, message_id: str, body: bytes) -> bool:
        """Store ``body`` under ``message_id`` unless it is there; True when this call stored it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO deliveries (message_id, body, received_at) VALUES (?, ?, ?)",
                    (message_id, body, time.time()),
                )
                stored = cur.rowcount == 1
                if not stored:
                    self._db.execute(
                        "UPDATE deliveries SET times = times + 1 WHERE message_id = ?", (message_id,)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored

    def get(self, message_id: str) -> bytes | None:
        """The stored body of ``message_id``, or ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM deliveries WHERE message_id = ?", (message_id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def received(self) -> list[tuple[str, int]]:
        """Every stored message id with the number of times it was delivered, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT message_id, times FROM deliveries ORDER BY rowid").fetchall()
        return [(str(m), int(t)) for m, t in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class Answer:
    """What to answer the gateway: a status and a JSON body (a problem document when refused)."""

    status: int
    body: dict[str, Any]
    stored: bool = False
    """True when this call stored a new message (False for a duplicate and for every refusal)."""
    delivery: DeliveryBody | None = None
    fetch: FetchBody | None = None
    verified: VerifiedRequest | None = None

    @property
    def media_type(self) -> str:
        """``application/problem+json`` for refusals, ``application/json`` otherwise."""
        return "application/json" if self.status < 400 else "application/problem+json"


def _problem(status: int, title: str, detail: str, **extra: Any) -> Answer:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Answer(status, body)


class AcceptUnsigned:
    """UNSAFE: takes any request as signed. For a stand-in under test only; warns every time it runs."""

    def verify(
        self, method: str, url: str, headers: Headers, body: bytes, *, require: Sequence[str] = ()
    ) -> VerifiedRequest:
        """Accept without checking, and say so in the log."""
        log.warning("AcceptUnsigned: a request to %s was accepted without checking its signature", url)
        return VerifiedRequest(key_id="", created=0, covered=())


@dataclass
class DeliveryReceiver:
    """Checks and stores deliveries, and checks fetches, for one agency (``agency``, if given).

    ``public_url`` is this system's base URL as the gateway calls it, when a proxy in front changes
    scheme, host or port: ``@target-uri`` is signed as the gateway sent it.
    """

    verifier: SignatureVerifier | AcceptUnsigned
    store: MessageStore
    agency: str | None = None
    public_url: str | None = None

    def target_uri(self, url: str) -> str:
        """The URL as the gateway addressed it."""
        if not self.public_url:
            return url
        received = httpx.URL(url)
        return self.public_url.rstrip("/") + received.raw_path.decode("ascii")

    def receive(self, method: str, url: str, headers: Headers, body: bytes) -> Answer:
        """Check a ``POST /veilig-delen/deliveries`` and store its message once."""
        try:
            verified = self.verifier.verify(
                method, self.target_uri(url), headers, body, require=[IDEMPOTENCY_KEY]
            )
        except SignatureRefused as e:
            return _problem(401, "Signature refused", e.reason)
        parsed = _parse(DeliveryBody, body)
        if isinstance(parsed, Answer):
            return parsed
        key = httpx.Headers(headers).get(IDEMPOTENCY_KEY, "")
        if key != parsed.message_id:
            return _problem(400, "Invalid input", "Idempotency-Key must equal the body's messageId")
        if self.agency is not None and parsed.recipient != self.agency:
            return _problem(
                422, "Refused", f"the message is addressed to {parsed.recipient}, not {self.agency}"
            )
        stored = self.store.put_once(parsed.message_id, body)
        detail = "received" if stored else "duplicate of an earlier delivery; kept once"
        return Answer(
            200,
            {"messageId": parsed.message_id, "accepted": True, "detail": detail},
            stored=stored,
            delivery=parsed,
            verified=verified,
        )

    def check_fetch(self, method: str, url: str, headers: Headers, body: bytes) -> Answer:
        """Check a ``POST /veilig-delen/fetch``; a 200 ``Answer`` carries the parsed ``fetch`` to answer."""
        try:
            verified = self.verifier.verify(method, self.target_uri(url), headers, body)
        except SignatureRefused as e:
            return _problem(401, "Signature refused", e.reason)
        parsed = _parse(FetchBody, body)
        if isinstance(parsed, Answer):
            return parsed
        if self.agency is not None and parsed.holder != self.agency:
            return _problem(422, "Refused", f"the request is addressed to {parsed.holder}, not {self.agency}")
        return Answer(200, {}, fetch=parsed, verified=verified)


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], body: bytes) -> _M | Answer:
    try:
        return model.model_validate(json.loads(body))
    except ValueError as e:
        if not isinstance(e, ValidationError):
            return _problem(400, "Invalid input", "the body is not JSON")
        # Name the field and the problem only: the input values hold case data.
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]} for err in e.errors()
        ]
        return _problem(400, "Invalid input", "the request body is not valid", errors=errors)


DeliveryHandler = Callable[[DeliveryBody], Awaitable[None] | None]
FetchHandler = Callable[[FetchBody, str], Awaitable[dict[str, Any]] | dict[str, Any]]


def make_receiver_app(
    receiver: DeliveryReceiver,
    *,
    on_delivery: DeliveryHandler | None = None,
    on_fetch: FetchHandler | None = None,
) -> Starlette:
    """An ASGI app (Starlette) serving the agency API: deliveries, fetch (when ``on_fetch``) and health.

    ``on_delivery`` runs once per new message, after it is stored; ``on_fetch(request, traceparent)``
    returns ``{"found": bool, "data": {...}}``.
    """
    from starlette.applications import Starlette

    return Starlette(routes=receiver_routes(receiver, on_delivery=on_delivery, on_fetch=on_fetch))


def receiver_routes(
    receiver: DeliveryReceiver,
    *,
    on_delivery: DeliveryHandler | None = None,
    on_fetch: FetchHandler | None = None,
) -> list[Any]:
    """The Starlette routes of ``make_receiver_app``, to add to an app of one's own."""
    import inspect

    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def respond(answer: Answer) -> Response:
        return JSONResponse(answer.body, status_code=answer.status, media_type=answer.media_type)

    async def deliveries(request: Request) -> Response:
        body = await request.body()
        answer = await run_in_threadpool(
            receiver.receive, request.method, str(request.url), request.headers.items(), body
        )
        if answer.stored and answer.delivery is not None and on_delivery is not None:
            result = on_delivery(answer.delivery)
            if inspect.isawaitable(result):
                await result
        return respond(answer)

    async def fetch(request: Request) -> Response:
        body = await request.body()
        answer = await run_in_threadpool(
            receiver.check_fetch, request.method, str(request.url), request.headers.items(), body
        )
        if answer.fetch is None or on_fetch is None:
            return respond(answer if answer.fetch is None else _problem(404, "Not found", "no fetches here"))
        result = on_fetch(answer.fetch, request.headers.get("traceparent", ""))
        data = await result if inspect.isawaitable(result) else result
        return JSONResponse(data)

    async def health(_request: Request) -> Response:
        return JSONResponse({"agency": receiver.agency, "status": "up"})

    return [
        Route(DELIVERIES_PATH, deliveries, methods=["POST"]),
        Route(FETCH_PATH, fetch, methods=["POST"]),
        Route(HEALTH_PATH, health, methods=["GET"]),
    ]
