"""One error root for the audit package, with precise subclasses.

The package does not depend on the gateway: the gateway maps these to its own problem documents
(``AuditWriteError`` to a 503 "no audit, no exchange", ``EntryNotFound`` to a 404, ...).
"""

from __future__ import annotations


class AuditError(Exception):
    """Root of every error raised by the audit package."""

    @property
    def reason(self) -> str:
        """The human-readable reason, as given when raised."""
        return str(self)


class InvalidEntry(AuditError, ValueError):
    """An entry cannot be logged: not a JSON object, or not representable in RFC 8785 JSON."""


class InvalidProof(AuditError):
    """An inclusion or consistency proof does not verify."""


class InvalidNote(AuditError):
    """A signed note, checkpoint or verifier key is malformed, or its signatures do not verify."""


class AuditWriteError(AuditError):
    """Entries could not be committed to the log; nothing of the failed call was written.

    ``writes_failed`` is True when the caller's own ``writes`` (``SqlAuditStore.append(...,
    writes=...)``) raised: ``__cause__`` is what they raised, and neither they nor the entries were
    committed. False when the log itself could not commit (``__cause__`` is the database's error).
    """

    def __init__(self, message: str, *, writes_failed: bool = False) -> None:
        super().__init__(message)
        self.writes_failed = writes_failed


class EntryNotFound(AuditError, LookupError):
    """An index or tree size beyond what the log holds."""


class LogCorrupted(AuditError):
    """The stored log contradicts itself or a checkpoint it signed earlier; the log refuses to sign."""


class SigningKeyUnavailable(AuditError):
    """The signing key (or its history) is missing, unreadable, or not an Ed25519 key."""


class WitnessStateError(AuditError):
    """A witness's state file is missing what it needs, is not a state file, or is in use elsewhere."""
