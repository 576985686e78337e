"""Strict input at the edge (DESIGN 7 "Limits and abuse"), as plain ASGI middleware.

Every request body, on every route, is read here before the app sees it: counted as it streams in and
refused with 413 as soon as it passes ``max_body_bytes`` (at once when ``Content-Length`` says so, so a
large upload is never read). A JSON body is then parsed once, strictly, by ``gateway.strictjson``: a 400
naming the field for a duplicate key, nesting deeper than ``MAX_JSON_DEPTH``, ``NaN``/``Infinity``, a
number outside what a double holds exactly, or a lone surrogate. Only then does the app run, on the original
bytes. Starlette's own ``RequestBodyLimitMiddleware`` is not used: it answers text/plain, and only once
the app reads, while the JSON check needs the whole body first anyway.
"""

from __future__ import annotations

import json
from email.message import Message as EmailMessage
from functools import lru_cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import BodyTooLarge, GatewayError, InvalidInput
from gateway.strictjson import strict_json


@lru_cache(maxsize=64)
def _is_json(content_type: str) -> bool:
    # The same test FastAPI applies before it parses a body as JSON, so nothing it parses escapes ours.
    message = EmailMessage()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


class BodyLimits:
    """Bounded, strict request bodies on every route (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_type = None
        for name, value in scope["headers"]:  # one pass over the raw, lower-case names
            if name == b"content-length" and declared is None:
                declared = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, self._too_large())  # without reading a byte of it
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                # The client went away mid-body: let the app see that as it would have.
                await self.app(scope, _replay(None, message, receive), send)
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._refuse(send, self._too_large())
                return
            more = message.get("more_body", False)
        if body and content_type and _is_json(content_type):
            try:
                strict_json(bytes(body))
            except InvalidInput as e:
                await self._refuse(send, e)
                return
        request: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self.app(scope, _replay(request, None, receive), send)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"the request body is larger than {self.max_body_bytes} bytes")

    @staticmethod
    async def _refuse(send: Send, error: GatewayError) -> None:
        content = json.dumps(error.problem()).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(content)).encode()),
        ]
        if isinstance(error, BodyTooLarge):
            # The rest of the body is never read, so this connection cannot carry another request.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _replay(first: Message | None, then: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands out the body read here once, then whatever the client sends next."""
    pending = [m for m in (first, then) if m is not None]

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
