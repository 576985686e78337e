"""The token endpoint, framework-neutral: Authlib's ``AuthorizationServer`` with the client-credentials
grant and RFC 7523 ``private_key_jwt`` client authentication, behind a small request/response adapter.

Authlib has no Starlette integration; ``TokenEndpoint.handle`` is that adapter: it takes the form
fields and headers and gives back status, JSON body and headers. Authlib ships no type information,
hence the ``type: ignore[misc]`` on each class that extends one of its classes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import quote

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from gateway.auth.clients import ASSERTION_ALGORITHMS, ClientRegistry
from gateway.auth.keys import SigningKey
from gateway.auth.ratelimit import RateLimits
from gateway.auth.replay import ReplayGuard
from gateway.auth.roles import ROLE_SCOPES, SCOPES
from gateway.auth.tokens import issue_access_token
from gateway.models import Client

log = logging.getLogger(__name__)

#: RFC 7523 section 2.2: the only ``client_assertion_type`` the token endpoint accepts.
ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: The client authentication method, as RFC 8414 metadata names it.
AUTH_METHOD: Final = "private_key_jwt"

GRANT_TYPE: Final = "client_credentials"

#: An assertion's ``exp`` may lie at most this far ahead (seconds, DESIGN.md section 4)...
MAX_ASSERTION_LIFETIME: Final = 300

#: ...plus this much for clock skew, which also applies to ``exp`` (past), ``iat`` and ``nbf``.
ASSERTION_LEEWAY: Final = 30

_KEY_CLASSES: Final[dict[str, type[OKPKey] | type[ECKey] | type[RSAKey]]] = {
    "Ed25519": OKPKey,
    "ES256": ECKey,
    "RS256": RSAKey,
}

# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")

# RFC 6749 section 5.2: error_description characters are %x20-21 / %x23-5B / %x5D-7E.
_NOT_DESCRIPTION_CHAR: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def parameter_name(name: str) -> str:
    """``name`` as it may appear in an ``error_description``: percent-encoded, so that it is named
    exactly and stays inside RFC 6749's character set (Authlib raises ValueError, a 500, outside it)."""
    return quote(name.encode("utf-8", "surrogatepass"), safe="")[:120]


def _refusal(reason: str) -> InvalidClientError:
    """An ``invalid_client`` error; a reason quoting the assertion (an ``alg``, a header name) is made
    safe, since Authlib raises ValueError, a 500, on a description outside the RFC's character set."""
    reason = _NOT_DESCRIPTION_CHAR.sub("?", reason)[:200]
    return InvalidClientError(description=f"client assertion refused: {reason}")


@dataclass(frozen=True)
class TokenResponse:
    """What the HTTP layer sends back: status, JSON body and headers."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]]


def parse_scope(scope: str | None) -> frozenset[str]:
    """The scopes of a ``scope`` parameter; empty when absent. Raises ``InvalidScopeError`` if malformed."""
    if scope is None or not scope.strip():
        return frozenset()
    tokens = scope.split(" ")
    if any(not _SCOPE_TOKEN.fullmatch(t) for t in tokens if t):
        raise InvalidScopeError(description="scope is malformed (RFC 6749 section 3.3)")
    return frozenset(t for t in tokens if t)


class _RegisteredClient:
    """A registered ``Client`` as Authlib's ``ClientMixin`` expects it (duck-typed)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.scopes: frozenset[str] = ROLE_SCOPES.get(client.role, frozenset())

    def get_client_id(self) -> str:
        return self.client.client_id

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == AUTH_METHOD and endpoint == "token"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE

    def public_key(self) -> Key:
        return _KEY_CLASSES[self.client.key_alg].import_key(self.client.public_key_pem)


class _FormPayload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, fields: Mapping[str, str]) -> None:
        self._data = dict(fields)
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in fields.items():
            self._datalist[name].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _FormRequest(OAuth2Request):  # type: ignore[misc]
    """A token request built from form fields; the URI is the configured token endpoint URL."""

    def __init__(self, uri: str, fields: Mapping[str, str], headers: Mapping[str, str]) -> None:
        super().__init__("POST", uri, headers=dict(headers))  # refuses http:// except on loopback
        self.payload = _FormPayload(fields)
        self._fields = dict(fields)

    @property
    def form(self) -> dict[str, str]:
        return self._fields

    @property
    def args(self) -> dict[str, str]:
        return {}


def _algorithms_for(key: Key) -> list[str]:
    if isinstance(key, OKPKey):
        return list(ASSERTION_ALGORITHMS["Ed25519"])
    if isinstance(key, ECKey):
        return list(ASSERTION_ALGORITHMS["ES256"])
    if isinstance(key, RSAKey):
        return list(ASSERTION_ALGORITHMS["RS256"])
    raise InvalidClientError(description="the registered key cannot verify assertions")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 section 3 client authentication with the client's registered public key.

    Authlib's class does the lookup by ``sub``, the signature and the standard claims; this subclass
    pins the algorithm to the registered key's type, caps ``exp`` and spends the ``jti`` in the database.
    """

    CLIENT_AUTH_METHOD = AUTH_METHOD

    def __init__(self, audiences: Sequence[str], replay: ReplayGuard) -> None:
        # jti is checked below rather than by Authlib, to spend it only after every other check.
        super().__init__(validate_jti=False, leeway=ASSERTION_LEEWAY)
        self._audiences = list(audiences)
        self._replay = replay

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(self, client: _RegisteredClient) -> Key:
        return client.public_key()

    def process_assertion_claims(self, assertion: str, resolve_key: Key) -> dict[str, Any]:
        # Authlib would decode with joserfc's "recommended" algorithms, which leave out Ed25519; the
        # registered key's type decides instead, which also rules out "none" and algorithm confusion.
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=_algorithms_for(resolve_key))
        except BadSignatureError as e:
            raise InvalidClientError(description="client assertion signature does not verify") from e
        except JoseError as e:
            raise _refusal(e.description or e.error) from e
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        exp = claims.get("exp")
        if exp is None:
            raise _refusal("missing claim 'exp'")
        if not _is_number(exp):
            raise _refusal("'exp' must be a NumericDate")
        now = time.time()
        if exp > now + MAX_ASSERTION_LIFETIME + ASSERTION_LEEWAY:
            raise _refusal(f"'exp' is more than {MAX_ASSERTION_LIFETIME} s ahead")
        for name in ("iat", "nbf"):
            value = claims.get(name)
            if value is not None and _is_number(value) and value > exp:
                raise _refusal(f"'{name}' is after 'exp'")
        try:
            super().verify_claims(claims)  # iss, sub, aud, exp, nbf, iat; sub == iss
        except InvalidClientError as e:
            raise _refusal(e.description) from e
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _refusal("missing claim 'jti'")
        # Keep the jti until the assertion could no longer pass the 'exp' check, leeway included.
        keep_until = dt.datetime.fromtimestamp(float(exp) + ASSERTION_LEEWAY, dt.UTC)
        if not self._replay.spend(claims["sub"], jti, keep_until):
            raise InvalidClientError(description="replayed jti")


class _ClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [AUTH_METHOD]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client_id = self.request.payload.data.get("client_id")
        if client_id is not None and client_id != self.request.client.get_client_id():
            raise InvalidClientError(description="client_id does not match the client assertion")

    def validate_requested_scope(self) -> None:
        client: _RegisteredClient = self.request.client
        requested = parse_scope(self.request.payload.scope)
        unknown = requested - SCOPES
        if unknown:
            raise InvalidScopeError(description=f"unknown scope: {' '.join(sorted(unknown))}")
        refused = requested - client.scopes
        if refused:
            raise InvalidScopeError(
                description=f"scope {' '.join(sorted(refused))} is not allowed for role {client.client.role}"
            )


class _AuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        *,
        issuer: str,
        audiences: Sequence[str],
        clients: ClientRegistry,
        replay: ReplayGuard,
        signing_key: SigningKey | Callable[[], SigningKey],
        ttl: int,
    ) -> None:
        super().__init__(scopes_supported=sorted(SCOPES))
        self._issuer = issuer
        self._clients = clients
        self._signing_key = signing_key
        self._ttl = ttl
        self.register_grant(_ClientCredentialsGrant)
        self.register_client_auth_method(AUTH_METHOD, _PrivateKeyJWT(audiences, replay))
        self.register_token_generator("default", self._generate_token)

    def query_client(self, client_id: str) -> _RegisteredClient | None:
        client = self._clients.get_active(client_id)
        return _RegisteredClient(client) if client is not None else None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Access tokens are self-contained JWTs: nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal system here."""

    def create_oauth2_request(self, request: _FormRequest) -> _FormRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> TokenResponse:
        return TokenResponse(status=status, body=dict(body), headers=list(headers))

    def _generate_token(
        self,
        grant_type: str,
        client: _RegisteredClient,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        scopes = parse_scope(scope) or client.scopes
        # A callable is a key ring's current key: after a rotation the next token has the new key.
        key = self._signing_key if isinstance(self._signing_key, SigningKey) else self._signing_key()
        issued = issue_access_token(
            key, issuer=self._issuer, client=client.client, scopes=scopes, ttl=self._ttl
        )
        log.info("issued access token to %s (scope %s)", client.client.client_id, issued.scope)
        return {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        }


def claimed_client_id(fields: Mapping[str, str]) -> str | None:
    """The client id a token request claims, unverified: the assertion's ``sub`` (by which Authlib
    finds the client), else the ``client_id`` parameter. Only for counting failures."""
    assertion = fields.get("client_assertion", "")
    parts = assertion.split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, RecursionError):
            claims = None
        if isinstance(claims, dict) and isinstance(claims.get("sub"), str) and claims["sub"]:
            return str(claims["sub"])
    return fields.get("client_id") or None


class TokenEndpoint:
    """``POST /oauth2/token`` without a web framework: form fields and headers in, ``TokenResponse`` out."""

    def __init__(
        self,
        *,
        issuer: str,
        clients: ClientRegistry,
        replay: ReplayGuard,
        signing_key: SigningKey | Callable[[], SigningKey],
        ttl: int,
        limits: RateLimits | None = None,
    ) -> None:
        self.issuer = issuer
        self.url = f"{issuer}/oauth2/token"
        self._limits = limits
        self._server = _AuthorizationServer(
            issuer=issuer,
            audiences=[self.url, issuer],
            clients=clients,
            replay=replay,
            signing_key=signing_key,
            ttl=ttl,
        )

    def handle(
        self, form: Sequence[tuple[str, str]], headers: Mapping[str, str], address: str | None = None
    ) -> TokenResponse:
        """Answer one token request given its form fields (in order, repeats kept), headers and source
        address. ``RateLimited`` if the claimed client id or the address failed too often of late."""
        try:
            fields = self._single_valued(form)
            if fields.get("client_assertion_type", ASSERTION_TYPE) != ASSERTION_TYPE:
                raise InvalidClientError(description=f"client_assertion_type must be {ASSERTION_TYPE}")
            request = _FormRequest(self.url, fields, headers)
        except OAuth2Error as error:
            return self.error_response(error)
        claimed = claimed_client_id(fields)
        if self._limits is not None:
            # Before anything is verified: past the budget, not one signature is checked.
            self._limits.check_token_failures(claimed, address)
        response: TokenResponse = self._server.create_token_response(request)
        if response.status != 200:
            log.info("token request refused: %s", response.body.get("error_description"))
            if self._limits is not None and response.body.get("error") == "invalid_client":
                self._limits.record_token_failure(claimed, address)
        return response

    @staticmethod
    def _single_valued(form: Sequence[tuple[str, str]]) -> dict[str, str]:
        seen: set[str] = set()
        for name, _value in form:
            if name in seen:
                # RFC 6749 section 3.2: request parameters MUST NOT be included more than once.
                raise InvalidRequestError(description=f"parameter {parameter_name(name)} is repeated")
            seen.add(name)
        # RFC 6749 section 3.1: parameters sent without a value are treated as if omitted.
        fields = {name: value for name, value in form if value}
        if not fields.get("grant_type"):
            raise InvalidRequestError(description="missing grant_type")
        return fields

    @classmethod
    def invalid_request(cls, description: str) -> TokenResponse:
        """An ``invalid_request`` error response, for checks made before the form is read."""
        return cls.error_response(InvalidRequestError(description=description))

    @staticmethod
    def error_response(error: OAuth2Error) -> TokenResponse:
        """An RFC 6749 section 5.2 error as a ``TokenResponse``."""
        status, body, headers = error()
        log.info("token request refused: %s", body.get("error_description"))
        return TokenResponse(status=status, body=dict(body), headers=list(headers))
