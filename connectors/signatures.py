"""HTTP Message Signatures (RFC 9421) with ``Content-Digest`` (RFC 9530) on the calls the gateway makes.

The gateway signs every delivery and fetch with its Ed25519 delivery-signing key, whose public half it
publishes in its JWKS under the key id the signature names. A receiving agency verifies with
``SignatureVerifier`` (or the ready-made ``connectors.receiver``)::

    signer = RequestSigner(private_key, key_id="delivery-…")
    signer.sign(request)                                   # an httpx.Request, before it is sent

    verifier = SignatureVerifier(keys.resolve)             # keys: kid -> Ed25519 public key
    verified = verifier.verify("POST", url, headers, body) # raises SignatureRefused(reason)

The signing itself is the ``http-message-signatures`` library's; this module fixes what is covered, the
algorithm and the time window, so that both ends agree and a receiver cannot forget a check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)

SIGNATURE_TAG: Final = "veilig-delen"
"""The signed ``tag`` parameter: says what the signature is for (RFC 9421 section 2.3)."""

SIGNATURE_LABEL: Final = "gateway"
"""The label of the gateway's signature in ``Signature-Input`` and ``Signature``."""

COVERED: Final = ("@method", "@target-uri", "content-type", "content-digest")
"""Components every gateway request signs (and every receiver requires)."""

IDEMPOTENCY_KEY: Final = "idempotency-key"
"""Header naming a delivery's message id; covered whenever it is sent, required on deliveries."""

MAX_AGE: Final = dt.timedelta(minutes=5)
"""Oldest ``created`` a receiver accepts by default: a replay of an older request is refused."""

CLOCK_SKEW: Final = dt.timedelta(seconds=30)
"""How far a ``created`` may lie in the future (clocks differ between organisations)."""


class SignatureRefused(Exception):
    """A request's signature or digest does not hold; ``reason`` says why, without echoing content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedRequest:
    """What a valid signature vouches for: who signed, when, and the components it covered."""

    key_id: str
    created: int
    covered: tuple[str, ...]


class _Keys(HTTPSignatureKeyResolver):
    def __init__(
        self,
        private: Ed25519PrivateKey | None = None,
        public: Callable[[str], Ed25519PublicKey | None] | None = None,
    ) -> None:
        self._private = private
        self._public = public

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        assert self._private is not None
        return self._private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self._public(key_id) if self._public else None


@dataclass
class _Message:
    """The view of a request the library reads: method, absolute URL and header field lines."""

    method: str
    url: str
    headers: httpx.Headers


class RequestSigner:
    """Signs outgoing requests with one Ed25519 key, named ``key_id`` in the signature."""

    def __init__(self, private_key: Ed25519PrivateKey, key_id: str) -> None:
        self.key_id = key_id
        self._signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519, key_resolver=_Keys(private_key)
        )

    def sign(
        self, request: httpx.Request, *, key_id: str | None = None, now: dt.datetime | None = None
    ) -> None:
        """Add ``Content-Digest``, ``Signature-Input`` and ``Signature`` to ``request`` (in place).

        ``key_id`` overrides the key id for one agency that registered the key under its own name.
        """
        # A component the request lacks cannot be signed; the receiver then refuses it as uncovered.
        covered = [c for c in COVERED if c.startswith("@") or c == "content-digest" or c in request.headers]
        if IDEMPOTENCY_KEY in request.headers:
            covered.append(IDEMPOTENCY_KEY)
        message = _Message(request.method, str(request.url), request.headers)
        self._signer.sign(
            message,
            key_id=key_id or self.key_id,
            created=now or dt.datetime.now(dt.UTC),
            label=SIGNATURE_LABEL,
            tag=SIGNATURE_TAG,
            covered_component_ids=covered,
            body=request.content,
        )


class _Verifier(HTTPMessageVerifier):
    max_clock_skew = CLOCK_SKEW


class SignatureVerifier:
    """Checks a request's ``Content-Digest`` and the gateway's signature over it.

    ``resolve_key`` maps a key id to the gateway's public key, or ``None`` for an unknown id (see
    ``connectors.receiver.GatewayKeys``, which reads them from the gateway's JWKS).
    """

    def __init__(
        self, resolve_key: Callable[[str], Ed25519PublicKey | None], *, max_age: dt.timedelta = MAX_AGE
    ) -> None:
        self._resolve = resolve_key
        self._max_age = max_age
        self._verifier = _Verifier(
            signature_algorithm=algorithms.ED25519, key_resolver=_Keys(public=resolve_key)
        )

    def verify(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
        body: bytes,
        *,
        require: Iterable[str] = (),
    ) -> VerifiedRequest:
        """Verify one request as received; ``require`` adds covered components (``idempotency-key``).

        Raises ``SignatureRefused`` naming the first check that failed: no signature, a digest that does
        not match the body, a component left uncovered, an unknown key, a signature too old or forged.
        """
        h = httpx.Headers(headers)
        if "signature" not in h or "signature-input" not in h:
            raise SignatureRefused("the request is not signed (no Signature or Signature-Input header)")
        if "content-digest" not in h:
            raise SignatureRefused("the request has no Content-Digest header")
        try:
            ContentDigest.verify(h["content-digest"], body)
        except HTTPMessageSignaturesException as e:
            text = str(e)  # the library's own text already names the header ("Content-Digest does not ...")
            raise SignatureRefused(text if "Content-Digest" in text else f"Content-Digest: {text}") from None
        required = list(dict.fromkeys([*COVERED, *require]))
        try:
            (result,) = self._verifier.verify(
                _Message(method.upper(), url, h),
                max_age=self._max_age,
                expect_tag=SIGNATURE_TAG,
                require_components=required,
                body=body,
            )
        except HTTPMessageSignaturesException as e:
            raise SignatureRefused(_reason(e)) from None
        except ValueError:
            raise SignatureRefused("the signature headers are malformed") from None
        created = result.parameters.get("created")
        key_id = result.parameters.get("keyid")
        covered = tuple(k.strip('"') for k in result.covered_components if k != '"@signature-params"')
        return VerifiedRequest(str(key_id), int(created) if isinstance(created, int) else 0, covered)


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    if "resolve verification key" in text:
        return "the signature names a key id the gateway's JWKS does not hold"
    if "InvalidSignature" in text or text == "":
        return "the signature does not verify"
    return f"signature: {text}"[:200]
