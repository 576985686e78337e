"""Key rings: one kind of gateway key (token or delivery) with its staged successor and retired keys.

A rotation must not break what the old key signed: access tokens stay valid for their lifetime, and a
delivery signed a moment before the rotation still verifies at the agency. So each key file has two
companions beside it, both mode 0600:

- ``<key file>.next``: a staged private key (missing or empty: none). It is published in the JWKS
  and accepted by the token verifier, but signs nothing yet; ``gateway keys rotate`` promotes it.
  Staging first lets every replica (and every agency that pins keys) learn the new key before
  anything is signed with it.
- ``<key file>.retired``: the public halves of rotated-out keys, each with the time until which it is
  still published and accepted (``until``); past it a key is dead, and ``gateway keys retire`` removes
  it from the file. The old private key is gone with the rotation: it can sign nothing more.

Every process reads the three files through a ``KeyRing``, which looks at their ``stat`` before it signs
or publishes, and before it verifies at most once a second (and at once for an unknown ``kid``), so a
rotation on the shared files reaches running replicas without a restart: they sign with the new key, and
accept and publish the old one until its ``until``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from audit import write_private_file
from connectors.signatures import RequestSigner
from gateway.auth.keys import (
    DELIVERY_KEY_FILE_NAME,
    DELIVERY_KID_PREFIX,
    KEY_FILE_NAME,
    TOKEN_SIGNING_ALG,
    DeliveryKey,
    SigningKey,
    SigningKeyError,
    load_or_create_delivery_key,
    load_or_create_signing_key,
    read_signing_key,
)

if TYPE_CHECKING:
    import datetime as dt

    import httpx

    from gateway.settings import Settings

log = logging.getLogger(__name__)

KeyKind = Literal["token", "delivery"]
"""The two JWKS keys: ``token`` signs access tokens, ``delivery`` signs calls on agency systems."""

STAGED_SUFFIX: Final = ".next"
RETIRED_SUFFIX: Final = ".retired"

CHECK_INTERVAL: Final = 1.0
"""Seconds between two looks at the key files' ``stat`` by a running process."""

DEFAULT_DELIVERY_GRACE: Final = 7 * 24 * 3600
"""Seconds a rotated-out delivery key stays in the JWKS by default: a week, for agencies that verify
late (a queue, a batch) or refresh their copy of the JWKS daily."""


def key_path(settings: Settings, kind: KeyKind) -> Path:
    """The key file of ``kind``: its ``GATEWAY_*_KEY_FILE`` setting, else its name in the data dir."""
    if kind == "token":
        return settings.token_key_file or settings.data_dir / KEY_FILE_NAME
    return settings.delivery_key_file or settings.data_dir / DELIVERY_KEY_FILE_NAME


def staged_path(path: Path) -> Path:
    """Where the staged successor of the key at ``path`` is kept."""
    return path.with_name(path.name + STAGED_SUFFIX)


def retired_path(path: Path) -> Path:
    """Where the public halves of the keys rotated out of ``path`` are kept."""
    return path.with_name(path.name + RETIRED_SUFFIX)


def kid_of(kind: KeyKind, key: OKPKey) -> str:
    """The ``kid`` a key of ``kind`` has in the JWKS (RFC 7638 thumbprint, ``delivery-`` prefixed)."""
    thumbprint = key.thumbprint()
    return DELIVERY_KID_PREFIX + thumbprint if kind == "delivery" else thumbprint


def public_jwk(kind: KeyKind, key: OKPKey) -> dict[str, Any]:
    """The public half of ``key`` as the JWKS serves it: ``kid``, ``use: sig``, ``alg: Ed25519``."""
    jwk = dict(key.as_dict(private=False, use="sig", alg=TOKEN_SIGNING_ALG))
    jwk["kid"] = kid_of(kind, key)
    return jwk


@dataclass(frozen=True)
class RetiredKey:
    """A rotated-out key's public half, accepted and published until ``until`` (Unix seconds)."""

    jwk: dict[str, Any]
    retired_at: int
    until: int

    @property
    def kid(self) -> str:
        """The key's ``kid`` in the JWKS."""
        return str(self.jwk["kid"])

    def alive(self, now: float) -> bool:
        """Whether the key is still published and accepted at ``now``."""
        return now < self.until

    def as_dict(self) -> dict[str, Any]:
        """The entry as ``<key file>.retired`` holds it."""
        return {"jwk": self.jwk, "retiredAt": self.retired_at, "until": self.until}


@dataclass(frozen=True)
class KeySet:
    """What the three files of one key hold at one moment."""

    kind: KeyKind
    current: OKPKey
    staged: OKPKey | None = None
    retired: tuple[RetiredKey, ...] = ()

    @property
    def current_kid(self) -> str:
        """The ``kid`` of the key that signs."""
        return kid_of(self.kind, self.current)

    @property
    def staged_kid(self) -> str | None:
        """The ``kid`` of the staged key, if one is staged."""
        return None if self.staged is None else kid_of(self.kind, self.staged)

    def verifying_key(self, kid: str | None, now: float) -> OKPKey | None:
        """The key that verifies what ``kid`` signed: current, staged, or retired and still alive.

        A token without a ``kid`` verifies with the current key only (as before rotation existed).
        """
        if kid is None or kid == self.current_kid:
            return self.current
        if self.staged is not None and kid == self.staged_kid:
            return self.staged
        for old in self.retired:
            if old.kid == kid and old.alive(now):
                return OKPKey.import_key(old.jwk)
        return None

    def public_jwks(self, now: float) -> list[dict[str, Any]]:
        """The JWKs to publish: the current key first, then the staged one, then the living retired."""
        keys = [public_jwk(self.kind, self.current)]
        if self.staged is not None and self.staged_kid != self.current_kid:
            keys.append(public_jwk(self.kind, self.staged))
        seen = {k["kid"] for k in keys}
        for old in self.retired:
            if old.alive(now) and old.kid not in seen:
                keys.append(dict(old.jwk))
                seen.add(old.kid)
        return keys


def read_retired(path: Path) -> tuple[RetiredKey, ...]:
    """The retired keys of the key at ``path`` (none if never rotated); ``SigningKeyError`` if unusable.

    A history that cannot be read is an error, not an empty history: silently dropping it would turn
    every still-valid token signed by a retired key into a refusal.
    """
    history = retired_path(path)
    try:
        data = json.loads(history.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SigningKeyError(f"{history} cannot be read as retired keys") from e
    try:
        keys = tuple(
            RetiredKey(jwk=dict(item["jwk"]), retired_at=int(item["retiredAt"]), until=int(item["until"]))
            for item in data["retired"]
        )
        for key in keys:
            imported = OKPKey.import_key(key.jwk)
            if imported.is_private or imported.curve_name != "Ed25519" or not isinstance(key.jwk["kid"], str):
                raise ValueError("not a public Ed25519 JWK with a kid")
    except (KeyError, TypeError, ValueError, JoseError) as e:
        raise SigningKeyError(f"{history} does not hold retired keys ({e})") from e
    return keys


def write_retired(path: Path, keys: tuple[RetiredKey, ...]) -> None:
    """Replace the history of the key at ``path`` in one rename (mode 0600)."""
    body = json.dumps({"retired": [k.as_dict() for k in keys]}, indent=2, sort_keys=True) + "\n"
    write_private_file(retired_path(path), body.encode(), replace=True)


def read_key_set(path: Path, kind: KeyKind, *, create: bool = False) -> KeySet:
    """The current, staged and retired keys of the key at ``path``.

    With ``create`` a missing current key is made (first start), as the gateway always did.
    """
    if create:
        if kind == "token":
            current = load_or_create_signing_key(path.parent, path).key
        else:
            current = load_or_create_delivery_key(path.parent, path).key
    else:
        current = _read(path)
    staged_file = staged_path(path)
    # Missing or empty: nothing staged (empty, so that a Secret can always hold the file).
    staged = _read(staged_file) if staged_file.exists() and staged_file.stat().st_size else None
    return KeySet(kind=kind, current=current, staged=staged, retired=read_retired(path))


def _read(path: Path) -> OKPKey:
    try:
        return read_signing_key(path).key
    except FileNotFoundError as e:
        raise SigningKeyError(f"{path} is missing") from e


def _stamp(path: Path) -> tuple[tuple[int, int, int] | None, ...]:
    """What changes when any of the three files is replaced (a rename gives a new inode)."""
    stamps: list[tuple[int, int, int] | None] = []
    for p in (path, staged_path(path), retired_path(path)):
        try:
            st = p.stat()
        except FileNotFoundError:
            stamps.append(None)
        else:
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


class KeyRing:
    """One kind of key as a running process sees it, following rotations on the shared files.

    ``KeyRing.fixed`` holds one key and never reads a file (tests, and callers that pass a key).
    A file that cannot be read while running (being replaced by hand, say) keeps the last good set in
    use and logs a warning: the keys it holds are still the gateway's.
    """

    def __init__(
        self,
        kind: KeyKind,
        path: Path | None,
        initial: KeySet,
        *,
        check_interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind = kind
        self.path = path
        self._set = initial
        self._stamp = _stamp(path) if path is not None else ()
        self._checked = time.monotonic()
        self._generation = 0
        self._interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, kind: KeyKind, **kwargs: Any) -> KeyRing:
        """The ring over the key at ``path``, creating the key on first start."""
        return cls(kind, path, read_key_set(path, kind, create=True), **kwargs)

    @classmethod
    def for_settings(cls, settings: Settings, kind: KeyKind) -> KeyRing:
        """The ring over the key file the settings name for ``kind``."""
        return cls.open(key_path(settings, kind), kind)

    @classmethod
    def fixed(cls, key: OKPKey, kind: KeyKind) -> KeyRing:
        """A ring of one key that never changes."""
        return cls(kind, None, KeySet(kind=kind, current=key))

    def keys(self, *, force: bool = False) -> KeySet:
        """The key set now: read again when a file changed (looked at once a second, or ``force``)."""
        if self.path is None:
            return self._set
        now = time.monotonic()
        if not force and now - self._checked < self._interval:
            return self._set
        with self._lock:
            self._checked = now
            stamp = _stamp(self.path)
            if stamp != self._stamp:
                try:
                    fresh = read_key_set(self.path, self.kind)
                except SigningKeyError as e:
                    log.warning(
                        "%s key files changed but cannot be read (%s); keeping the keys I have", self.kind, e
                    )
                else:
                    if fresh.current_kid != self._set.current_kid:
                        log.info(
                            "%s key is now %s (was %s)", self.kind, fresh.current_kid, self._set.current_kid
                        )
                    self._set = fresh
                    self._stamp = stamp
                    self._generation += 1
            return self._set

    def generation(self) -> int:
        """A number that changes whenever the ring took in changed files (looked at once a second)."""
        self.keys()
        return self._generation

    # Signing and publishing look at the files every time (three stats, some microseconds, beside a
    # token's database writes or a push's HTTP call): the first signature after a rotation has the
    # new key. Verifying looks once a second, and at once for a kid it does not know.

    def signing_key(self) -> SigningKey:
        """The token-signing key that signs now (``kind`` token)."""
        return SigningKey(self.keys(force=True).current)

    def delivery_key(self) -> DeliveryKey:
        """The delivery key that signs now (``kind`` delivery)."""
        return DeliveryKey(self.keys(force=True).current)

    def verifying_key(self, kid: str | None) -> OKPKey | None:
        """The key that verifies what ``kid`` signed; an unknown ``kid`` makes the ring look at once."""
        now = self._clock()
        key = self.keys().verifying_key(kid, now)
        if key is None and self.path is not None:
            key = self.keys(force=True).verifying_key(kid, now)
        return key

    def public_jwks(self) -> list[dict[str, Any]]:
        """The JWKs this ring publishes now."""
        return self.keys(force=True).public_jwks(self._clock())


# Rotation: what ``gateway keys`` does on the files. One rotation at a time (a lock file beside the key).


@dataclass(frozen=True)
class Rotation:
    """What a stage, rotation or retirement changed, for its audit entry and the operator."""

    kind: KeyKind
    old_kid: str | None
    new_kid: str | None
    until: int | None = None
    removed: tuple[str, ...] = ()

    def audit_fields(self) -> dict[str, Any]:
        """The ``keyRotation`` block of the audit entry: key ids and times, no key material."""
        fields: dict[str, Any] = {"key": self.kind, "oldKeyId": self.old_kid, "newKeyId": self.new_kid}
        if self.until is not None:
            fields["oldKeyValidUntil"] = _iso(self.until)
        if self.removed:
            fields["removedKeyIds"] = list(self.removed)
        return fields


class RotationRefused(RuntimeError):
    """A stage or rotation that would break something (a key already staged, a missing key file)."""


@contextmanager
def _rotation_lock(path: Path) -> Iterator[None]:
    # The key's directory itself is the lock: no lock file to leave behind among the keys.
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _new_key() -> bytes:
    key = SigningKey.generate().key
    return json.dumps(key.as_dict(private=True), sort_keys=True).encode()


def stage(path: Path, kind: KeyKind) -> Rotation:
    """Make the successor of the key at ``path`` and publish it (``<file>.next``), signing nothing yet."""
    with _rotation_lock(path):
        keys = read_key_set(path, kind)
        if keys.staged is not None and keys.staged_kid != keys.current_kid:
            raise RotationRefused(f"a {kind} key is already staged ({keys.staged_kid}); rotate to it first")
        write_private_file(staged_path(path), _new_key(), replace=True)
        return Rotation(kind, old_kid=keys.current_kid, new_kid=read_key_set(path, kind).staged_kid)


def rotate(path: Path, kind: KeyKind, *, grace: int, now: int | None = None) -> Rotation:
    """Make the staged key (or a fresh one) the signing key; keep the old public half for ``grace`` s.

    The order keeps every moment consistent for a process reading the files meanwhile: the old key
    goes into the history first (published twice for a moment: harmless), the successor is staged
    (published and accepted before it signs), and only then does it replace the key file in one rename.
    A crash at any point leaves a set that verifies everything signed so far.
    """
    if grace < 0:
        raise RotationRefused("the grace period cannot be negative")
    at = int(time.time()) if now is None else now
    with _rotation_lock(path):
        keys = read_key_set(path, kind)
        if keys.staged is None or keys.staged_kid == keys.current_kid:
            write_private_file(staged_path(path), _new_key(), replace=True)
            keys = read_key_set(path, kind)
        assert keys.staged is not None
        old = RetiredKey(jwk=public_jwk(kind, keys.current), retired_at=at, until=at + grace)
        history = (*(k for k in keys.retired if k.kid != old.kid), old)
        write_retired(path, history)
        staged_file = staged_path(path)
        write_private_file(path, staged_file.read_bytes(), replace=True)  # the old private key is gone
        write_private_file(staged_file, b"", replace=True)  # nothing staged any more
        return Rotation(kind, old_kid=old.kid, new_kid=keys.staged_kid, until=old.until)


def retire(path: Path, kind: KeyKind, *, now: int | None = None) -> Rotation:
    """Remove from the history every retired key whose grace period is over."""
    at = int(time.time()) if now is None else now
    with _rotation_lock(path):
        keys = read_key_set(path, kind)
        dead = tuple(k.kid for k in keys.retired if not k.alive(at))
        if dead:
            write_retired(path, tuple(k for k in keys.retired if k.alive(at)))
        return Rotation(kind, old_kid=None, new_kid=None, removed=dead)


class RingSigner(RequestSigner):
    """Signs requests to agency systems with whatever delivery key the ring holds now (RFC 9421)."""

    def __init__(self, ring: KeyRing) -> None:
        key = ring.delivery_key()
        super().__init__(key.private_key, key.kid)
        self._ring = ring
        self._current = RequestSigner(key.private_key, key.kid)
        self._lock = threading.Lock()

    def sign(
        self, request: httpx.Request, *, key_id: str | None = None, now: dt.datetime | None = None
    ) -> None:
        """Sign ``request`` with the current delivery key (see ``RequestSigner.sign``)."""
        key = self._ring.delivery_key()
        with self._lock:
            if key.kid != self._current.key_id:
                self._current = RequestSigner(key.private_key, key.kid)
                self.key_id = key.kid
            signer = self._current
        signer.sign(request, key_id=key_id, now=now)


def _iso(seconds: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")
