"""Client-side helpers: key pairs to register and RFC 7523 client assertions to get a token with.

Agency systems in Python can use these as they are; the tests use them to play a client. The
assertions carry the same claims as Authlib's ``PrivateKeyJWT`` (``iss`` = ``sub`` = client id,
``aud`` = token URL, ``iat``, ``exp``, ``jti``), with a short ``exp`` as the gateway demands.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

KeyKind = Literal["Ed25519", "ES256", "RS256"]


def generate_keypair(kind: KeyKind = "Ed25519") -> tuple[bytes, bytes]:
    """A new key pair as ``(private_pem, public_pem)`` (PKCS#8 and SubjectPublicKeyInfo)."""
    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if kind == "Ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    elif kind == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif kind == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"unknown key kind {kind!r}; use Ed25519, ES256 or RS256")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _import_private_key(private_key: str | bytes | Key) -> tuple[OKPKey | ECKey | RSAKey, str]:
    key: OKPKey | ECKey | RSAKey
    if isinstance(private_key, str | bytes):
        pem = private_key.encode() if isinstance(private_key, str) else private_key
        native = serialization.load_pem_private_key(pem, password=None)
        if isinstance(native, ed25519.Ed25519PrivateKey):
            key = OKPKey.import_key(pem)
        elif isinstance(native, ec.EllipticCurvePrivateKey):
            key = ECKey.import_key(pem)
        elif isinstance(native, rsa.RSAPrivateKey):
            key = RSAKey.import_key(pem)
        else:
            raise ValueError(f"{type(native).__name__} keys are not supported")
    elif isinstance(private_key, OKPKey | ECKey | RSAKey):
        key = private_key
    else:
        raise ValueError("symmetric keys cannot sign client assertions")
    if isinstance(key, OKPKey):
        return key, "Ed25519"
    if isinstance(key, ECKey):
        return key, "ES256"
    return key, "RS256"


def make_client_assertion(
    client_id: str,
    private_key: str | bytes | Key,
    token_url: str,
    alg: str | None = None,
    jti: str | None = None,
    exp_in: int = 60,
    *,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed client assertion for ``client_id``, valid for ``exp_in`` seconds (at most 300).

    ``alg`` defaults to the key's: Ed25519, ES256 or RS256 (``EdDSA`` may be given for Ed25519).
    ``claims`` adds or replaces claims, for tests that need a malformed assertion.
    """
    key, default_alg = _import_private_key(private_key)
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + exp_in,
        "jti": jti or secrets.token_urlsafe(24),
    }
    payload.update(claims or {})
    algorithm = alg or default_alg
    return jwt.encode({"alg": algorithm}, payload, key, algorithms=[algorithm])
