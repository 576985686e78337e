"""Witnessing: keep the last checkpoint seen, and accept a new one only if the log still extends it.

An agency that witnesses the log keeps, outside the gateway's database, the last signed checkpoint it
verified. Each time it looks again it fetches the newest checkpoint and a consistency proof from the
old size to the new one, and checks the signature (with the key it pinned at the start) and the proof
(RFC 9162 §2.1.4.2). A log that was rewritten, truncated, or shows different histories to different
parties (a fork) cannot pass, even if whoever did it holds the signing key: the proof links the new
root to the root the witness already holds. Two checkpoints signed by the same key that do not fit
together are proof of misbehaviour, so on failure the witness keeps them as evidence.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from audit._internal.errors import AuditError, InvalidNote, InvalidProof, WitnessStateError
from audit._internal.files import write_private_file
from audit._internal.merkle import HASH_SIZE
from audit._internal.note import Checkpoint, open_note, parse_checkpoint, parse_verifier_key
from audit._internal.verify import check_consistency

STATE_VERSION = 1


class WitnessAlarm(AuditError):
    """The log contradicts the checkpoint the witness kept: a fork, a rewrite, a rollback or a bad signature.

    ``evidence`` is the file where both checkpoints and the proof were saved, if one was written.
    """

    def __init__(self, reason: str, evidence: Path | None = None) -> None:
        super().__init__(reason)
        self.evidence = evidence


class LogUnavailable(AuditError):
    """The log could not be asked (network, HTTP error, malformed answer): nothing was checked."""


class LogSource(Protocol):
    """Where a witness gets checkpoints and proofs: the gateway's API, or a store in the same process."""

    def checkpoint(self) -> str:
        """The newest signed checkpoint."""
        ...

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes."""
        ...


class HttpLogSource:
    """``LogSource`` over the gateway's audit API, with a bearer token of scope ``audit`` or ``audit:all``."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self._base = base_url.rstrip("/")
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {token}"}, timeout=timeout, follow_redirects=False
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> HttpLogSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, int] | None = None) -> httpx.Response:
        url = f"{self._base}/v1/audit/{path}"
        try:
            response = self._client.get(url, params=params)
        except httpx.HTTPError as e:
            raise LogUnavailable(f"GET {url} failed: {type(e).__name__}: {e}") from e
        if response.status_code != 200:
            title = ""
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                try:
                    problem = response.json()
                    title = f": {problem.get('title')} ({problem.get('detail')})"
                except ValueError:
                    pass
            raise LogUnavailable(f"GET {url} answered {response.status_code}{title}")
        return response

    def checkpoint(self) -> str:
        """``GET /v1/audit/checkpoint``."""
        return self._get("checkpoint").text

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """``GET /v1/audit/proofs/consistency?from=size1&to=size2``, checked for shape."""
        response = self._get("proofs/consistency", {"from": size1, "to": size2})
        try:
            body: Any = response.json()
            if body.get("from") != size1 or body.get("to") != size2:
                raise ValueError("the proof is for other sizes")
            hashes = [base64.b64decode(h, validate=True) for h in body["hashes"]]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise LogUnavailable(f"malformed consistency proof: {e}") from e
        if any(len(h) != HASH_SIZE for h in hashes):
            raise LogUnavailable("malformed consistency proof: a hash is not 32 bytes")
        return hashes


@dataclass(frozen=True)
class WitnessState:
    """What a witness keeps: the keys it trusts and the last checkpoint it verified (if any)."""

    verifier_keys: tuple[str, ...]
    checkpoint: str | None = None
    updated_at: str | None = None

    def opened(self) -> Checkpoint | None:
        """The kept checkpoint, verified again with the kept keys."""
        if self.checkpoint is None:
            return None
        return _open(self.checkpoint, self.verifier_keys)

    def to_json(self) -> dict[str, Any]:
        cp = self.opened()
        return {
            "version": STATE_VERSION,
            "verifierKeys": list(self.verifier_keys),
            "checkpoint": self.checkpoint,
            "origin": cp.origin if cp else None,
            "size": cp.size if cp else None,
            "rootHash": base64.b64encode(cp.root).decode() if cp else None,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def load(cls, path: Path) -> WitnessState:
        """Read a state file; raises ``WitnessStateError`` if it is not one."""
        try:
            raw: Any = json.loads(path.read_text())
            if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
                raise ValueError(f"not a version {STATE_VERSION} witness state")
            keys = raw["verifierKeys"]
            if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
                raise ValueError("verifierKeys must be a non-empty list of keys")
            for k in keys:
                parse_verifier_key(k)
            note = raw.get("checkpoint")
            if note is not None and not isinstance(note, str):
                raise ValueError("checkpoint must be a signed note")
            updated = raw.get("updatedAt")
        except (OSError, ValueError, KeyError, InvalidNote) as e:
            raise WitnessStateError(f"{path}: {e}") from e
        state = cls(tuple(keys), note, updated if isinstance(updated, str) else None)
        try:
            state.opened()
        except InvalidNote as e:
            raise WitnessStateError(f"{path}: the kept checkpoint does not verify: {e}") from e
        return state

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename): a crash leaves the old state or the new one."""
        _write_atomically(path, json.dumps(self.to_json(), indent=2) + "\n")


@dataclass(frozen=True)
class WitnessResult:
    """A checkpoint accepted: the size the witness held before (None on the first run) and the new one."""

    previous: Checkpoint | None
    current: Checkpoint
    checkpoint: str

    @property
    def grew_by(self) -> int:
        """Entries added since the last check."""
        return self.current.size - (self.previous.size if self.previous else 0)


def _open(note: str, keys: Sequence[str]) -> Checkpoint:
    verifiers = [parse_verifier_key(k) for k in keys]
    text, signed_by = open_note(note, verifiers)
    cp = parse_checkpoint(text)
    if cp.origin not in {v.name for v in signed_by}:
        raise InvalidNote(f"checkpoint origin {cp.origin!r} is not the name of the key that signed it")
    return cp


def _write_atomically(path: Path, text: str) -> None:
    write_private_file(path, text.encode("utf-8"), replace=True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def witness(
    source: LogSource,
    state_path: Path,
    *,
    verifier_keys: Sequence[str] = (),
) -> WitnessResult:
    """Check the log's newest checkpoint against the one kept in ``state_path``; keep it if it fits.

    The first run needs ``verifier_keys`` (the log's published key, obtained out of band); later runs
    use the keys in the state, and keys given here are added to them (after a key rotation). The state
    is written only on success. Raises ``WitnessAlarm`` when the log contradicts the kept checkpoint
    (both notes and the proof are saved beside the state as evidence), ``LogUnavailable`` when the log
    could not be asked, ``WitnessStateError`` for an unusable state file.
    """
    if state_path.exists():
        state = WitnessState.load(state_path)
        added = tuple(k for k in verifier_keys if k not in state.verifier_keys)
        state = WitnessState(state.verifier_keys + added, state.checkpoint, state.updated_at)
    else:
        if not verifier_keys:
            raise WitnessStateError(
                f"{state_path} does not exist: the first run needs the log's verifier key "
                "(obtained out of band, not from the log being checked)"
            )
        for k in verifier_keys:
            try:
                parse_verifier_key(k)
            except InvalidNote as e:
                raise WitnessStateError(f"not a note verifier key: {e}") from e
        state = WitnessState(tuple(verifier_keys))

    old = state.opened()
    new_note = source.checkpoint()
    proof: list[bytes] = []

    def alarm(reason: str) -> WitnessAlarm:
        evidence = _save_evidence(state_path, reason, state.checkpoint, new_note, proof)
        return WitnessAlarm(reason, evidence)

    try:
        new = _open(new_note, state.verifier_keys)
    except InvalidNote as e:
        raise alarm(f"the new checkpoint does not verify with the pinned key: {e}") from e
    if old is not None and state.checkpoint is not None:
        if new.origin != old.origin:
            raise alarm(f"the log's origin changed from {old.origin!r} to {new.origin!r}")
        if new.size < old.size:
            raise alarm(
                f"the log shrank from {old.size} to {new.size} entries: it was truncated or rewritten"
            )
        if new.size == old.size and new.root != old.root:
            raise alarm(f"two different roots signed for the same size {new.size}: the log was forked")
        if new.size > old.size and old.size > 0:
            proof = source.consistency_proof(old.size, new.size)
        try:
            check_consistency(state.checkpoint, new_note, proof, list(state.verifier_keys))
        except (InvalidProof, InvalidNote) as e:
            raise alarm(
                f"the checkpoint of {new.size} entries does not extend the kept one of {old.size}: "
                f"the log was forked or rewritten ({e})"
            ) from e
    WitnessState(state.verifier_keys, new_note, _now()).save(state_path)
    return WitnessResult(old, new, new_note)


def _save_evidence(
    state_path: Path, reason: str, old_note: str | None, new_note: str, proof: Sequence[bytes]
) -> Path | None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = state_path.with_name(f"{state_path.name}.evidence-{stamp}.json")
    record = {
        "reason": reason,
        "keptCheckpoint": old_note,
        "newCheckpoint": new_note,
        "consistencyProof": [base64.b64encode(h).decode() for h in proof],
        "observedAt": _now(),
    }
    try:
        _write_atomically(path, json.dumps(record, indent=2) + "\n")
    except OSError:
        return None
    return path
