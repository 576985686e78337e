"""The gateway's token-signing key: an Ed25519 JWK created at first start in the data directory.

The key never lives in the repository. It is written once, with mode 0600, and loaded on every
later start; replicas that must accept each other's tokens share the data directory (or the file).
"""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from audit import write_private_file

log = logging.getLogger(__name__)

#: File name of the signing key inside ``settings.data_dir``.
KEY_FILE_NAME: Final = "token-signing-key.jwk"

#: The JWS ``alg`` of access tokens: RFC 9864's fully specified name, as joserfc calls it.
TOKEN_SIGNING_ALG: Final = "Ed25519"  # noqa: S105 (an algorithm name, not a secret)


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


def load_or_create_signing_key(data_dir: Path) -> SigningKey:
    """Load the signing key from ``data_dir``, creating it (mode 0600) on first start."""
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        _create(path)
    return _load(path)


def _create(path: Path) -> None:
    fresh = SigningKey.generate()
    body = json.dumps(fresh.key.as_dict(private=True), sort_keys=True).encode()
    # Atomic and exclusive (the one private-file helper): the key file appears complete or not at
    # all, and when two processes start at once the loser simply loads the winner's key.
    if write_private_file(path, body):
        log.info("created token-signing key %s (kid %s)", path, fresh.kid)


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
