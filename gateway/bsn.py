"""BSN checks and keyed pseudonyms: a BSN is validated, pseudonymised, and then forgotten."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from audit import write_private_file


def is_valid_bsn(value: str) -> bool:
    """True when ``value`` is nine digits passing the elfproef (9*d1 + ... + 2*d8 - d9 = 0 mod 11)."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    total = sum(weight * d for weight, d in zip(range(9, 1, -1), digits[:8], strict=True)) - digits[8]
    # An all-zero number passes the arithmetic but is never issued.
    return total % 11 == 0 and value != "000000000"


SECRET_FILE_NAME = "pseudonym.key"  # noqa: S105  (a file name, not a secret)
"""The pseudonym secret in the data directory when no setting names one."""


def secret_path(data_dir: Path, file: Path | None = None) -> Path:
    """Where the pseudonym secret is kept: ``file`` (``GATEWAY_PSEUDONYM_SECRET_FILE``) or the data dir."""
    return file if file is not None else data_dir / SECRET_FILE_NAME


class Pseudonymizer:
    """HMAC-SHA256 of a BSN under a deployment secret; the same BSN always gives the same pseudonym."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the pseudonym secret must be at least 32 bytes")
        self._secret = secret

    def pseudonym(self, bsn: str) -> str:
        """The hex pseudonym of a (valid) BSN."""
        if not is_valid_bsn(bsn):
            raise ValueError("not a valid BSN")
        return hmac.new(self._secret, b"bsn:" + bsn.encode("ascii"), hashlib.sha256).hexdigest()

    @classmethod
    def from_settings(cls, secret: str | None, data_dir: Path, file: Path | None = None) -> Pseudonymizer:
        """Use the configured secret, else the one in ``file`` (``GATEWAY_PSEUDONYM_SECRET_FILE``, shared
        by replicas) or in the data directory, generated at first start when missing."""
        if secret:
            return cls(secret.encode("utf-8"))
        path = secret_path(data_dir, file)
        if not path.exists():
            # Atomic and exclusive: two processes starting at once agree on one secret, and none reads
            # half a file.
            write_private_file(path, secrets.token_hex(32).encode("ascii"))
        return cls(path.read_text().strip().encode("utf-8"))
