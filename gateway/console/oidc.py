"""Logging in to the console with OpenID Connect: authorization code with PKCE (S256), Authlib's client.

One provider per gateway (``GATEWAY_CONSOLE_OIDC_*``). ``/console/login/oidc`` sends the browser to the
provider's authorization endpoint with a fresh ``state``, ``nonce`` and S256 ``code_challenge``;
``/console/login/oidc/callback`` lets Authlib check the state, exchange the code with its verifier and
validate the ID token (signature against the provider's JWKS, ``iss`` = the discovered issuer, ``aud``,
``exp``, ``iat``, ``nonce``), then maps two of its claims to an agency and a console role and calls
`start_session`. Anything else is a refusal (`OidcRefused`, a Dutch page), a provider that cannot be
reached `OidcUnavailable` (503); never a 500, and never a token or a claim's value in the log.

Where the login in progress lives: the console's session cookie is ``SameSite=Strict``, which a browser
does not send on the provider's redirect back (a cross-site navigation), so Authlib's state, nonce and
code verifier go in a cookie of their own: signed (itsdangerous, the console's session key), HttpOnly,
``SameSite=Lax``, scoped to ``/console/login/oidc`` and ten minutes long, deleted by the callback. The
callback answers with a page that moves on to ``/console/`` itself (a same-site navigation, so the new
Strict session cookie is sent).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from authlib.integrations.base_client.errors import OAuthError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import Response

from connectors.base import AGENCIES
from gateway.console.sessions import CONSOLE_ROLES
from gateway.errors import GatewayError
from gateway.settings import Settings

log = logging.getLogger("gateway.console")
# Authlib's client logs each PKCE code verifier at DEBUG; a verifier is a secret until it is spent.
logging.getLogger("authlib.integrations.base_client.sync_app").setLevel(logging.INFO)

FLOW_COOKIE: Final = "vd_console_oidc"
"""The cookie that holds one login in progress (state, nonce, code verifier), signed."""
FLOW_PATH: Final = "/console/login/oidc"
FLOW_SECONDS: Final = 600
"""A login must come back from the provider within this many seconds."""
LEEWAY: Final = 60
"""Seconds of clock skew allowed on the ID token's ``exp`` and ``iat``."""
HTTP_TIMEOUT: Final = 10.0
"""Seconds for one call on the provider (discovery, JWKS, token endpoint)."""
_SUBJECT: Final = re.compile(r"[\x21-\x7e]{1,128}")
_ERROR_CODE: Final = re.compile(r"[a-z_]{1,40}")
_LEAST_PRIVILEGE: Final = ("privacy_officer", "auditor")
"""When the role claim gives both roles, the first of these is taken."""


class OidcRefused(Exception):
    """A login the console does not accept; ``reason`` names the page: ``state`` (no or another login
    in progress), ``denied`` (the provider said no), ``token`` (code exchange or ID token invalid),
    ``agency`` (no known agency in the claims), ``role`` (no console role in the claims)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OidcUnavailable(Exception):
    """The provider could not be reached, or its discovery document is not usable: a 503 page."""


class OidcConfigError(GatewayError):
    """A console OpenID Connect setting that cannot work (the client secret file, say)."""


@dataclass(frozen=True)
class OidcConfig:
    """The console's OpenID Connect client: its provider, its credentials and the claims it reads."""

    issuer: str
    client_id: str
    redirect_url: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: str = "openid"
    agency_claim: str = "agency"
    role_claim: str = "roles"
    roles: Mapping[str, str] = field(
        default_factory=lambda: {"privacy_officer": "privacy_officer", "auditor": "auditor"}
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """The configured client, or None when ``GATEWAY_CONSOLE_OIDC_ISSUER`` is unset."""
        if not settings.console_oidc_issuer or not settings.console_oidc_client_id:
            return None
        secret = None
        if settings.console_oidc_client_secret_file is not None:
            path = settings.console_oidc_client_secret_file
            try:
                secret = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as e:
                raise OidcConfigError(
                    f"GATEWAY_CONSOLE_OIDC_CLIENT_SECRET_FILE: cannot read {path} ({type(e).__name__})"
                ) from e
            if not secret:
                raise OidcConfigError(f"GATEWAY_CONSOLE_OIDC_CLIENT_SECRET_FILE: {path} is empty")
        return cls(
            issuer=settings.console_oidc_issuer.rstrip("/"),
            client_id=settings.console_oidc_client_id,
            redirect_url=settings.console_oidc_redirect_url
            or f"{settings.base_url}/console/login/oidc/callback",
            client_secret=secret,
            scopes=settings.console_oidc_scopes,
            agency_claim=settings.console_oidc_agency_claim,
            role_claim=settings.console_oidc_role_claim,
            roles=dict(settings.console_oidc_roles),
        )


@dataclass(frozen=True)
class OidcIdentity:
    """Who an accepted ID token names, as the console knows people."""

    agency: str
    role: str
    subject: str


def identity(config: OidcConfig, claims: Mapping[str, Any]) -> OidcIdentity:
    """The agency, role and subject an ID token's claims give; `OidcRefused` when they give none."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
        raise OidcRefused("token")
    agency = claims.get(config.agency_claim)
    if not isinstance(agency, str) or agency not in AGENCIES:
        raise OidcRefused("agency")
    values = claims.get(config.role_claim)
    if isinstance(values, str):
        values = values.split()
    granted = (
        {config.roles[v] for v in values if isinstance(v, str) and v in config.roles}
        if isinstance(values, list)
        else set()
    )
    role = next((r for r in _LEAST_PRIVILEGE if r in granted and r in CONSOLE_ROLES), None)
    if role is None:
        raise OidcRefused("role")
    return OidcIdentity(agency=agency, role=role, subject=subject)


class OidcLogin:
    """The two steps of a login at the provider, for the console's routes."""

    def __init__(self, config: OidcConfig, signing_secret: str, https_only: bool) -> None:
        self.config = config
        self._https_only = https_only
        self._flows = URLSafeTimedSerializer(signing_secret, salt="console-oidc-flow")
        from authlib.deprecate import AuthlibDeprecationWarning  # sets its own "always" filter

        with warnings.catch_warnings():
            # Authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx, which the
            # gateway uses throughout (as in connectors/http.py); the fallback is the same client code.
            warnings.simplefilter("ignore", AuthlibDeprecationWarning)
            from authlib.integrations.starlette_client import OAuth
        registry = OAuth()
        client_kwargs: dict[str, Any] = {
            "scope": config.scopes,
            "code_challenge_method": "S256",
            "timeout": HTTP_TIMEOUT,
            "token_endpoint_auth_method": "client_secret_basic" if config.client_secret else "none",
        }
        self._client: Any = registry.register(
            "provider",
            client_id=config.client_id,
            client_secret=config.client_secret,
            server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
            client_kwargs=client_kwargs,
        )

    async def _metadata(self) -> dict[str, Any]:
        """The provider's discovery document, fetched once; it must name the configured issuer."""
        try:
            metadata: dict[str, Any] = await self._client.load_server_metadata()
        except (httpx.HTTPError, ValueError) as e:
            log.warning("console oidc: discovery failed (%s)", type(e).__name__)
            raise OidcUnavailable from e
        if metadata.get("issuer") != self.config.issuer or "authorization_endpoint" not in metadata:
            self._client.server_metadata.pop("_loaded_at", None)  # look again next time
            log.warning("console oidc: the discovery document does not name the configured issuer")
            raise OidcUnavailable
        algs = metadata.get("id_token_signing_alg_values_supported")
        if isinstance(algs, list):  # an unsigned ID token is never accepted, whatever the provider says
            metadata["id_token_signing_alg_values_supported"] = [a for a in algs if a != "none"] or ["RS256"]
        return metadata

    async def start(self, request: Request) -> Response:
        """A redirect to the provider, and the cookie that remembers this login until it comes back."""
        await self._metadata()
        flow: dict[str, Any] = {}
        try:
            response: Response = await self._client.authorize_redirect(
                _with_session(request, flow), self.config.redirect_url
            )
        except (httpx.HTTPError, ValueError, RuntimeError) as e:
            log.warning("console oidc: cannot start a login (%s)", type(e).__name__)
            raise OidcUnavailable from e
        response.set_cookie(
            FLOW_COOKIE,
            self._flows.dumps(flow),
            max_age=FLOW_SECONDS,
            path=FLOW_PATH,
            httponly=True,
            samesite="lax",
            secure=self._https_only,
        )
        return response

    async def finish(self, request: Request) -> OidcIdentity:
        """Check the provider's answer and the ID token it leads to; who it names, or a refusal."""
        flow = self._flow(request)
        await self._metadata()
        try:
            token = await self._client.authorize_access_token(_with_session(request, flow), leeway=LEEWAY)
        except OAuthError as e:  # MismatchingStateError included
            code = e.error if isinstance(e.error, str) and _ERROR_CODE.fullmatch(e.error) else "other"
            reason = {"mismatching_state": "state", "access_denied": "denied"}.get(code, "token")
            log.info("console oidc login refused (%s, %s)", reason, code)
            raise OidcRefused(reason) from e
        except JoseError as e:
            log.info("console oidc login refused (ID token: %s)", type(e).__name__)
            raise OidcRefused("token") from e
        except (httpx.HTTPError, ValueError, RuntimeError) as e:
            log.warning("console oidc: the provider failed (%s)", type(e).__name__)
            raise OidcUnavailable from e
        claims = token.get("userinfo")
        if not isinstance(claims, Mapping):  # no ID token in the answer: nothing says who this is
            log.info("console oidc login refused (no ID token)")
            raise OidcRefused("token")
        try:
            who = identity(self.config, claims)
        except OidcRefused as e:
            log.info("console oidc login refused (%s)", e.reason)
            raise
        return who

    def _flow(self, request: Request) -> dict[str, Any]:
        """The login in progress this browser started (empty when none, tampered with or too old)."""
        raw = request.cookies.get(FLOW_COOKIE)
        if not raw or len(raw) > 4096:
            return {}
        try:
            flow = self._flows.loads(raw, max_age=FLOW_SECONDS)
        except BadSignature:
            return {}
        return flow if isinstance(flow, dict) else {}

    @staticmethod
    def forget(response: Response) -> None:
        """Delete the cookie of the login in progress (the callback uses it once)."""
        response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH)

    def end_session_url(self) -> str | None:
        """The provider's RP-initiated logout endpoint (to log out there too), when it has one."""
        endpoint = self._client.server_metadata.get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        return str(httpx.URL(endpoint).copy_merge_params({"client_id": self.config.client_id}))


def _with_session(request: Request, session: dict[str, Any]) -> Request:
    """``request`` with ``session`` as its session: where Authlib keeps state, nonce and verifier."""
    scope = dict(request.scope)
    scope["session"] = session
    return Request(scope, request.receive)


def oidc_login(settings: Settings, signing_secret: str) -> OidcLogin | None:
    """The console's OpenID Connect login, or None when it is not configured."""
    config = OidcConfig.from_settings(settings)
    if config is None:
        return None
    return OidcLogin(config, signing_secret, https_only=settings.base_url.startswith("https://"))
