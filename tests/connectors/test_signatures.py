"""RFC 9421 signatures on the gateway's calls, checked by the receiver library an agency uses."""

from __future__ import annotations

import base64
import datetime as dt
import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from connectors import HttpConnector
from connectors._wire import delivery_json
from connectors.receiver import DeliveryReceiver, GatewayKeys, MessageStore
from connectors.signatures import RequestSigner, SignatureVerifier
from tests.connectors.samples import RecordingClient, make_delivery

URL = "http://127.0.0.1:9/veilig-delen/deliveries"
KEY = Ed25519PrivateKey.generate()
KID = "delivery-test"


def _signed(
    body: bytes | None = None, *, created: dt.datetime | None = None, signer: RequestSigner | None = None
) -> httpx.Request:
    d = make_delivery()
    content = body if body is not None else json.dumps(delivery_json(d)).encode()
    request = httpx.Request(
        "POST",
        URL,
        content=content,
        headers={"Content-Type": "application/json", "Idempotency-Key": d.message_id},
    )
    (signer or RequestSigner(KEY, KID)).sign(request, now=created)
    return request


@pytest.fixture
def receiver() -> DeliveryReceiver:
    verifier = SignatureVerifier(lambda kid: KEY.public_key() if kid == KID else None)
    return DeliveryReceiver(verifier, MessageStore(":memory:"), agency="politie")


def _receive(receiver: DeliveryReceiver, r: httpx.Request, **headers: str) -> tuple[int, str]:
    h = dict(r.headers) | headers
    answer = receiver.receive(r.method, str(r.url), h, r.content)
    return answer.status, answer.body.get("detail", "")


def test_a_signed_delivery_is_verified_and_stored_once(receiver: DeliveryReceiver) -> None:
    r = _signed()
    assert _receive(receiver, r) == (200, "received")
    assert _receive(receiver, r) == (200, "duplicate of an earlier delivery; kept once")
    assert receiver.store.received() == [("msg-0001", 2)]
    assert r.headers["content-digest"].startswith("sha-256=:")
    sig_input = r.headers["signature-input"]
    for component in ("@method", "@target-uri", "content-type", "content-digest", "idempotency-key"):
        assert f'"{component}"' in sig_input
    assert f'keyid="{KID}"' in sig_input and 'alg="ed25519"' in sig_input and "created=" in sig_input


def test_the_connector_signs_what_it_sends(receiver: DeliveryReceiver) -> None:
    client = RecordingClient(transport=httpx.MockTransport(lambda r: _answer(receiver, r)))
    connector = HttpConnector("politie", "http://127.0.0.1:9", client=client, signer=RequestSigner(KEY, KID))
    receipt = connector.deliver(make_delivery())
    assert (receipt.accepted, receipt.detail) == (True, "received")
    assert client.sent[0].headers["idempotency-key"] == "msg-0001"


def _answer(receiver: DeliveryReceiver, r: httpx.Request) -> httpx.Response:
    answer = receiver.receive(r.method, str(r.url), r.headers.multi_items(), r.content)
    return httpx.Response(answer.status, json=answer.body)


def test_a_tampered_body_is_refused_by_its_digest(receiver: DeliveryReceiver) -> None:
    r = _signed()
    tampered = r.content.replace(b"acuut onveilig", b"veilig")
    answer = receiver.receive("POST", URL, dict(r.headers), tampered)
    assert answer.status == 401
    assert answer.body["detail"] == "Content-Digest does not match the message body"
    assert receiver.store.received() == []


def test_a_digest_recomputed_for_a_changed_body_breaks_the_signature(receiver: DeliveryReceiver) -> None:
    r = _signed()
    other = _signed(body=r.content.replace(b"acuut onveilig", b"veilig"))
    # The body and its digest agree, but the signature was made over the original digest.
    headers = dict(r.headers) | {"content-digest": other.headers["content-digest"]}
    answer = receiver.receive("POST", URL, headers, other.content)
    assert (answer.status, answer.body["detail"]) == (401, "the signature does not verify")


@pytest.mark.parametrize(
    ("header", "value"),
    [("idempotency-key", "msg-9999"), ("content-type", "text/plain")],
)
def test_a_tampered_signed_header_is_refused(receiver: DeliveryReceiver, header: str, value: str) -> None:
    assert _receive(receiver, _signed(), **{header: value}) == (401, "the signature does not verify")


def test_an_old_signature_is_refused_as_a_replay(receiver: DeliveryReceiver) -> None:
    old = _signed(created=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    status, detail = _receive(receiver, old)
    assert status == 401 and "maximum allowable age" in detail


def test_unsigned_and_unknown_key_are_refused(receiver: DeliveryReceiver) -> None:
    r = _signed()
    unsigned = {k: v for k, v in r.headers.items() if k not in ("signature", "signature-input")}
    answer = receiver.receive("POST", URL, unsigned, r.content)
    assert (answer.status, answer.body["detail"]) == (
        401,
        "the request is not signed (no Signature or Signature-Input header)",
    )
    headers = {"Idempotency-Key": "msg-0001", "Content-Type": "application/json"}
    stranger = httpx.Request("POST", URL, content=r.content, headers=headers)
    RequestSigner(Ed25519PrivateKey.generate(), "someone-else").sign(stranger)
    assert _receive(receiver, stranger)[1] == "the signature names a key id the gateway's JWKS does not hold"


def test_a_delivery_without_a_signed_idempotency_key_is_refused(receiver: DeliveryReceiver) -> None:
    r = httpx.Request("POST", URL, content=_signed().content, headers={"Content-Type": "application/json"})
    RequestSigner(KEY, KID).sign(r)  # signed, but over no Idempotency-Key
    status, detail = _receive(receiver, r, **{"idempotency-key": "msg-0001"})
    assert status == 401 and "idempotency-key" in detail


def test_the_store_survives_a_restart(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "store.db"  # type: ignore[operator]
    first = MessageStore(path)
    assert first.put_once("m-1", b"{}") is True
    first.close()
    again = MessageStore(path)
    assert again.put_once("m-1", b"{}") is False
    assert again.received() == [("m-1", 2)]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_gateway_keys_take_only_its_delivery_keys_from_the_jwks() -> None:
    # The JWKS also publishes the access-token key: a signature by it is no delivery of the gateway's.
    token_key = Ed25519PrivateKey.generate()

    def jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
        x = base64.urlsafe_b64encode(key.public_key().public_bytes_raw()).rstrip(b"=").decode()
        return {"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid, "x": x}

    jwks = {"keys": [jwk(token_key, "Bz64token"), jwk(KEY, KID)]}
    client = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(200, json=jwks)))
    keys = GatewayKeys(jwks_url="http://127.0.0.1:9/oauth2/jwks", client=client)
    receiver = DeliveryReceiver(keys.verifier(), MessageStore(":memory:"), agency="politie")

    by_token_key = _signed(signer=RequestSigner(token_key, "Bz64token"))
    assert _receive(receiver, by_token_key) == (
        401,
        "the signature names a key id the gateway's JWKS does not hold",
    )
    assert _receive(receiver, _signed()) == (200, "received")
