"""One error root with precise subclasses; ``gateway.api`` maps them to RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Root of every error the gateway answers with a problem document."""

    status: int = 500
    title: str = "Internal error"
    type_: str = "about:blank"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        reasons: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.reasons = reasons
        self.headers = headers or {}
        self.extra = extra or {}

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 body."""
        body: dict[str, Any] = {
            "type": self.type_,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        if self.reasons is not None:
            body["reasons"] = self.reasons
        body.update(self.extra)
        return body


class InvalidInput(GatewayError):
    """The request is malformed; ``errors`` names each bad field."""

    status = 400
    title = "Invalid input"
    type_ = "https://veilig-delen.example/problems/invalid-input"

    @classmethod
    def field(cls, field: str, message: str) -> InvalidInput:
        """One bad field."""
        return cls(f"{field}: {message}", errors=[{"field": field, "message": message}])


class BodyTooLarge(GatewayError):
    """The request body is larger than ``max_body_bytes``; refused before it is read to the end."""

    status = 413
    title = "Body too large"
    type_ = "https://veilig-delen.example/problems/body-too-large"


class Unauthenticated(GatewayError):
    """No or an invalid access token."""

    status = 401
    title = "Unauthenticated"
    type_ = "https://veilig-delen.example/problems/unauthenticated"

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        super().__init__(
            detail,
            headers={"WWW-Authenticate": f'Bearer realm="veilig-delen", error="{error}"'},
        )


class Forbidden(GatewayError):
    """Authenticated, but the scope, role or agency does not allow the call."""

    status = 403
    title = "Forbidden"
    type_ = "https://veilig-delen.example/problems/forbidden"


class PolicyDenied(GatewayError):
    """The policy refused; ``reasons`` says which rule."""

    status = 403
    title = "Refused by policy"
    type_ = "https://veilig-delen.example/problems/policy-denied"


class NotFound(GatewayError):
    """No such resource (or not visible to the caller)."""

    status = 404
    title = "Not found"
    type_ = "https://veilig-delen.example/problems/not-found"


class Conflict(GatewayError):
    """The request conflicts with the state of the resource, e.g. an illegal step move."""

    status = 409
    title = "Conflict"
    type_ = "https://veilig-delen.example/problems/conflict"


class PolicyLoadFailed(GatewayError):
    """A new policy revision did not compile or its tests failed; the old one stays active."""

    status = 422
    title = "Policy not loaded"
    type_ = "https://veilig-delen.example/problems/policy-load-failed"


DEPENDENCY_RETRY_AFTER = 5
"""Seconds a caller is told to wait (``Retry-After``) when a dependency cannot serve the call."""


class DependencyUnavailable(GatewayError):
    """A dependency (database, audit log, policy engine) cannot serve the call now: 503 with
    ``Retry-After``, never a 500. The detail names the kind of fault, never its message."""

    status = 503
    title = "Service unavailable"
    type_ = "https://veilig-delen.example/problems/dependency-unavailable"

    def __init__(self, detail: str, *, retry_after: int = DEPENDENCY_RETRY_AFTER, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after))


class DatabaseUnavailable(DependencyUnavailable):
    """The database is locked, full or unreachable (``gateway.db.fault_kind``); retry later."""

    title = "Database unavailable"
    type_ = "https://veilig-delen.example/problems/database-unavailable"


class AuditUnavailable(DependencyUnavailable):
    """The audit log could not be written: no audit, no exchange."""

    status = 503
    title = "Audit log unavailable"
    type_ = "https://veilig-delen.example/problems/audit-unavailable"


HOLDER_RETRY_AFTER = 30
"""Seconds a requester is told to wait (``Retry-After``) after the holder's system timed out or was down."""


class UpstreamFailed(GatewayError):
    """An agency system failed: unreachable, a 5xx, an answer that is not valid, or a refusal (502).

    ``holder`` and ``error`` (the kind of failure, never the system's own words) go into the problem
    document; ``retry_after`` adds ``Retry-After`` when trying later may help.
    """

    status = 502
    title = "Agency system failed"
    type_ = "https://veilig-delen.example/problems/upstream-failed"

    def __init__(
        self,
        detail: str,
        *,
        holder: str | None = None,
        error: str | None = None,
        retry_after: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detail, **kwargs)
        if holder is not None:
            self.extra.setdefault("holder", holder)
        if error is not None:
            self.extra.setdefault("error", error)
        if retry_after is not None:
            self.headers.setdefault("Retry-After", str(retry_after))


class UpstreamTimeout(UpstreamFailed):
    """An agency system did not answer within the deadline (``GATEWAY_REQUEST_TIMEOUT``): 504."""

    status = 504
    title = "Agency system timed out"
    type_ = "https://veilig-delen.example/problems/upstream-timeout"


class StartupRefused(GatewayError):
    """The gateway will not start as configured (e.g. a log with entries but no signing key).

    Never answered over HTTP: the command line prints ``detail`` as one line and exits 1.
    """

    status = 503
    title = "Gateway not started"
    type_ = "https://veilig-delen.example/problems/startup-refused"
