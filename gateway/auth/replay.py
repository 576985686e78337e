"""The spent-assertion store: a client assertion's ``jti`` is accepted once (RFC 7523 section 3, item 7)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
import time
from typing import Final

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.db import transaction, utcnow
from gateway.models import UsedAssertion

#: Room for the jti in ``UsedAssertion.jti_key`` (128) after a client id (<= 64) and ':'.
_MAX_RAW_JTI: Final = 63

#: Expired rows are deleted at most this often (seconds), by whichever request comes along.
PURGE_INTERVAL: Final = 60.0


def jti_key(client_id: str, jti: str) -> str:
    """The primary key of a spent assertion: ``client_id:jti``; a long jti is replaced by its hash."""
    if len(jti) > _MAX_RAW_JTI:
        digest = base64.urlsafe_b64encode(hashlib.sha256(jti.encode()).digest()).rstrip(b"=").decode()
        jti = f"sha256#{digest}"
    return f"{client_id}:{jti}"


class ReplayGuard:
    """Records spent ``jti`` values in ``UsedAssertion`` until their assertion has expired."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def spend(self, client_id: str, jti: str, expires_at: dt.datetime) -> bool:
        """Record the jti; ``False`` when it was spent before (the insert hits the primary key)."""
        try:
            with transaction(self._sessions) as session:
                if self._purge_due():
                    session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < utcnow()))
                session.add(UsedAssertion(jti_key=jti_key(client_id, jti), expires_at=expires_at))
                session.flush()
        except IntegrityError:
            return False
        return True

    def purge(self) -> int:
        """Delete every expired row now; returns how many went."""
        with transaction(self._sessions) as session:
            result = session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < utcnow()))
            return int(getattr(result, "rowcount", 0) or 0)

    def _purge_due(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if now < self._next_purge:
                return False
            self._next_purge = now + PURGE_INTERVAL
            return True
