"""The gateway authenticates to an agency system: mTLS with a test CA, or an OAuth2 token it caches."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors import AGENCIES, ConnectorRejected, SimulatedAgencySystem
from connectors.config import AgencyEndpoint, OAuth2Auth
from connectors.http import HttpConnector
from standins.agency import make_agency_app
from tests.connectors.samples import make_delivery
from tests.live import serve


@contextmanager
def _serve_tls(app: Any, ca: trustme.CA, tmp_path: Path) -> Iterator[int]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, ca_pem = tmp_path / "server.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        ssl_certfile=str(cert_pem),
        ssl_ca_certs=str(ca_pem),
        ssl_cert_reqs=ssl.CERT_REQUIRED,  # no client certificate from our CA, no connection
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the TLS server did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_mtls_delivers_with_the_client_certificate_and_fails_without(tmp_path: Path) -> None:
    ca = trustme.CA()
    politie = SimulatedAgencySystem("politie")
    client_cert = ca.issue_cert("veilig-delen-gateway")
    cert, key, ca_file = tmp_path / "client.pem", tmp_path / "client-key.pem", tmp_path / "ca.pem"
    client_cert.cert_chain_pems[0].write_to_path(str(cert))
    client_cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    with _serve_tls(make_agency_app(politie), ca, tmp_path) as port:
        auth = {"type": "mtls", "certFile": str(cert), "keyFile": str(key), "caFile": str(ca_file)}
        endpoint = AgencyEndpoint.model_validate({"url": f"https://127.0.0.1:{port}", "auth": auth})
        connector = HttpConnector.from_endpoint("politie", endpoint, signer=None)
        assert connector.deliver(make_delivery()).accepted is True
        connector.close()
        # The same server, reached without a client certificate: the handshake fails.
        bare = AgencyEndpoint.model_validate(
            {
                "url": f"https://127.0.0.1:{port}",
                "auth": {
                    "type": "oauth2",
                    "tokenUrl": "https://127.0.0.1:1/t",
                    "clientId": "x",
                    "clientSecretFile": str(ca_file),
                    "caFile": str(ca_file),
                },
            }
        )
        assert HttpConnector.from_endpoint("politie", bare, signer=None).health() is False
    assert [d.message_id for d in politie.received] == ["msg-0001"]


def test_oauth2_token_is_obtained_once_and_sent_as_bearer(tmp_path: Path) -> None:
    issued: list[dict[str, str]] = []

    async def token(request: Request) -> JSONResponse:
        form = dict(await request.form())
        if form.get("client_secret") != "s3cret" or form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        issued.append({k: str(v) for k, v in form.items()})
        return JSONResponse({"access_token": f"tok-{len(issued)}", "token_type": "Bearer", "expires_in": 300})

    seen: list[str] = []
    politie = SimulatedAgencySystem("politie")
    inner = make_agency_app(politie)

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        bearer = headers.get(b"authorization", b"").decode()
        if scope["type"] == "http":
            seen.append(bearer)
            if bearer != "Bearer tok-1":
                await JSONResponse({"title": "Unauthorized"}, status_code=401)(scope, receive, send)
                return
        await inner(scope, receive, send)

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    idp = Starlette(routes=[Route("/token", token, methods=["POST"])])
    with serve(idp) as idp_url, serve(guarded) as agency_url:
        auth = OAuth2Auth.model_validate(
            {
                "type": "oauth2",
                "tokenUrl": f"{idp_url}/token",
                "clientId": "gw",
                "clientSecretFile": str(secret),
                "scope": "deliveries",
            }
        )
        endpoint = AgencyEndpoint(url=agency_url, auth=auth)
        connector = HttpConnector.from_endpoint("politie", endpoint, signer=None)
        for i in range(3):
            assert connector.deliver(make_delivery(message_id=f"m-{i}")).accepted
        # A wrong secret: the token endpoint refuses, the delivery fails without reaching the agency.
        secret.write_text("wrong")
        other = HttpConnector.from_endpoint("politie", endpoint, signer=None)
        with pytest.raises(Exception) as e:
            other.deliver(make_delivery(message_id="m-x"))
        assert "s3cret" not in str(e.value) and "wrong" not in str(e.value)
    assert len(issued) == 1  # cached: one token for three deliveries
    assert (issued[0]["client_id"], issued[0]["scope"]) == ("gw", "deliveries")
    assert seen == ["Bearer tok-1"] * 3
    assert [d.message_id for d in politie.received] == ["m-0", "m-1", "m-2"]
    assert not isinstance(e.value, ConnectorRejected) or e.value.status is None
    assert len(AGENCIES) == 5
