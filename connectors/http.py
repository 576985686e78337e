"""The connector for a real agency system reached over HTTP.

Wire protocol (the agency side is ``standins.agency``; shapes in ``connectors._wire``):

- ``POST {base}/veilig-delen/deliveries`` with a camelCase delivery -> ``{messageId, accepted, detail}``
- ``POST {base}/veilig-delen/fetch`` with a camelCase fetch request -> ``{found, data}``
- ``GET {base}/veilig-delen/health`` -> 200 when up

Paths are fixed: no identifier, BSN or payload content ever goes into a URL, where proxies and access
logs would keep it. The W3C ``traceparent`` goes along as a header, and a delivery carries
``Idempotency-Key: <messageId>``. With a ``RequestSigner`` every request is signed (RFC 9421, with
``Content-Digest``); ``from_endpoint`` adds the agency's authentication (mTLS or an OAuth2 token) from
its entry in the connector file. ``docs/agency-api.yaml`` is the contract.
"""

from __future__ import annotations

import ssl
import threading
import time
import warnings
from collections.abc import Generator
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from connectors._wire import (
    DELIVERIES_PATH,
    FETCH_PATH,
    HEALTH_PATH,
    FetchResultBody,
    ReceiptBody,
    delivery_json,
    fetch_json,
)
from connectors.base import (
    AGENCIES,
    ConnectorRejected,
    ConnectorTimeout,
    ConnectorUnavailable,
    Delivery,
    DeliveryReceipt,
    FetchRequest,
    FetchResult,
)
from connectors.config import AgencyEndpoint, MtlsAuth, OAuth2Auth
from connectors.signatures import RequestSigner

# Failures after which the request may not have been processed, or was processed and the answer lost.
# Both are safe to repeat: fetches read only, and deliveries carry a message id the receiver dedupes on.
# Timeouts are not retried: they already cost the full timeout, and the caller is waiting.
_RETRYABLE = (httpx.NetworkError, httpx.RemoteProtocolError)

# 408 and 429 say "not now" rather than "never": they count as unavailable, not as a refusal.
_TRY_LATER = frozenset({408, 429})

# A refusal's detail ends up in gateway errors and logs; cap it and take it only from a problem
# document's own fields, since a raw body could echo payload content back.
_DETAIL_LIMIT = 200

_Answer = TypeVar("_Answer", bound=BaseModel)


class HttpConnector:
    """An agency system reached over HTTP(S) at ``base_url``."""

    def __init__(
        self,
        agency: str,
        base_url: str,
        client: httpx.Client | None = None,
        timeout: float = 5.0,
        *,
        attempts: int = 3,
        retry_pause: float = 0.05,
        signer: RequestSigner | None = None,
        key_id: str | None = None,
        auth: httpx.Auth | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        if agency not in AGENCIES:
            raise ValueError(f"unknown agency {agency!r}; expected one of {', '.join(AGENCIES)}")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url for {agency} must be an http(s) URL, got {base_url!r}")
        if url.query or url.fragment:
            raise ValueError(f"base_url for {agency} must not carry a query or fragment")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.agency = agency
        self.base_url = base_url.rstrip("/")
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client()
        self._timeout = timeout
        self._timeouts = httpx.Timeout(timeout, connect=connect_timeout or timeout)
        self._attempts = attempts
        self._retry_pause = retry_pause
        self._signer = signer
        self._key_id = key_id
        self._auth = auth

    @classmethod
    def from_endpoint(
        cls, agency: str, endpoint: AgencyEndpoint, signer: RequestSigner | None, **kwargs: Any
    ) -> HttpConnector:
        """A connector for ``agency`` as its entry in the connector file describes it.

        mTLS: a client whose TLS context holds the gateway's certificate and trusts the agency's CA.
        OAuth2: a bearer token obtained with client credentials, kept until shortly before it expires.
        """
        context: ssl.SSLContext | bool = True
        auth: httpx.Auth | None = None
        if isinstance(endpoint.auth, MtlsAuth):
            context = ssl.create_default_context(cafile=endpoint.auth.ca_file)
            context.load_cert_chain(endpoint.auth.cert_file, endpoint.auth.key_file)
        elif isinstance(endpoint.auth, OAuth2Auth):
            if endpoint.auth.ca_file is not None:
                context = ssl.create_default_context(cafile=endpoint.auth.ca_file)
            auth = OAuth2ClientCredentials(endpoint.auth, verify=context, timeout=endpoint.timeout)
        client = httpx.Client(verify=context)
        connector = cls(
            agency,
            endpoint.url,
            client,
            endpoint.timeout,
            signer=signer,
            key_id=endpoint.signature_key_id,
            auth=auth,
            connect_timeout=endpoint.connect_timeout,
            **kwargs,
        )
        connector._owns_client = True
        return connector

    def deliver(self, d: Delivery) -> DeliveryReceipt:
        """POST ``d`` to the agency; retried on connection errors, which the receiver dedupes."""
        body = self._post(DELIVERIES_PATH, delivery_json(d), d.trace_parent, idempotency_key=d.message_id)
        receipt = self._parse(ReceiptBody, body)
        if receipt.message_id != d.message_id:
            raise ConnectorUnavailable(
                self.agency, f"answered for message {receipt.message_id}, not {d.message_id}"
            )
        return DeliveryReceipt(receipt.message_id, receipt.accepted, receipt.detail)

    def fetch(self, r: FetchRequest) -> FetchResult:
        """POST ``r`` to the agency and return what it holds."""
        result = self._parse(FetchResultBody, self._post(FETCH_PATH, fetch_json(r), r.trace_parent))
        return FetchResult(result.found, result.data)

    def health(self) -> bool:
        """True when the agency answers its health endpoint with 200 within the timeout."""
        try:
            response = self._client.get(self.base_url + HEALTH_PATH, timeout=self._timeouts)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def close(self) -> None:
        """Close the HTTP client, when this connector made it."""
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        return f"HttpConnector({self.agency!r}, {self.base_url!r})"

    def _post(self, path: str, body: dict[str, Any], trace_parent: str, idempotency_key: str = "") -> Any:
        url = self.base_url + path
        headers = {"traceparent": trace_parent} if trace_parent else {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        for attempt in range(1, self._attempts + 1):
            try:
                # Signed afresh on every attempt: each carries its own ``created``.
                request = self._client.build_request(
                    "POST", url, json=body, headers=headers, timeout=self._timeouts
                )
                if self._signer is not None:
                    self._signer.sign(request, key_id=self._key_id)
                response = self._client.send(request, auth=self._auth or httpx.USE_CLIENT_DEFAULT)
            except _RETRYABLE as e:
                if attempt == self._attempts:
                    raise ConnectorUnavailable(
                        self.agency, f"{path}: {type(e).__name__} after {attempt} attempts"
                    ) from e
                time.sleep(self._retry_pause * attempt)
                continue
            except httpx.TimeoutException as e:
                raise ConnectorTimeout(self.agency, f"{path}: timed out after {self._timeout}s") from e
            except httpx.HTTPError as e:
                raise ConnectorUnavailable(self.agency, f"{path}: {type(e).__name__}") from e
            return self._answer(path, response)
        raise AssertionError("unreachable: the loop returns or raises")

    def _answer(self, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError as e:
                raise ConnectorUnavailable(self.agency, f"{path}: answered {status} without JSON") from e
        if 400 <= status < 500 and status not in _TRY_LATER:
            raise ConnectorRejected(
                self.agency, f"{path}: {status} {_problem_detail(response)}", status=status
            )
        raise ConnectorUnavailable(self.agency, f"{path}: answered {status}")

    def _parse(self, model: type[_Answer], body: Any) -> _Answer:
        try:
            return model.model_validate(body)
        except ValidationError as e:
            # Not chained: a ValidationError prints the offending input, which here is case data from
            # the agency, and tracebacks end up in logs. The locations are enough.
            where = ", ".join(".".join(map(str, err["loc"])) for err in e.errors())
            raise ConnectorUnavailable(
                self.agency, f"answer is not a valid {model.__name__} ({where})"
            ) from None


class OAuth2ClientCredentials(httpx.Auth):
    """A bearer token from the agency's authorization server (client credentials), cached until expiry.

    Authlib's httpx ``OAuth2Client`` fetches the token (``private_key_jwt`` with ``keyFile``, or
    ``client_secret_post`` with ``clientSecretFile``); the token is reused until 30 seconds before it
    expires, and fetched again once when an agency answers 401 (it may have been revoked).
    """

    requires_response_body = False
    _LEEWAY = 30

    def __init__(
        self, config: OAuth2Auth, *, verify: ssl.SSLContext | bool = True, timeout: float = 5.0
    ) -> None:
        from authlib.deprecate import AuthlibDeprecationWarning  # sets its own "always" filter

        with warnings.catch_warnings():
            # Authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx, which the
            # gateway uses throughout; the fallback is the same client code.
            warnings.simplefilter("ignore", AuthlibDeprecationWarning)
            from authlib.integrations.httpx_client import OAuth2Client
            from authlib.oauth2.rfc7523 import PrivateKeyJWT
        from joserfc.jwk import import_key

        self.config = config
        self.fetches = 0
        self._lock = threading.Lock()
        self._token: dict[str, Any] | None = None
        if config.key_file is not None:
            key = import_key(config.key_file.read_bytes())
            alg = "EdDSA" if key.key_type == "OKP" else "ES256" if key.key_type == "EC" else "RS256"
            self._client = OAuth2Client(
                config.client_id,
                key,
                token_endpoint_auth_method=PrivateKeyJWT(config.token_url, alg=alg),
                scope=config.scope,
                verify=verify,
                timeout=timeout,
            )
        else:
            assert config.client_secret_file is not None
            secret = config.client_secret_file.read_text(encoding="utf-8").strip()
            self._client = OAuth2Client(
                config.client_id,
                secret,
                token_endpoint_auth_method="client_secret_post",  # noqa: S106 (a method name)
                scope=config.scope,
                verify=verify,
                timeout=timeout,
            )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._access_token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {self._access_token(renew=True)}"
            yield request

    def _access_token(self, renew: bool = False) -> str:
        with self._lock:
            token = self._token
            expires_at = float(token.get("expires_at") or 0) if token else 0.0
            if renew or token is None or (expires_at and expires_at - self._LEEWAY <= time.time()):
                try:
                    token = dict(
                        self._client.fetch_token(self.config.token_url, grant_type="client_credentials")
                    )
                except httpx.HTTPError:
                    raise
                except Exception as e:
                    # Authlib's OAuthError and the like: the error code only, never the response body.
                    raise httpx.RequestError(f"token endpoint refused: {type(e).__name__}") from None
                self._token = token
                self.fetches += 1
            return str(token["access_token"])


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        for key in ("detail", "title"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:_DETAIL_LIMIT]
    return response.reason_phrase
