"""The gateway's own Ed25519 keys, as JWKs created at first start in the data directory.

Two keys, each with its own ``kid`` in the one JWKS: the token-signing key (access tokens) and the
delivery-signing key (HTTP Message Signatures on every call the gateway makes on an agency system).
A key never lives in the repository. It is written once, with mode 0600, and loaded on every later
start; replicas share the data directory (or the file a ``GATEWAY_*_KEY_FILE`` setting names).
"""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from audit import write_private_file

log = logging.getLogger(__name__)

#: File name of the signing key inside ``settings.data_dir``.
KEY_FILE_NAME: Final = "token-signing-key.jwk"

#: The JWS ``alg`` of access tokens: RFC 9864's fully specified name, as joserfc calls it.
TOKEN_SIGNING_ALG: Final = "Ed25519"  # noqa: S105 (an algorithm name, not a secret)

#: File name of the delivery-signing key inside ``settings.data_dir`` (unless a file is named).
DELIVERY_KEY_FILE_NAME: Final = "delivery-signing-key.jwk"

#: The delivery key's ``kid`` is this prefix and its RFC 7638 thumbprint: an agency can tell it apart
#: from the token key at a glance, and a signature naming the token key's ``kid`` finds no key.
DELIVERY_KID_PREFIX: Final = "delivery-"


class SigningKeyError(RuntimeError):
    """The key file exists but cannot be used (wrong type, readable by others, corrupt)."""


@dataclass(frozen=True)
class SigningKey:
    """The private Ed25519 key that signs access tokens, with its RFC 7638 thumbprint as ``kid``."""

    key: OKPKey

    @property
    def kid(self) -> str:
        """The key id: the RFC 7638 SHA-256 thumbprint of the public key."""
        kid = self.key.kid
        assert kid is not None
        return kid

    @property
    def alg(self) -> str:
        """The JWS algorithm this key signs with."""
        return TOKEN_SIGNING_ALG

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK, with ``kid``, ``use`` and ``alg``."""
        return dict(self.key.as_dict(private=False, use="sig", alg=TOKEN_SIGNING_ALG))

    def jwks(self) -> dict[str, Any]:
        """The public JSON Web Key Set served at the ``jwks_uri``."""
        return {"keys": [self.public_jwk()]}

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key (tests and first start)."""
        key = OKPKey.generate_key("Ed25519")
        key.ensure_kid()
        return cls(key)


@dataclass(frozen=True)
class DeliveryKey:
    """The private Ed25519 key that signs deliveries and fetches (RFC 9421), published in the JWKS."""

    key: OKPKey

    @property
    def kid(self) -> str:
        """``delivery-`` and the RFC 7638 thumbprint: the ``keyid`` of every signature it makes."""
        return DELIVERY_KID_PREFIX + self.key.thumbprint()

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The key as ``cryptography`` holds it, for the request signer."""
        private = self.key.private_key
        assert isinstance(private, Ed25519PrivateKey)
        return private

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK with its own ``kid``, ``use: sig`` and ``alg: Ed25519``."""
        jwk = dict(self.key.as_dict(private=False, use="sig", alg=TOKEN_SIGNING_ALG))
        jwk["kid"] = self.kid
        return jwk


def load_or_create_signing_key(data_dir: Path, file: Path | None = None) -> SigningKey:
    """Load the token-signing key from ``file`` (or ``data_dir``), creating it (0600) on first start."""
    path = file or data_dir / KEY_FILE_NAME
    if not path.exists():
        _create(path, "token-signing")
    return _load(path)


def load_or_create_delivery_key(data_dir: Path, file: Path | None = None) -> DeliveryKey:
    """Load the delivery-signing key from ``file`` (or ``data_dir``), creating it (0600) on first start."""
    path = file or data_dir / DELIVERY_KEY_FILE_NAME
    if not path.exists():
        _create(path, "delivery-signing")
    return DeliveryKey(_load(path).key)


def read_signing_key(path: Path) -> SigningKey:
    """The private Ed25519 JWK at ``path``, never creating one; ``SigningKeyError`` if unusable."""
    return _load(path)


def _create(path: Path, what: str) -> None:
    fresh = SigningKey.generate()
    body = json.dumps(fresh.key.as_dict(private=True), sort_keys=True).encode()
    # Atomic and exclusive (the one private-file helper): the key file appears complete or not at
    # all, and when two processes start at once the loser simply loads the winner's key.
    if write_private_file(path, body):
        log.info("created %s key %s (kid %s)", what, path, fresh.kid)


def _load(path: Path) -> SigningKey:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"{path} is accessible to other users; run: chmod 600 {path}")
    try:
        data = json.loads(path.read_text())
        key = OKPKey.import_key(data)
    except (ValueError, TypeError, KeyError, JoseError) as e:
        raise SigningKeyError(f"{path} does not hold a valid OKP JWK") from e
    if key.curve_name != "Ed25519" or not key.is_private:
        raise SigningKeyError(f"{path} must hold a private Ed25519 key")
    thumbprint = key.thumbprint()
    if key.kid is None:
        key.ensure_kid()
    elif key.kid != thumbprint:
        raise SigningKeyError(f"{path}: kid is not the RFC 7638 thumbprint of the key")
    return SigningKey(key)
