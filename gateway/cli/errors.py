"""How a failed command is said: one line naming the file, setting, URL or database; never a traceback."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import pydantic

from gateway.cli._common import DEBUG_ENV


def describe_error(error: BaseException) -> tuple[str, int]:
    """The one line (without ``error:``) that says what went wrong, and the exit code.

    Expected errors say what they are about: the file, the setting, the URL, the database. Anything else
    is a bug: its type only, since its message could hold anything, and how to see the traceback.
    """
    import httpx
    import pydantic
    import sqlalchemy.exc
    from pydantic_settings import SettingsError

    from audit import AuditError, InvalidEntry
    from connectors.base import ConnectorError
    from gateway.auth.keys import SigningKeyError
    from gateway.errors import GatewayError

    message: str
    match error:
        case typer.TyperException():
            # Typer's own usage errors (exit 2) and the commands' expected failures (exit 1).
            message = error.format_message()
            ctx = getattr(error, "ctx", None)
            if error.exit_code == 2 and ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
            return _one_line(message), error.exit_code
        case pydantic.ValidationError():
            return _one_line(f"bad settings: {_validation_problems(error)}"), 1
        case SettingsError():
            return _one_line(f"bad settings: {_settings_source_problem(error)}"), 1
        case GatewayError():
            message = error.detail
        case InvalidEntry():
            # Its text can quote a value of the entry, and an entry is about a person: say what failed only.
            message = "an audit entry could not be written (InvalidEntry); nothing was logged"
        case AuditError():
            message = error.reason
        case ConnectorError() | SigningKeyError():
            message = str(error)
        case httpx.TransportError() | httpx.InvalidURL():
            message = f"{_request_url(error)}{_reason(error)}"
        case sqlalchemy.exc.ArgumentError():
            # Raised for a URL SQLAlchemy cannot parse or has no driver for; the text holds no password.
            message = f"GATEWAY_DATABASE_URL is not a usable database URL: {error}"
        case sqlalchemy.exc.DBAPIError():
            # The driver's first line only: SQLAlchemy's own text repeats the statement and its parameters.
            message = (
                f"database unavailable: {_first_line(error.orig)} "
                "(GATEWAY_DATABASE_URL, or gateway.db in the data directory)"
            )
        case OSError():
            message = _os_reason(error)
        case _:
            return (
                f"unexpected {type(error).__name__} (a bug; please report it); "
                f"rerun with {DEBUG_ENV}=1 to see the traceback",
                1,
            )
    return _one_line(message), 1


def _one_line(message: str) -> str:
    return re.sub(r"\s*\n\s*", " ", message.strip()) or "failed"


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else type(error).__name__


def _validation_problems(error: pydantic.ValidationError) -> str:
    """``GATEWAY_PORT: Input should be a valid integer; ...``: names and reasons, never the values."""
    prefix = "GATEWAY_" if error.title == "Settings" else f"{error.title}."
    parts = []
    for problem in error.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in problem["loc"])
        reason = problem["msg"].removeprefix("Value error, ")
        parts.append(f"{prefix}{where.upper()}: {reason}" if where else reason)
    return "; ".join(parts)


def _settings_source_problem(error: Exception) -> str:
    """``GATEWAY_AGENCY_URLS: not valid JSON``, from pydantic-settings' 'error parsing value for field'."""
    field = re.search(r'field "(\w+)"', str(error))
    if field is None:
        return str(error)
    cause = error.__cause__
    why = "not valid JSON" if isinstance(cause, json.JSONDecodeError) else "cannot be read"
    return f"GATEWAY_{field.group(1).upper()}: {why}"


def _request_url(error: Exception) -> str:
    try:
        request = error.request  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is attached
        return ""
    return f"{request.method} {request.url}: "


def _reason(error: Exception) -> str:
    """Why a connection failed, e.g. ``connection refused``, ``timed out``."""
    text = str(error).strip()
    errno_text = re.fullmatch(r"\[Errno -?\d+\] (.+)", text)
    if errno_text:
        text = errno_text.group(1)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _os_reason(error: OSError) -> str:
    what = error.strerror or str(error) or type(error).__name__
    if error.filename is None:
        return what
    if error.filename2 is not None:
        return f"{error.filename} -> {error.filename2}: {what}"
    return f"{error.filename}: {what}"
