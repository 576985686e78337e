"""A C2SP witness (c2sp.org/tlog-witness ``add-checkpoint``) and its cosignatures (c2sp.org/tlog-cosignature).

An agency runs one (``gateway audit witness serve``) so that it need not trust the log's operator: the
log sends each new checkpoint with a consistency proof from the size the witness holds; the witness
checks the log's signature with the key it pinned, checks the proof (RFC 9162), stores the new
checkpoint (atomically, before it answers) and answers a timestamped Ed25519 cosignature. A checkpoint
that does not extend the one it holds (a fork, a rollback, a bad proof) is refused and kept, with the
one it contradicts and the proof, in an evidence file beside the state.

The wire format, byte for byte (checked against the specs and Go's ``golang.org/x/mod/sumdb/note``):

- request: ``old <size>\\n``, at most 63 base64 proof lines, ``\\n``, the signed checkpoint note;
- answers: 200 with one note signature line; 409 with ``<size>\\n`` as ``text/x.tlog.size`` when ``old``
  is not the size the witness holds (or the same size has another root); 400 malformed or ``old`` beyond
  the checkpoint; 403 no valid signature by a pinned log key; 404 another origin; 422 the proof fails;
- cosignature/v1: Ed25519 over ``cosignature/v1\\ntime <t>\\n`` + the checkpoint text; the line is
  ``— <name> base64(key ID || 8-byte big-endian t || 64-byte signature)``, key ID =
  SHA-256(name || 0x0A || 0x04 || public key)[:4]; the verifier key is
  ``name+hex(key ID)+base64(0x04 || key)``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from audit._internal.errors import AuditError, InvalidNote, InvalidProof, WitnessStateError
from audit._internal.files import write_private_file
from audit._internal.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from audit._internal.note import (
    EM_DASH,
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Checkpoint,
    NoteVerifier,
    _valid_name,
    _valid_text,
    key_id,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

ALG_COSIGNATURE_V1 = 0x04
"""The signed-note signature type of a timestamped Ed25519 cosignature (c2sp.org/tlog-cosignature)."""
COSIGNATURE_HEADER = "cosignature/v1"
SIZE_MEDIA_TYPE = "text/x.tlog.size"
"""The media type of a 409's body (the witness's size), exactly: clients compare it as is."""
SIGNATURE_MEDIA_TYPE = "text/plain; charset=utf-8"
"""What a 200 is sent as; the spec names no media type for the cosignature lines."""
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 1 << 16
"""An add-checkpoint body larger than this is refused unread (63 proof lines and a note fit easily)."""
MAX_TIMESTAMP = (1 << 63) - 1
STATE_KIND = "tlog-witness"
STATE_VERSION = 1
_SIG_PREFIX = EM_DASH + " "
log = logging.getLogger("audit.witness")
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,18})")


class MalformedRequest(AuditError):
    """An add-checkpoint body (or a witness's answer) that is not what the spec says it is."""


class WitnessKeyError(AuditError):
    """The witness's private key file is missing, unreadable or not an Ed25519 key."""


# -- cosignatures ---------------------------------------------------------------------------------


def cosignature_message(body: str, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: the header line, the time line, then the checkpoint text."""
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n{body}".encode()


@dataclass(frozen=True)
class Cosignature:
    """A cosignature that verified: by whom, when (seconds since the epoch), and its signature line."""

    witness: str
    time: int
    line: str


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's name and Ed25519 public key, as pinned by the log (type 0x04 verifier key)."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def for_key(cls, name: str, public_key: bytes) -> CosignatureVerifier:
        """The verifier of ``public_key`` (32 bytes) under ``name``, with its key ID computed."""
        if not _valid_name(name):
            raise ValueError("a witness name must be non-empty with no spaces, '+' or control characters")
        return cls(name, key_id(name, bytes([ALG_COSIGNATURE_V1]) + public_key), public_key)

    def __str__(self) -> str:
        """The verifier key string ``<name>+<hex key ID>+<base64(0x04 || public key)>``."""
        key = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{key}"

    def check(self, body: str, line: str) -> Cosignature | None:
        """The cosignature ``line`` carries for checkpoint text ``body``, if the line is this key's.

        None when the line is another key's (name and key ID are not both this key's): such lines are
        ignored, as signed-note says. Raises ``InvalidNote`` when it is this key's line and does not
        verify, or carries a timestamp of 0 or beyond 2^63 - 1.
        """
        name, blob = _split_line(line)
        if name != self.name or blob[:4] != self.key_id:
            return None
        if len(blob) != 4 + 8 + 64:
            raise InvalidNote(f"the cosignature by {name} is not 76 bytes")
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        if not 0 < timestamp <= MAX_TIMESTAMP:
            raise InvalidNote(f"the cosignature by {name} has timestamp {timestamp}")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                blob[12:], cosignature_message(body, timestamp)
            )
        except InvalidSignature as e:
            raise InvalidNote(f"the cosignature by {name} does not verify") from e
        return Cosignature(self.name, timestamp, line.rstrip("\n"))


def parse_cosignature_key(vkey: str) -> CosignatureVerifier:
    """Parse a witness verifier key ``<name>+<hex8 key ID>+<base64(0x04 || 32-byte key)>``.

    Raises ``InvalidNote`` when the name is invalid, the type is not 0x04, the key is not 32 bytes, or the
    key ID does not match the name and key.
    """
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise InvalidNote("witness key is not name+keyid+key")
    name, hex_id, b64_key = parts
    if not _valid_name(name):
        raise InvalidNote("witness key has an invalid name")
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise InvalidNote("witness key ID is not 8 lowercase hex digits")
    key = _b64(b64_key, "witness key", InvalidNote)
    if len(key) != 33 or key[0] != ALG_COSIGNATURE_V1:
        raise InvalidNote("witness key is not a cosignature/v1 key (type 0x04, 32 bytes)")
    if key_id(name, key).hex() != hex_id:
        raise InvalidNote("witness key ID does not match its name and key")
    return CosignatureVerifier(name, bytes.fromhex(hex_id), key[1:])


class WitnessSigner:
    """Makes cosignature/v1 lines with a witness's Ed25519 key under its name."""

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key = private_key
        self._verifier = CosignatureVerifier.for_key(name, public)

    @property
    def name(self) -> str:
        """The witness's key name."""
        return self._verifier.name

    @property
    def verifier(self) -> CosignatureVerifier:
        """The matching verifier."""
        return self._verifier

    def verifier_key(self) -> str:
        """The verifier key string to give the logs this witness cosigns."""
        return str(self._verifier)

    def cosign(self, body: str, timestamp: int) -> str:
        """The signature line (no newline) cosigning checkpoint text ``body`` as of ``timestamp``."""
        if not 0 < timestamp <= MAX_TIMESTAMP:
            raise ValueError("a cosignature's timestamp must be in 1..2^63-1")
        sig = self._key.sign(cosignature_message(body, timestamp))
        blob = self._verifier.key_id + struct.pack(">Q", timestamp) + sig
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode('ascii')}"


def _b64(value: str, what: str, error: type[AuditError] = MalformedRequest) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise error(f"{what} is not standard base64") from e


def _split_line(line: str) -> tuple[str, bytes]:
    """A signature line's key name and decoded blob; ``InvalidNote`` when it is not one."""
    text = line.rstrip("\n")
    if not text.startswith(_SIG_PREFIX):
        raise InvalidNote("a signature line must start with an em dash and a space")
    name, sep, b64 = text[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not _valid_name(name) or not b64 or " " in b64:
        raise InvalidNote("malformed signature line")
    blob = _b64(b64, "signature", InvalidNote)
    if len(blob) < 5:
        raise InvalidNote("signature is too short")
    return name, blob


def split_note(note: str) -> tuple[str, list[str]]:
    """A signed note's text (with its final newline) and its signature lines (without newlines).

    Structure only (signed-note: the last blank line separates them); raises ``InvalidNote``.
    """
    if len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise InvalidNote("note is too large")
    if not _valid_text(note) or not note.endswith("\n"):
        raise InvalidNote("note has control characters or does not end in a newline")
    split = note.rfind("\n\n")
    if split < 0 or split + 2 == len(note):
        raise InvalidNote("note has no signatures after a blank line")
    lines = note[split + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidNote("note has too many signatures")
    for line in lines:
        _split_line(line)
    return note[: split + 1], lines


def cosignatures_in(note: str, witnesses: Sequence[CosignatureVerifier]) -> list[Cosignature]:
    """The verified cosignatures in a note by ``witnesses`` (other lines ignored), one per witness.

    Raises ``InvalidNote`` when the note is malformed or a line by one of them does not verify.
    """
    text, lines = split_note(note)
    found: dict[str, Cosignature] = {}
    for line in lines:
        for w in witnesses:
            cosig = w.check(text, line)
            if cosig is not None and w.name not in found:
                found[w.name] = cosig
    return list(found.values())


def parse_signature_lines(body: str) -> list[str]:
    """The signature lines of a 200 answer to add-checkpoint (each ending in a newline)."""
    if not body.endswith("\n") or body == "\n":
        raise MalformedRequest("the cosignature answer does not end in a newline")
    lines = body[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedRequest("the cosignature answer has too many lines")
    for line in lines:
        try:
            _split_line(line)
        except InvalidNote as e:
            raise MalformedRequest(f"the cosignature answer holds a line that is no signature: {e}") from e
    return lines


def parse_size_answer(content_type: str | None, body: bytes) -> int:
    """The size in a 409 answer (``text/x.tlog.size``: a canonical decimal and a newline)."""
    if (content_type or "").split(";", 1)[0].strip().lower() != SIZE_MEDIA_TYPE:
        raise MalformedRequest(f"a 409 without {SIZE_MEDIA_TYPE}")
    match = re.fullmatch(rb"(0|[1-9][0-9]{0,18})\n", body)
    if match is None:
        raise MalformedRequest("a 409 whose body is not a decimal size and a newline")
    return int(match.group(1))


# -- keys -----------------------------------------------------------------------------------------


def create_witness_key(path: str | os.PathLike[str], name: str) -> WitnessSigner:
    """Make a new witness key at ``path`` (PEM, PKCS#8, mode 0600) and its public key at ``<path>.vkey``.

    Refuses (``WitnessKeyError``) when ``path`` exists: a witness's key is its identity.
    """
    target = Path(path)
    key = Ed25519PrivateKey.generate()
    signer = WitnessSigner(key, name)  # checks the name first
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    if not write_private_file(target, pem):
        raise WitnessKeyError(f"{target} exists already; a witness keeps its key")
    write_private_file(vkey_path(target), (signer.verifier_key() + "\n").encode(), replace=True)
    return signer


def vkey_path(path: str | os.PathLike[str]) -> Path:
    """Where ``create_witness_key`` puts the verifier key (with the name) beside the private key."""
    p = Path(path)
    return p.with_name(p.name + ".vkey")


def load_witness_signer(path: str | os.PathLike[str], name: str | None = None) -> WitnessSigner:
    """The witness signer of the key at ``path``, named ``name`` or as in ``<path>.vkey``.

    Raises ``WitnessKeyError`` when the key cannot be used, no name is known, or the ``.vkey`` file
    names another key.
    """
    target = Path(path)
    try:
        pem = target.read_bytes()
    except OSError as e:
        raise WitnessKeyError(f"the witness key {target} cannot be read ({e.strerror})") from e
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise WitnessKeyError(f"{target} does not hold a PEM private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise WitnessKeyError(f"{target} does not hold an Ed25519 private key")
    published: CosignatureVerifier | None = None
    try:
        published = parse_cosignature_key(vkey_path(target).read_text())
    except FileNotFoundError:
        pass
    except (OSError, InvalidNote) as e:
        raise WitnessKeyError(f"{vkey_path(target)} is not a witness verifier key: {e}") from e
    chosen = name or (published.name if published else None)
    if chosen is None:
        raise WitnessKeyError(
            f"no witness name: give --name, or keep {vkey_path(target).name} beside the key"
        )
    try:
        signer = WitnessSigner(key, chosen)
    except ValueError as e:
        raise WitnessKeyError(str(e)) from e
    if published is not None and published.public_key != signer.verifier.public_key:
        raise WitnessKeyError(f"{vkey_path(target)} holds the verifier key of another private key")
    return signer


# -- the add-checkpoint body ----------------------------------------------------------------------


@dataclass(frozen=True)
class AddCheckpoint:
    """An add-checkpoint request: the size the client believes the witness holds, a proof, the note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    def encode(self) -> bytes:
        """The request body."""
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode("ascii") for h in self.proof)]
        return ("".join(line + "\n" for line in lines) + "\n" + self.note).encode("utf-8")


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint body; raises ``MalformedRequest`` (a 400)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedRequest("the body is not UTF-8") from e
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise MalformedRequest("the body has no blank line before the checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.fullmatch(lines[0])
    if match is None or int(match.group(1)) > MAX_TIMESTAMP:
        raise MalformedRequest("the first line is not 'old <size>' in decimal without leading zeros")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        h = _b64(line, "a consistency proof line")
        if len(h) != HASH_SIZE or base64.b64encode(h).decode("ascii") != line:
            raise MalformedRequest("a consistency proof line is not the base64 of 32 bytes")
        proof.append(h)
    return AddCheckpoint(int(match.group(1)), tuple(proof), note)


# -- the witness's state --------------------------------------------------------------------------


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ServedState:
    """What a served witness keeps for its log: the pinned keys, the origin, the last cosigned checkpoint.

    The file has the keys of the polling witness's state (``verifierKeys``, ``checkpoint``, ``size``,
    ``rootHash``), so ``gateway audit verify --checkpoint STATE`` reads either.
    """

    origin: str
    verifier_keys: tuple[str, ...]
    checkpoint: str | None = None
    cosignature: str | None = None
    updated_at: str | None = None

    def verifiers(self) -> list[NoteVerifier]:
        """The pinned log keys."""
        return [parse_verifier_key(k) for k in self.verifier_keys]

    def opened(self) -> Checkpoint | None:
        """The kept checkpoint, verified again with the pinned keys (None before the first)."""
        if self.checkpoint is None:
            return None
        text, _ = open_note(self.checkpoint, self.verifiers())
        cp = parse_checkpoint(text)
        if cp.origin != self.origin:
            raise InvalidNote(f"the kept checkpoint is of {cp.origin!r}, not {self.origin!r}")
        return cp

    def to_json(self) -> dict[str, Any]:
        """The state file's content."""
        cp = self.opened()
        return {
            "version": STATE_VERSION,
            "kind": STATE_KIND,
            "origin": self.origin,
            "verifierKeys": list(self.verifier_keys),
            "checkpoint": self.checkpoint,
            "size": cp.size if cp else 0,
            "rootHash": base64.b64encode(cp.root if cp else EMPTY_ROOT).decode("ascii"),
            "cosignature": self.cosignature,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def load(cls, path: Path) -> ServedState:
        """Read a state file; raises ``WitnessStateError`` when it is not a served witness's state."""
        try:
            raw: Any = json.loads(path.read_text(encoding="utf-8"))
            if (
                not isinstance(raw, dict)
                or raw.get("version") != STATE_VERSION
                or raw.get("kind") != STATE_KIND
            ):
                raise ValueError(f"not a version {STATE_VERSION} {STATE_KIND} state")
            keys, origin = raw.get("verifierKeys"), raw.get("origin")
            if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
                raise ValueError("verifierKeys must be a non-empty list of keys")
            if not isinstance(origin, str) or not _valid_name(origin):
                raise ValueError("origin must be a log origin")
            note, cosig, updated = raw.get("checkpoint"), raw.get("cosignature"), raw.get("updatedAt")
            if not all(v is None or isinstance(v, str) for v in (note, cosig, updated)):
                raise ValueError("checkpoint, cosignature and updatedAt must be strings")
            state = cls(origin, tuple(keys), note, cosig, updated)
            state.opened()
        except (OSError, ValueError, InvalidNote) as e:
            raise WitnessStateError(f"{path}: {e}") from e
        return state

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename, directory fsync), mode 0600."""
        write_private_file(path, (json.dumps(self.to_json(), indent=2) + "\n").encode(), replace=True)


def open_state(path: Path, log_keys: Sequence[str], origin: str | None = None) -> ServedState:
    """The state at ``path``, with ``log_keys`` added to its pinned keys; a new state if there is none.

    A new state needs at least one log key; its origin is ``origin`` or the first key's name. An existing
    state keeps its origin: a different ``origin`` is refused (``WitnessStateError``).
    """
    for k in log_keys:
        try:
            parse_verifier_key(k)
        except InvalidNote as e:
            raise WitnessStateError(f"not a log verifier key (name+keyid+key, type 0x01): {e}") from e
    if path.exists():
        state = ServedState.load(path)
        if origin is not None and origin != state.origin:
            raise WitnessStateError(f"{path} witnesses {state.origin!r}, not {origin!r}")
        added = tuple(k.strip() for k in log_keys if k.strip() not in state.verifier_keys)
        if not added:
            return state
        state = ServedState(
            state.origin, state.verifier_keys + added, state.checkpoint, state.cosignature, _now_iso()
        )
    else:
        if not log_keys:
            raise WitnessStateError(
                f"{path} does not exist: the first start needs the log's verifier key (--log-key), "
                "obtained out of band, not from the log"
            )
        chosen = origin or parse_verifier_key(log_keys[0]).name
        if not _valid_name(chosen):
            raise WitnessStateError(f"{chosen!r} is not a log origin")
        state = ServedState(chosen, tuple(k.strip() for k in log_keys), updated_at=_now_iso())
    state.save(path)
    return state


# -- the witness ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The witness's answer to one add-checkpoint: HTTP status, body, media type, and why (for logs)."""

    status: int
    body: bytes
    media_type: str
    reason: str
    evidence: Path | None = None


def _refusal(status: int, reason: str, evidence: Path | None = None) -> Answer:
    return Answer(status, (reason + "\n").encode(), "text/plain; charset=utf-8", reason, evidence)


@dataclass
class TlogWitness:
    """The witness of one log: ``add_checkpoint`` checks, persists, then cosigns (thread-safe).

    One process per state file: ``lock()`` takes an exclusive lock on ``<state>.lock`` (``serve`` does).
    """

    state_path: Path
    signer: WitnessSigner
    state: ServedState
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _lock_file: IO[bytes] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(
        cls,
        state_path: Path,
        signer: WitnessSigner,
        log_keys: Sequence[str] = (),
        origin: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> TlogWitness:
        """The witness over the state at ``state_path`` (made with ``log_keys`` on first use)."""
        return cls(state_path, signer, open_state(state_path, log_keys, origin), clock)

    def lock(self) -> None:
        """Refuse to run beside another process on the same state (``WitnessStateError``)."""
        path = self.state_path.with_name(self.state_path.name + ".lock")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        handle = os.fdopen(fd, "ab")  # held until release()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.close()
            raise WitnessStateError(f"{self.state_path} is in use by another witness process") from e
        self._lock_file = handle

    def release(self) -> None:
        """Give the state file up."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def size(self) -> int:
        """The size of the last checkpoint cosigned (0 before the first)."""
        cp = self.state.opened()
        return cp.size if cp else 0

    def add_checkpoint(self, body: bytes) -> Answer:
        """Handle one add-checkpoint body, in the order tlog-witness states its checks."""
        try:
            request = parse_add_checkpoint(body)
            text, lines = split_note(request.note)
            checkpoint = parse_checkpoint(text)
        except (MalformedRequest, InvalidNote) as e:
            return _refusal(400, f"malformed: {e}")
        if checkpoint.origin != self.state.origin:
            return _refusal(404, "unknown log origin")
        try:
            open_note(request.note, self.state.verifiers())
        except InvalidNote:
            return _refusal(403, "no valid signature by a trusted log key")
        with self._lock:
            return self._add(request, checkpoint, text, lines)

    def _add(self, request: AddCheckpoint, new: Checkpoint, text: str, lines: list[str]) -> Answer:
        held = self.state.opened()
        held_size, held_root = (held.size, held.root) if held else (0, EMPTY_ROOT)

        def evidence(reason: str) -> Path | None:
            return self._save_evidence(reason, request, held_size)

        if request.old_size > new.size:
            if request.old_size == held_size:
                # It claims to follow the checkpoint we hold, with a smaller tree: a rollback.
                reason = f"the log signed {new.size} entries after the {held_size} this witness holds"
                return _refusal(400, reason, evidence(reason))
            return _refusal(400, "old size is larger than the checkpoint's size")
        if request.old_size != held_size:
            return Answer(409, f"{held_size}\n".encode(), SIZE_MEDIA_TYPE, "old size is not the size held")
        if new.size == held_size and new.root != held_root:
            reason = f"two roots signed for size {new.size}: the log was forked"
            return Answer(409, f"{held_size}\n".encode(), SIZE_MEDIA_TYPE, reason, evidence(reason))
        if request.old_size == 0 and request.proof:
            return _refusal(422, "a proof from size 0 must be empty")
        try:
            verify_consistency(held_size, new.size, request.proof, held_root, new.root)
        except InvalidProof as e:
            reason = f"the checkpoint of {new.size} does not extend the one of {held_size}: {e}"
            return _refusal(422, reason, evidence(reason))
        timestamp = max(1, int(self.clock()))
        line = self.signer.cosign(text, timestamp)
        kept = self._kept_note(text, lines)
        state = ServedState(self.state.origin, self.state.verifier_keys, kept, line, _now_iso())
        state.save(self.state_path)  # before the answer: a cosigned size is never forgotten
        self.state = state
        return Answer(200, (line + "\n").encode(), SIGNATURE_MEDIA_TYPE, f"cosigned {new.size}")

    def _kept_note(self, text: str, lines: list[str]) -> str:
        """The note as kept: the text and only the lines of pinned log keys (others are not ours to keep)."""
        verifiers = self.state.verifiers()
        kept = []
        for line in lines:
            name, blob = _split_line(line)
            if any(v.name == name and v.key_id == blob[:4] for v in verifiers):
                kept.append(line)
        return text + "\n" + "".join(line + "\n" for line in kept)

    def monitoring_note(self) -> str | None:
        """The kept checkpoint with this witness's cosignature (``GET /<sha256(origin)>/checkpoint``)."""
        state = self.state
        if state.checkpoint is None or state.cosignature is None:
            return None
        return state.checkpoint + state.cosignature + "\n"

    def _save_evidence(self, reason: str, request: AddCheckpoint, held_size: int) -> Path | None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.state_path.with_name(f"{self.state_path.name}.evidence-{stamp}.json")
        record = {
            "reason": reason,
            "origin": self.state.origin,
            "heldSize": held_size,
            "keptCheckpoint": self.state.checkpoint,
            "newCheckpoint": request.note,
            "oldSize": request.old_size,
            "consistencyProof": [base64.b64encode(h).decode("ascii") for h in request.proof],
            "observedAt": _now_iso(),
        }
        try:
            write_private_file(path, (json.dumps(record, indent=2) + "\n").encode())
        except OSError:
            return None
        return path


def witness_app(witness: TlogWitness) -> Starlette:
    """The witness over HTTP: ``POST /add-checkpoint``, ``GET /<hex sha256(origin)>/checkpoint``, ``/``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    monitoring = "/" + hashlib.sha256(witness.state.origin.encode()).hexdigest() + "/checkpoint"

    async def add_checkpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES):
            return PlainTextResponse("body too large\n", status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return PlainTextResponse("body too large\n", status_code=413)
        answer = await run_in_threadpool(witness.add_checkpoint, bytes(body))
        if answer.status != 200:
            log.warning("add-checkpoint refused %d: %s", answer.status, answer.reason)
            if answer.evidence is not None:
                log.error("evidence of log misbehaviour kept in %s", answer.evidence)
        # Set the media type as a header: Starlette would add "; charset=utf-8" to text/x.tlog.size.
        return Response(answer.body, status_code=answer.status, headers={"content-type": answer.media_type})

    async def checkpoint(_request: Request) -> Response:
        note = witness.monitoring_note()
        if note is None:
            return PlainTextResponse("no checkpoint cosigned yet\n", status_code=404)
        return PlainTextResponse(note)

    async def about(_request: Request) -> Response:
        return PlainTextResponse(
            f"tlog-witness {witness.signer.verifier_key()}\nlog {witness.state.origin}\n"
        )

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route(monitoring, checkpoint, methods=["GET"]),
            Route("/", about, methods=["GET"]),
        ]
    )
