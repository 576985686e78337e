"""C2SP signed notes (c2sp.org/signed-note) and tlog checkpoints (c2sp.org/tlog-checkpoint), Ed25519.

Byte-compatible with Go's ``golang.org/x/mod/sumdb/note``: the same key IDs, signature lines and
verifier key strings, so Go witnesses and monitors can check our checkpoints unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit._internal.errors import InvalidNote
from audit._internal.merkle import HASH_SIZE

ALG_ED25519 = 0x01
EM_DASH = "\u2014"
_SIG_PREFIX = EM_DASH + " "
# Verifiers MUST accept at least 16 signatures (signed-note); Go's note package caps at 100.
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1 << 20
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


def _valid_name(name: str) -> bool:
    # Go's note.isValidName: non-empty, no whitespace, no '+' (the vkey separator).
    return bool(name) and "+" not in name and not any(c.isspace() for c in name) and _valid_text(name)


def _valid_text(text: str) -> bool:
    return not any((ord(c) < 0x20 and c != "\n") or ord(c) == 0x7F for c in text)


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise InvalidNote(f"{what} is not standard base64") from e


def key_id(name: str, key: bytes) -> bytes:
    """The 4-byte note key ID: SHA-256(name || 0x0A || type byte || public key)[:4].

    ``key`` is the algorithm byte followed by the public key, as in the verifier key string.
    """
    return hashlib.sha256(name.encode("utf-8") + b"\n" + key).digest()[:4]


@dataclass(frozen=True)
class NoteVerifier:
    """A named Ed25519 public key that can check note signatures."""

    name: str
    key_id: bytes
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __str__(self) -> str:
        """The verifier key string ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        key = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{key}"


def parse_verifier_key(vkey: str) -> NoteVerifier:
    """Parse a Go ``note.NewVerifier`` key string ``<name>+<hex8 key ID>+<base64(0x01 || pubkey)>``.

    Raises ``InvalidNote`` when the name is invalid, the algorithm is not Ed25519, the key is not 32
    bytes, or the key ID does not match the name and key.
    """
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise InvalidNote("verifier key is not name+keyid+key")
    name, hex_id, b64_key = parts
    if not _valid_name(name):
        raise InvalidNote("verifier key has an invalid name")
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise InvalidNote("verifier key ID is not 8 lowercase hex digits")
    key = _b64decode(b64_key, "verifier key")
    if len(key) != 33 or key[0] != ALG_ED25519:
        raise InvalidNote("verifier key is not an Ed25519 key (type 0x01, 32 bytes)")
    if key_id(name, key).hex() != hex_id:
        raise InvalidNote("verifier key ID does not match its name and key")
    return NoteVerifier(name=name, key_id=bytes.fromhex(hex_id), public_key=key[1:])


def _as_verifier(vkey: str | NoteVerifier) -> NoteVerifier:
    return vkey if isinstance(vkey, NoteVerifier) else parse_verifier_key(vkey)


def open_note(note: str, verifiers: Sequence[str | NoteVerifier]) -> tuple[str, list[NoteVerifier]]:
    """Check a signed note; returns its text and the known keys that signed it.

    Follows signed-note: the last blank line separates text from signatures; signatures by unknown
    keys are ignored (they are how witnesses cosign and keys rotate); a signature by a known key that
    does not verify rejects the whole note; a note with no verified known signature is rejected.
    """
    known = [_as_verifier(v) for v in verifiers]
    try:
        raw = note.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidNote("note is not valid UTF-8") from e
    if len(raw) > MAX_NOTE_BYTES:
        raise InvalidNote("note is too large")
    if not _valid_text(note) or not note.endswith("\n"):
        raise InvalidNote("note has control characters or does not end in a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise InvalidNote("note has no blank line before its signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    if not sig_block:
        raise InvalidNote("note has no signatures")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidNote("note has too many signatures")
    message = text.encode("utf-8")
    verified: list[NoteVerifier] = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise InvalidNote("signature line does not start with an em dash")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not _valid_name(name) or not b64 or " " in b64:
            raise InvalidNote("malformed signature line")
        blob = _b64decode(b64, "signature")
        if len(blob) < 5:
            raise InvalidNote("signature is too short")
        sig_id, sig = blob[:4], blob[4:]
        for v in known:
            if v.name == name and v.key_id == sig_id:
                if not v.verify(message, sig):
                    raise InvalidNote(f"signature by {name} does not verify")
                if v not in verified:
                    verified.append(v)
    if not verified:
        raise InvalidNote("note has no valid signature by a known key")
    return text, verified


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: the log's origin, its tree size, and the RFC 6962 root hash at that size."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The checkpoint note text: origin, decimal size, base64 root, extension lines."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii"), *self.extensions]
        return "".join(line + "\n" for line in lines)


def format_checkpoint(origin: str, size: int, root: bytes) -> str:
    """The tlog-checkpoint note text for ``size`` and ``root`` (unsigned)."""
    if not _valid_name(origin):
        raise ValueError("a checkpoint origin must be non-empty with no spaces, '+' or control characters")
    if size < 0 or len(root) != HASH_SIZE:
        raise ValueError("a checkpoint needs a size >= 0 and a 32-byte root")
    return Checkpoint(origin, size, root).body()


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text (the signed part, not the signatures); raises ``InvalidNote``."""
    if not text.endswith("\n"):
        raise InvalidNote("checkpoint does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise InvalidNote("checkpoint needs origin, size and root hash lines, none empty")
    origin, size_line, root_line, *extensions = lines
    if not _DECIMAL.fullmatch(size_line) or int(size_line) >= 1 << 63:
        raise InvalidNote("checkpoint tree size is not a decimal number without leading zeros")
    root = _b64decode(root_line, "checkpoint root hash")
    if len(root) != HASH_SIZE or base64.b64encode(root).decode("ascii") != root_line:
        raise InvalidNote("checkpoint root hash is not the base64 of 32 bytes")
    return Checkpoint(origin=origin, size=int(size_line), root=root, extensions=tuple(extensions))


def verify_checkpoint(note: str, vkey: str | NoteVerifier, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint against the log's verifier key; returns the checkpoint.

    The checkpoint's origin must equal ``origin``, or, when none is given, the key's name (this log
    names its key after its origin, as tlog-checkpoint recommends). Raises ``InvalidNote``.
    """
    verifier = _as_verifier(vkey)
    text, _ = open_note(note, [verifier])
    checkpoint = parse_checkpoint(text)
    expected = verifier.name if origin is None else origin
    if checkpoint.origin != expected:
        raise InvalidNote(f"checkpoint origin {checkpoint.origin!r} is not {expected!r}")
    return checkpoint


class LogSigner:
    """Signs checkpoints for one log with an Ed25519 key; the key name is the log's origin."""

    def __init__(self, private_key: Ed25519PrivateKey, origin: str) -> None:
        if not _valid_name(origin):
            raise ValueError("a log origin must be non-empty with no spaces, '+' or control characters")
        self._key = private_key
        self._origin = origin
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._verifier = NoteVerifier(
            name=origin, key_id=key_id(origin, bytes([ALG_ED25519]) + public), public_key=public
        )

    @property
    def origin(self) -> str:
        """The log's origin line, also the note key name."""
        return self._origin

    @property
    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return self._verifier

    def verifier_key(self) -> str:
        """The verifier key string to publish (``GET /v1/audit/verifier-key``)."""
        return str(self._verifier)

    def sign_note(self, text: str) -> str:
        """Sign note text (which must end in a newline) and return the signed note."""
        if not text.endswith("\n") or not _valid_text(text):
            raise ValueError("note text must end in a newline and hold no control characters")
        sig = self._key.sign(text.encode("utf-8"))
        blob = base64.b64encode(self._verifier.key_id + sig).decode("ascii")
        return f"{text}\n{_SIG_PREFIX}{self._origin} {blob}\n"

    def sign_checkpoint(self, size: int, root: bytes) -> str:
        """A signed tlog checkpoint for ``size`` leaves with root hash ``root``."""
        return self.sign_note(format_checkpoint(self._origin, size, root))
