"""A test stand-in for an agency's OpenID Connect provider, built from Authlib's server pieces.

Not an identity provider: it authenticates nobody. Its authorization endpoint approves ``user`` at
once (no login page), its token endpoint is RFC 6749's authorization code grant with client_secret_basic,
PKCE (RFC 7636, S256 only and required: an authorization request without a ``code_challenge`` and a
token request without its ``code_verifier`` are refused) and OpenID Connect's ``id_token`` (RS256,
signed with a key published at ``/jwks``). Discovery at ``/.well-known/openid-configuration``.

Knobs for the tests: ``user`` (the claims the ID token carries), ``audience``, ``lifetime`` (seconds;
negative gives an expired token), ``forge`` (sign with a key that is not the published one, under its
``kid``); ``authorize_requests`` and ``token_requests`` record what the console sent.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CLIENT_ID = "veilig-delen-console"


@dataclass
class ProviderKnobs:
    """What the stand-in puts in its next ID tokens, and what it saw."""

    issuer: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    audience: str = CLIENT_ID
    lifetime: int = 300
    forge: bool = False
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, fields: dict[str, str]) -> None:
        self._data = fields
        self._datalist = {k: [v] for k, v in fields.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, method: str, uri: str, fields: dict[str, str], headers: Any) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = _Payload(fields)
        self._fields = fields

    @property
    def form(self) -> dict[str, str]:
        return self._fields if self.method == "POST" else {}

    @property
    def args(self) -> dict[str, str]:
        return self._fields if self.method == "GET" else {}


@dataclass
class _Client:
    client_id: str
    secret: str = field(repr=False)
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in ("openid", "profile"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, secret: str) -> bool:
        return hmac.compare_digest(secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: dict[str, Any]
    nonce: str | None
    challenge: str | None
    method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _S256Required(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only, required of every client (confidential ones too)."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        if not grant.request.payload.data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge'")
        if grant.request.payload.data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: _Code) -> str | None:
        return authorization_code.challenge

    def get_authorization_code_challenge_method(self, authorization_code: _Code) -> str | None:
        return authorization_code.method


class StandInProvider:
    """The stand-in's state and its ASGI app (``app``); serve it with ``tests.live.serve``."""

    def __init__(self, redirect_uri: str, client_secret: str) -> None:
        self.knobs = ProviderKnobs()
        self.key = RSAKey.generate_key(2048, parameters={"kid": "standin-1", "use": "sig"}, private=True)
        self.forged = RSAKey.generate_key(2048, parameters={"kid": "standin-1"}, private=True)
        self.client = _Client(CLIENT_ID, client_secret, [redirect_uri])
        self.codes: dict[str, _Code] = {}
        self.server = self._server()
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    def _server(self) -> AuthorizationServer:
        provider = self

        class Grant(AuthorizationCodeGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic"]

            def save_authorization_code(self, code: str, request: Any) -> None:
                data = request.payload.data
                provider.codes[code] = _Code(
                    code=code,
                    client_id=request.client.get_client_id(),
                    redirect_uri=data.get("redirect_uri", ""),
                    scope=request.payload.scope or "",
                    user=request.user,
                    nonce=data.get("nonce"),
                    challenge=data.get("code_challenge"),
                    method=data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
                found = provider.codes.get(code)
                return found if found is not None and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> dict[str, Any]:
                return authorization_code.user

        class OpenID(OpenIDCode):  # type: ignore[misc]
            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client: _Client) -> RSAKey:
                return provider.forged if provider.knobs.forge else provider.key

            def get_client_algorithm(self, client: _Client) -> str:
                return "RS256"

            def get_encode_header(self, client: _Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": "standin-1"}

            def get_client_claims(self, client: _Client) -> dict[str, Any]:
                now = int(time.time())
                knobs = provider.knobs
                return {
                    "iss": knobs.issuer,
                    "aud": [knobs.audience],
                    "iat": now - 10 if knobs.lifetime > 0 else now + knobs.lifetime - 600,
                    "exp": now + knobs.lifetime,
                }

            def generate_user_info(self, user: dict[str, Any], scope: str) -> UserInfo:
                return UserInfo(user)

        class Server(AuthorizationServer):  # type: ignore[misc]
            def query_client(self, client_id: str) -> _Client | None:
                return provider.client if client_id == provider.client.client_id else None

            def save_token(self, token: dict[str, Any], request: Any) -> None:
                pass

            def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
                pass

            def create_oauth2_request(self, request: _Request) -> _Request:
                return request

            def handle_response(self, status: int, body: Any, headers: Any) -> Response:
                if isinstance(body, dict):
                    return JSONResponse(body, status_code=status, headers=dict(headers))
                return Response(body or "", status_code=status, headers=dict(headers))

        server = Server(scopes_supported=["openid", "profile"])
        server.register_grant(Grant, [_S256Required(required=True), OpenID(require_nonce=True)])
        server.register_token_generator(
            "default", BearerTokenGenerator(lambda **_: secrets.token_urlsafe(32))
        )
        return server

    async def _discovery(self, request: Request) -> Response:
        issuer = self.knobs.issuer
        return JSONResponse(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
                "end_session_endpoint": f"{issuer}/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def _authorize(self, request: Request) -> Response:
        fields = dict(request.query_params)
        self.knobs.authorize_requests.append(fields)
        req = _Request("GET", str(request.url), fields, request.headers)
        user = dict(self.knobs.user)
        try:
            grant = self.server.get_consent_grant(request=req, end_user=user)
        except Exception as e:  # an invalid request: say so, as a provider's error page would
            return JSONResponse({"error": getattr(e, "error", "invalid_request")}, status_code=400)
        response: Response = self.server.create_authorization_response(
            request=req, grant_user=user, grant=grant
        )
        return response

    async def _token(self, request: Request) -> Response:
        fields = {k: str(v) for k, v in (await request.form()).items()}
        self.knobs.token_requests.append(fields)
        req = _Request("POST", str(request.url), fields, request.headers)
        response: Response = self.server.create_token_response(req)
        return response
