"""Sealing at rest: the subjects' BSNs and the messages waiting for their recipient, AES-256-GCM.

One key-encryption key (KEK, 32 random bytes) lives in a file outside the database
(``GATEWAY_SEALING_KEY_FILE``, default ``sealing.key`` in the data directory, 0600). Under it:

- each case has a random 256-bit data key, stored wrapped (AES-256-GCM under the KEK, AAD the case id)
  in ``case_keys``; the case's BSNs are sealed with it (AAD: case id, position, role). Deleting the
  row erases every identity of the case at once (crypto-shredding), also copies of the sealed bytes
  that survived anywhere;
- each message is sealed with its own key, derived from the KEK with HKDF-SHA256 over the message id;
  AAD the message id and the recipient, so a sealed content moved to another row or recipient does
  not open. Erasing a message is deleting its sealed bytes (with ``PRAGMA secure_delete`` on SQLite).

A sealed value is ``version (1 byte) || nonce (12 bytes) || ciphertext with tag``. Every failure to open
(wrong key, wrong AAD, damaged bytes) is `Unsealable`: the caller fails closed. See docs/data-at-rest.md.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, func, null, select, update

from audit import write_private_file
from gateway.errors import StartupRefused
from gateway.models import CaseKey, Message, Subject
from gateway.strictjson import strict_json

log = logging.getLogger("gateway.sealing")

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = b"\x01"
SEALING_KEY_FILE = "sealing.key"
"""The key-encryption key in the data directory unless ``GATEWAY_SEALING_KEY_FILE`` names another file."""

_CASE_KEY = b"veilig-delen/case-key/v1\x00"
_IDENTITY = b"veilig-delen/identity/v1\x00"
_MESSAGE = b"veilig-delen/message/v1\x00"


class Unsealable(Exception):
    """A sealed value that does not open: another key, another place (AAD), or damaged bytes."""


class SealingKeyUnavailable(Exception):
    """The key-encryption key is missing or not a key; ``reason`` says which, naming no secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _aad(label: bytes, *parts: str | int) -> bytes:
    # Length-prefixed parts: ("a", "bc") and ("ab", "c") give different AADs.
    out = bytearray(label)
    for p in parts:
        b = str(p).encode("utf-8")
        out += len(b).to_bytes(4, "big") + b
    return bytes(out)


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, VERSION + aad)


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != VERSION:
        raise Unsealable("not a sealed value of this version")
    try:
        return AESGCM(key).decrypt(sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :], VERSION + aad)
    except InvalidTag as e:
        raise Unsealable("the sealed value does not open with this key here") from e


class Sealer:
    """Seals and opens case keys, identities and messages under one key-encryption key."""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEY_BYTES:
            raise ValueError("the key-encryption key is 32 bytes")
        self._kek = kek

    # -- case keys and identities -----------------------------------------------------------------

    def new_case_key(self, case_id: str) -> tuple[bytes, bytes]:
        """A fresh data key for ``case_id`` and its wrapped form (for ``case_keys.wrapped``)."""
        key = AESGCM.generate_key(bit_length=256)
        return key, _seal(self._kek, key, _aad(_CASE_KEY, case_id))

    def unwrap_case_key(self, case_id: str, wrapped: bytes) -> bytes:
        """The data key of ``case_id``; `Unsealable` when ``wrapped`` is not this case's under this KEK."""
        key = _open(self._kek, wrapped, _aad(_CASE_KEY, case_id))
        if len(key) != KEY_BYTES:
            raise Unsealable("a wrapped case key of the wrong length")
        return key

    @staticmethod
    def seal_identity(case_key: bytes, case_id: str, position: int, role: str, bsn: str) -> bytes:
        """The BSN of subject ``position`` (in ``role``) of ``case_id``, sealed with the case key."""
        return _seal(case_key, bsn.encode("ascii"), _aad(_IDENTITY, case_id, position, role))

    @staticmethod
    def open_identity(case_key: bytes, case_id: str, position: int, role: str, sealed: bytes) -> str:
        """The BSN sealed by `seal_identity` for exactly this case, position and role."""
        bsn = _open(case_key, sealed, _aad(_IDENTITY, case_id, position, role)).decode("ascii", "replace")
        if len(bsn) != 9 or not bsn.isdigit():
            raise Unsealable("a sealed identity that is not a BSN")
        return bsn

    # -- messages -----------------------------------------------------------------------------------

    def _message_key(self, message_id: str) -> bytes:
        hkdf = HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_MESSAGE + message_id.encode()
        )
        return hkdf.derive(self._kek)

    def seal_message(self, message_id: str, recipient: str, content: dict[str, Any]) -> bytes:
        """``content`` (``{payload, subjects}``) as JSON, sealed for ``recipient`` as ``message_id``."""
        plaintext = json.dumps(content, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return _seal(
            self._message_key(message_id), plaintext.encode("utf-8"), _aad(_MESSAGE, message_id, recipient)
        )

    def open_message(self, message_id: str, recipient: str, sealed: bytes) -> dict[str, Any]:
        """The content sealed by `seal_message`, parsed as strictly as a request body."""
        plaintext = _open(self._message_key(message_id), sealed, _aad(_MESSAGE, message_id, recipient))
        try:
            content = strict_json(plaintext.decode("utf-8"))
        except Exception as e:  # sealed by us, so only a bug or a damaged key gets here
            raise Unsealable("sealed content that is not JSON") from e
        if not isinstance(content, dict):
            raise Unsealable("sealed content that is not an object")
        return content


def sealing_key_path(data_dir: Path, key_file: Path | None) -> Path:
    """Where the key-encryption key is: ``key_file`` when set, else ``sealing.key`` in ``data_dir``."""
    return key_file if key_file is not None else data_dir / SEALING_KEY_FILE


def load_or_create_kek(path: Path, *, create: bool) -> bytes:
    """The KEK in ``path`` (base64 of 32 bytes), made there atomically (0600) when absent and ``create``.

    Two processes starting at once end with the same key (the file is created exclusively). Raises
    `SealingKeyUnavailable` when the file is missing and may not be made, or is not a key.
    """
    if not path.exists():
        if not create:
            raise SealingKeyUnavailable(f"the sealing key {path} is missing")
        if write_private_file(path, base64.b64encode(os.urandom(KEY_BYTES)) + b"\n"):
            log.info("created a new sealing key at %s", path)
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except (OSError, binascii.Error) as e:
        raise SealingKeyUnavailable(f"the sealing key {path} cannot be read as a key") from e
    if len(key) != KEY_BYTES:
        raise SealingKeyUnavailable(f"the sealing key {path} is not {KEY_BYTES} bytes")
    return key


def sealed_rows(engine: Engine) -> int:
    """How many rows only the KEK opens: sealed messages, case keys and sealed identities."""
    with engine.connect() as conn:
        messages = conn.execute(select(func.count()).where(Message.sealed.is_not(None))).scalar_one()
        keys = conn.execute(select(func.count()).select_from(CaseKey)).scalar_one()
        identities = conn.execute(select(func.count()).where(Subject.identity.is_not(None))).scalar_one()
    return int(messages) + int(keys) + int(identities)


def open_sealer(engine: Engine, data_dir: Path, key_file: Path | None) -> Sealer:
    """The sealer of this gateway; a new KEK only for a database that holds nothing sealed.

    Raises `StartupRefused` when sealed rows exist and the key is missing or unusable: a new key would
    open none of them, and they would be lost without anyone deciding so.
    """
    path = sealing_key_path(data_dir, key_file)
    try:
        held = 0 if path.exists() else sealed_rows(engine)
        return Sealer(load_or_create_kek(path, create=held == 0))
    except SealingKeyUnavailable as e:
        held = sealed_rows(engine)
        what = f"the database holds {held} sealed rows" if held else "the database holds no sealed rows"
        raise StartupRefused(
            f"{what} but {e.reason}; restore the key from its backup (GATEWAY_SEALING_KEY_FILE): without "
            "it the sealed identities and messages cannot be opened"
        ) from e


LEGACY_BATCH = 200
"""Clear rows sealed per transaction at start (rows from before 0004)."""


def seal_legacy_messages(engine: Engine, sealer: Sealer, retention: dt.timedelta) -> int:
    """Seal the clear payloads of messages stored before sealing (0004); idempotent, so every worker
    may run it at start. Their retention runs from their receipt (``retention``). Returns how many."""
    done = 0
    for _ in range(1_000_000 // LEGACY_BATCH):  # bounded: a million legacy rows at most per start
        with engine.begin() as conn:
            rows = conn.execute(
                select(Message.message_id, Message.recipient, Message.payload, Message.received_at)
                # Legacy rows only: a sealed row's payload may read JSON null, which is not SQL NULL.
                .where(Message.payload.is_not(None), Message.sealed.is_(None), Message.erased_at.is_(None))
                .limit(LEGACY_BATCH)
            ).all()
            if not rows:
                break
            for r in rows:
                sealed = sealer.seal_message(
                    r.message_id, r.recipient, {"payload": r.payload, "subjects": []}
                )
                done += conn.execute(
                    update(Message)
                    .where(Message.message_id == r.message_id, Message.sealed.is_(None))
                    .values(payload=null(), sealed=sealed, retain_until=r.received_at + retention)
                ).rowcount
    if done:
        log.info("sealed %d messages stored in clear before sealing", done)
    return done
