"""Who is using the console: one-time login links, the session they start, and its CSRF token.

A link from ``gateway console-link`` carries a random token that the database knows only by its
SHA-256, with an expiry of a few minutes; the first visit spends it in one conditional UPDATE, so a
second visit (or a second gateway process) is refused. The session it starts is Starlette's signed
cookie (itsdangerous), scoped to ``/console``, HttpOnly, SameSite=Strict, Secure behind https, with an
idle expiry (the cookie's signed age, renewed on each request) and an absolute one (``created``).
An OpenID Connect callback starts the very same session with `start_session`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Engine
from starlette.requests import Request

from audit import UTCDateTime, write_private_file
from gateway.auth import Principal
from gateway.auth.roles import ROLE_SCOPES

log = logging.getLogger("gateway.console")

CONSOLE_ROLES: Final = ("privacy_officer", "auditor")
"""The roles that may use the console."""
LINK_TTL = dt.timedelta(minutes=5)
"""How long a login link is valid before its first use."""
IDLE_SECONDS = 30 * 60
"""A session unused this long has ended."""
ABSOLUTE_SECONDS = 8 * 60 * 60
"""A session ends this long after login, used or not."""
SESSION_COOKIE = "vd_console"
SESSION_KEY_FILE = "console-session.key"
"""The key that signs session cookies, in the data directory (0600, made at first start)."""

_meta = sa.MetaData()
login_links = sa.Table(
    "console_login_links",
    _meta,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("agency", sa.String(64), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("used_at", UTCDateTime(), nullable=True),
)


class LinkRefused(Exception):
    """A login link that cannot log anyone in; ``reason`` is ``used``, ``expired`` or ``unknown``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ConsoleUser:
    """The person behind a console session: their agency, role and who they are (for the log)."""

    agency: str
    role: str
    subject: str

    @property
    def principal(self) -> Principal:
        """The same principal an API token of this role would give, so every visibility rule applies."""
        return Principal(
            client_id=f"console:{self.subject}",
            agency=self.agency,
            role=self.role,
            scopes=ROLE_SCOPES[self.role],
        )

    @property
    def sees_all(self) -> bool:
        """An auditor sees every entry; a privacy officer only those naming their agency."""
        return "audit:all" in ROLE_SCOPES[self.role]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint_login_token(engine: Engine, agency: str, role: str, subject: str = "console-link") -> str:
    """A new one-time login token for ``agency`` and ``role``; only its digest is stored."""
    if role not in CONSOLE_ROLES:
        raise ValueError(f"role must be one of {', '.join(CONSOLE_ROLES)}")
    token = secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(login_links).values(
                token_hash=_digest(token),
                agency=agency,
                role=role,
                subject=subject,
                created_at=now,
                expires_at=now + LINK_TTL,
            )
        )
    return token


def spend_login_token(engine: Engine, token: str) -> ConsoleUser:
    """The user a token logs in, spending it; raises `LinkRefused` for a used, expired or unknown one."""
    digest = _digest(token)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        spent = conn.execute(
            sa.update(login_links)
            .where(
                login_links.c.token_hash == digest,
                login_links.c.used_at.is_(None),
                login_links.c.expires_at > now,
            )
            .values(used_at=now)
        ).rowcount
        row = conn.execute(sa.select(login_links).where(login_links.c.token_hash == digest)).one_or_none()
    if row is None:
        raise LinkRefused("unknown")
    if spent != 1:
        # Used at all, even a moment after this caller's ``now`` (a concurrent spend won), is "used".
        raise LinkRefused("used" if row.used_at is not None else "expired")
    if row.role not in CONSOLE_ROLES:
        raise LinkRefused("unknown")
    return ConsoleUser(agency=row.agency, role=row.role, subject=row.subject)


def session_secret(data_dir: Path, file: Path | None = None) -> str:
    """The cookie-signing key in ``file`` (``GATEWAY_CONSOLE_SESSION_KEY_FILE``, shared by replicas) or in
    the data directory, made once (exclusively: workers and replicas starting at once agree on one)."""
    path = file if file is not None else data_dir / SESSION_KEY_FILE
    if not path.exists():
        write_private_file(path, secrets.token_hex(32).encode("ascii"))
    return path.read_text().strip()


def start_session(request: Request, agency: str, role: str, subject: str) -> None:
    """Log ``subject`` in as ``role`` of ``agency``: a fresh session (a new CSRF token), nothing kept.

    The one entry point for every way of logging in (a one-time link now, OpenID Connect later).
    """
    if role not in CONSOLE_ROLES:
        raise ValueError(f"role must be one of {', '.join(CONSOLE_ROLES)}")
    lang = request.session.get("lang")
    request.session.clear()
    now = int(time.time())
    request.session.update(
        {
            "agency": agency,
            "role": role,
            "subject": subject,
            "created": now,
            "seen": now,
            "csrf": secrets.token_urlsafe(32),
        }
    )
    if lang in ("nl", "en"):
        request.session["lang"] = lang
    log.info("console session started (role %s, agency %s)", role, agency)


def end_session(request: Request) -> None:
    """Log out: the cookie is emptied (the middleware then deletes it)."""
    request.session.clear()


def current_user(request: Request) -> ConsoleUser | None:
    """The logged-in user, or None when there is no session or it has expired (it is then ended)."""
    s: dict[str, Any] = request.session
    try:
        agency, role, subject = str(s["agency"]), str(s["role"]), str(s["subject"])
        created, seen = int(s["created"]), int(s["seen"])
    except (KeyError, TypeError, ValueError):
        return None
    now = int(time.time())
    if role not in CONSOLE_ROLES or now - created > ABSOLUTE_SECONDS or now - seen > IDLE_SECONDS:
        lang = s.get("lang")
        s.clear()
        if lang in ("nl", "en"):
            s["lang"] = lang
        return None
    s["seen"] = now
    return ConsoleUser(agency=agency, role=role, subject=subject)


def csrf_token(request: Request) -> str:
    """This session's CSRF token, for a hidden field in every form."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """Whether a form's CSRF field matches this session's token."""
    expected = request.session.get("csrf")
    return (
        isinstance(expected, str) and isinstance(submitted, str) and hmac.compare_digest(expected, submitted)
    )
