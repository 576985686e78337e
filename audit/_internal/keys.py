"""The log's Ed25519 signing key and its history: generated for a new log, rotated only on purpose.

The key lives in one file (PEM, PKCS#8, mode 0600). When it is rotated, the public half of the old key
is kept in ``<key file>.retired`` (one note verifier key per line, oldest first), so checkpoints it
signed still verify; the old private key is deleted with the rotation, so it can sign nothing more.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from audit._internal.errors import InvalidNote, SigningKeyUnavailable
from audit._internal.files import write_private_file
from audit._internal.note import NoteVerifier, parse_verifier_key

log = logging.getLogger(__name__)


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def load_or_create_signing_key(path: str | os.PathLike[str], *, create: bool = True) -> Ed25519PrivateKey:
    """Load the Ed25519 key at ``path`` (PEM, PKCS#8), or create it there (mode 0600) if absent.

    Creation is atomic and exclusive, so two processes starting at once end up with the same key and
    never read half a file. With ``create=False`` a missing key raises ``SigningKeyUnavailable``
    instead: a log that already has entries must never get a new key silently (its checkpoints
    would then verify with nothing anyone trusts). Any unusable file raises ``SigningKeyUnavailable``.
    """
    target = Path(path)
    if not target.exists():
        if not create:
            raise SigningKeyUnavailable(f"the audit signing key {target} is missing")
        if write_private_file(target, _pem(Ed25519PrivateKey.generate())):
            log.info("created a new audit log signing key at %s", target)
    return _load(target)


def install_signing_key(path: str | os.PathLike[str], key: Ed25519PrivateKey) -> None:
    """Put ``key`` at ``path`` in one rename, replacing (and so deleting) the key that was there."""
    write_private_file(path, _pem(key), replace=True)


def retired_keys_path(path: str | os.PathLike[str]) -> Path:
    """Where the verifier keys of the keys rotated out of ``path`` are kept."""
    p = Path(path)
    return p.with_name(p.name + ".retired")


def retired_verifier_keys(path: str | os.PathLike[str]) -> list[NoteVerifier]:
    """The verifier keys rotated out of the key at ``path``, oldest first (none if never rotated).

    Raises ``SigningKeyUnavailable`` when the history file exists but cannot be read or holds
    something other than verifier keys: a silently shortened history would fail old checkpoints.
    """
    history = retired_keys_path(path)
    try:
        text = history.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise SigningKeyUnavailable(f"the retired audit keys in {history} cannot be read") from e
    keys: list[NoteVerifier] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            keys.append(parse_verifier_key(line))
        except InvalidNote as e:
            raise SigningKeyUnavailable(f"{history} line {number} is not a verifier key: {e}") from e
    return keys


def retire_verifier_key(path: str | os.PathLike[str], verifier: NoteVerifier) -> None:
    """Add ``verifier`` to the history of the key at ``path`` (idempotent)."""
    known = retired_verifier_keys(path)
    if verifier in known:
        return
    lines = [str(v) for v in (*known, verifier)]
    write_private_file(retired_keys_path(path), "".join(f"{line}\n" for line in lines).encode(), replace=True)


def _load(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Mounted secrets are often 0644; refusing would break deployments, so say it loudly instead.
            log.warning("audit signing key %s is readable by others (mode %o)", path, stat.S_IMODE(mode))
        pem = path.read_bytes()
    except OSError as e:
        raise SigningKeyUnavailable(f"the audit signing key {path} cannot be read ({e.strerror})") from e
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise SigningKeyUnavailable(f"{path} does not hold a PEM private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyUnavailable(f"{path} does not hold an Ed25519 private key")
    return key
