"""The per-agency connector file (``GATEWAY_CONNECTORS_FILE``): where each agency system is, how the
gateway authenticates to it, and whether it takes pushes, pulls its inbox, or both.

Example (``deploy/connectors.example.yaml`` has all five, with comments)::

    agencies:
      om:
        url: https://veilig-delen.om.example
        mode: push                       # push | pull | both
        auth: {type: mtls, certFile: /etc/gateway/om-client.pem, keyFile: ..., caFile: ...}
        timeout: 5
      politie:
        url: https://vd.politie.example
        auth: {type: oauth2, tokenUrl: https://idp.politie.example/token, clientId: gateway,
               clientSecretFile: /run/secrets/politie-client-secret, scope: deliveries}

``load_connectors_file`` validates the whole file at start-up; any fault is a ``ConnectorConfigError``
whose one line names the file and the field, never a value (a value might be a secret). An agency
without ``auth`` is called without credentials, which only a loopback URL may be.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from connectors.base import AGENCIES, Agency

DeliveryMode = Literal["push", "pull", "both"]
"""``push``: the gateway POSTs each message to the agency; ``pull``: the agency reads its inbox and
acknowledges; ``both``: pushed, and also kept in the inbox until acknowledged."""


class ConnectorConfigError(ValueError):
    """The connector configuration cannot be used; the message is one line naming file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def _readable(path: Path) -> Path:
    if not path.is_file():
        raise ValueError("file not found or not a regular file")
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror})") from None
    return path


class MtlsAuth(_Model):
    """Mutual TLS: the gateway's client certificate and key, and the CA bundle that signs the agency's."""

    type: Literal["mtls"]
    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    """The CA bundle trusted for the agency's server certificate; the system's when absent."""

    _files = field_validator("cert_file", "key_file", "ca_file")(
        classmethod(lambda cls, v: None if v is None else _readable(v))
    )


class OAuth2Auth(_Model):
    """OAuth2 client credentials: the gateway obtains a token from the agency's authorization server.

    The gateway authenticates there with ``private_key_jwt`` (``keyFile``: a PEM private key) or a
    client secret (``clientSecretFile``: a file holding only the secret), exactly one of the two.
    """

    type: Literal["oauth2"]
    token_url: str
    client_id: Annotated[str, Field(min_length=1, max_length=256)]
    key_file: Path | None = None
    client_secret_file: Path | None = None
    scope: str | None = None
    ca_file: Path | None = None
    """The CA bundle trusted for the token endpoint and the agency (system CAs when absent)."""

    _files = field_validator("key_file", "client_secret_file", "ca_file")(
        classmethod(lambda cls, v: None if v is None else _readable(v))
    )

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str) -> str:
        _check_url(value, allow_plain_http=_is_loopback_url(value))
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> OAuth2Auth:
        if (self.key_file is None) == (self.client_secret_file is None):
            raise ValueError("give exactly one of keyFile and clientSecretFile")
        return self


Auth = Annotated[MtlsAuth | OAuth2Auth, Field(discriminator="type")]


class AgencyEndpoint(_Model):
    """One agency system as the gateway reaches it."""

    url: str
    mode: DeliveryMode = "both"
    auth: Auth | None = None
    timeout: float = Field(default=5.0, gt=0, le=120)
    """Seconds for the whole answer to one call (read); past it the call is a ``ConnectorTimeout``."""
    connect_timeout: float = Field(default=3.0, gt=0, le=60)
    signature_key_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """The ``keyid`` to put in signatures to this agency, when it registered the key under its own
    name; the delivery key's JWKS ``kid`` otherwise."""

    @model_validator(mode="after")
    def _credentials_unless_loopback(self) -> AgencyEndpoint:
        loopback = _is_loopback_url(self.url)
        _check_url(self.url, allow_plain_http=loopback)
        if self.auth is None and not loopback:
            raise ValueError("auth is required for a URL that is not a loopback address (mtls or oauth2)")
        if isinstance(self.auth, MtlsAuth) and not self.url.startswith("https://"):
            raise ValueError("mtls needs an https:// url")
        return self


class ConnectorsConfig(_Model):
    """Every agency's endpoint; the file must name all five."""

    agencies: dict[Agency, AgencyEndpoint]

    @field_validator("agencies")
    @classmethod
    def _all_five(cls, value: dict[str, AgencyEndpoint]) -> dict[str, AgencyEndpoint]:
        missing = [a for a in AGENCIES if a not in value]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        return value

    def mode_of(self, agency: str) -> DeliveryMode:
        """How ``agency`` receives its messages: ``push``, ``pull`` or ``both``."""
        return self.agencies[agency].mode  # type: ignore[index]

    @classmethod
    def from_agency_urls(
        cls, urls: dict[str, str], *, source: str = "GATEWAY_AGENCY_URLS"
    ) -> ConnectorsConfig:
        """The simple configuration: agency -> base URL, pushed, without credentials (loopback only)."""
        return _validated(cls, {"agencies": {a: {"url": u} for a, u in urls.items()}}, source)


def load_connectors_file(path: Path) -> ConnectorsConfig:
    """Read and validate the connector file at ``path``; relative file names in it are relative to it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConnectorConfigError(f"{path}: cannot be read ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConnectorConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConnectorConfigError(f"{path}: expected a mapping with 'agencies'")
    return _validated(ConnectorsConfig, _relative_to(raw, path.parent), str(path))


_FILE_KEYS = ("certFile", "keyFile", "caFile", "clientSecretFile", "cert_file", "key_file", "ca_file")


def _relative_to(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    agencies = raw.get("agencies")
    if not isinstance(agencies, dict):
        return raw
    for endpoint in agencies.values():
        auth = endpoint.get("auth") if isinstance(endpoint, dict) else None
        if isinstance(auth, dict):
            for key in _FILE_KEYS:
                value = auth.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    auth[key] = str(base / value)
    return raw


def _validated(model: type[ConnectorsConfig], raw: dict[str, Any], source: str) -> ConnectorsConfig:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("function-", "tagged-union")))
        # The message only: pydantic's full text repeats the input, which may be a secret or a path.
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        raise ConnectorConfigError(f"{source}: {where or 'file'}: {message}{more}") from None


def _check_url(value: str, *, allow_plain_http: bool) -> None:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http(s) URL with a host")
    if url.query or url.fragment:
        raise ValueError("must not carry a query or fragment")
    if url.scheme == "http" and not allow_plain_http:
        raise ValueError("must be https:// (plain http only on a loopback address)")


def _is_loopback_url(value: str) -> bool:
    try:
        host = httpx.URL(value).host
    except httpx.InvalidURL:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
