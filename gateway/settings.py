"""One settings class, read from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from connectors.base import AGENCIES
from gateway import REPO_ROOT as REPO_ROOT

MAX_BODY_BYTES = 1_048_576
"""Default of ``max_body_bytes``: a request body larger than this is a 413 before it is read on."""
MAX_JSON_DEPTH = 32
"""Containers in a JSON body, the body itself counting as the first; deeper is a 400."""
MAX_PAYLOAD_FIELDS = 200
"""Keys in a share's payload, counted at every depth (a nested object is no way round it)."""


ConsoleRole = Literal["privacy_officer", "auditor"]


def _identity_roles() -> dict[str, ConsoleRole]:
    return {"privacy_officer": "privacy_officer", "auditor": "auditor"}


class WitnessSpec(BaseModel):
    """One witness of the audit log (``GATEWAY_WITNESSES``): a C2SP tlog-witness at an agency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    """The witness's key name, as in its verifier key (``witness.om.example``)."""
    url: str
    """Its submission prefix: checkpoints go to ``{url}/add-checkpoint``; https (http on loopback)."""
    vkey: str
    """Its verifier key (``gateway audit witness keygen``): ``name+keyid+base64(0x04 || key)``."""

    @model_validator(mode="after")
    def _a_witness(self) -> WitnessSpec:
        from audit import InvalidNote, parse_cosignature_key

        try:
            verifier = parse_cosignature_key(self.vkey)
        except InvalidNote as e:
            raise ValueError(f"witness {self.name!r}: vkey: {e.reason}") from e
        if verifier.name != self.name:
            raise ValueError(f"witness {self.name!r}: its vkey is named {verifier.name!r}")
        if not _secure_url(self.url):
            raise ValueError(f"witness {self.name!r}: url must be https:// (http only on loopback)")
        return self


class Settings(BaseSettings):
    """Deployment settings; every field maps to ``GATEWAY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    mode: Literal["local", "production"] = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(default=REPO_ROOT / "var")
    database_url: str | None = None
    db_busy_timeout: float = Field(default=5.0, gt=0, le=300)
    """Seconds a database call waits for a lock (SQLite busy timeout, PostgreSQL ``lock_timeout``), a
    pool connection or a PostgreSQL connect; past it the call answers 503 with ``Retry-After``."""
    public_url: str | None = None
    policy_engine: Literal["embedded", "opa"] = "embedded"
    policy_dir: Path = Field(default=REPO_ROOT / "policies")
    policy_watch: bool = False
    """Reload the policy when its files change (polling; the same checks as POST /v1/policies/reload)."""
    policy_watch_interval: float = Field(default=2.0, gt=0)
    """Seconds between two polls of the policy directory when ``policy_watch`` is on."""
    policy_follow: bool = False
    """Serve the revision activated last on any replica (the database's policy archive), polling it; at
    start a revision on disk the archive already knows, but not the active one, is not activated
    (`gateway.policy.follow`). For replicas on one database; ``gateway serve --workers N`` turns it on
    for its workers."""
    policy_follow_interval: float = Field(default=2.0, gt=0)
    """Seconds between two looks at the active revision when ``policy_follow`` is on."""
    opa_url: str = "http://127.0.0.1:8181"
    opa_timeout: float = 1.0
    """Seconds for one decision from OPA; past it the decision is a deny (``engine_timeout``)."""
    opa_upload: bool = True
    """Upload ``policy_dir`` into OPA (true), or only verify what OPA loaded itself from a bundle."""
    pseudonym_secret: str | None = None
    """The secret of the BSN pseudonyms (>= 32 characters); unset: ``pseudonym_secret_file``."""
    pseudonym_secret_file: Path | None = None
    """A file holding the pseudonym secret, instead of ``pseudonym_secret`` (replicas name one shared
    file, e.g. from a Kubernetes Secret); default ``pseudonym.key`` in data_dir. Made at first start
    when missing (exclusively: processes starting at once agree on one)."""
    console_session_key_file: Path | None = None
    """The key that signs console session cookies; default ``console-session.key`` in data_dir, made at
    first start. Replicas behind one load balancer name one shared file, or a session started on one
    replica is refused by the others."""
    sealing_key_file: Path | None = None
    """The key-encryption key that seals BSNs and waiting messages (32 bytes, base64); default
    ``sealing.key`` in data_dir, made at first start. Keep it apart from database backups."""
    retention_sweep_interval: float = Field(default=300.0, gt=0)
    """Seconds between two retention sweeps in ``gateway serve``: expired messages, idle cases."""
    retention_sweep: bool = True
    """Whether ``gateway serve`` (each worker) sweeps; sweeps in several processes are safe (idempotent)."""
    access_token_ttl: int = 300
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    """Largest request body on any route, in bytes; a larger one is refused with 413 unread."""
    log_origin: str = "veilig-delen.example/audit"
    connectors: Literal["simulated", "http"] = "simulated"
    agency_urls: dict[str, str] = Field(default_factory=dict)
    """Agency -> base URL for ``connectors=http`` without a file; loopback URLs only (no credentials)."""
    connectors_file: Path | None = None
    """The per-agency file (``deploy/connectors.example.yaml``): URL, push/pull, mTLS or OAuth2, timeouts."""
    delivery_key_file: Path | None = None
    """The Ed25519 key that signs deliveries (RFC 9421); default ``delivery-signing-key.jwk`` in data_dir."""
    token_key_file: Path | None = None
    """The Ed25519 key that signs access tokens (a private JWK); default ``token-signing-key.jwk`` in
    data_dir. Replicas name one shared file; ``gateway keys rotate token`` rotates it."""
    audit_key_file: Path | None = None
    """The audit log's checkpoint signing key (PEM); default ``audit-log.key`` in data_dir, with the
    rotated-out verifier keys beside it in ``<file>.retired``. Replicas name one shared file."""
    delivery_modes: dict[str, Literal["push", "pull", "both"]] = Field(default_factory=dict)
    """Per agency (JSON, agency -> ``push``, ``pull`` or ``both``) when there is no connector file (which
    says it per agency instead): ``push`` (the default) and ``both`` send each message through the
    outbox, ``pull`` only lists it in the inbox."""
    delivery_max_attempts: int = Field(default=10, ge=1, le=100)
    """Push attempts per message before it goes to the dead letter (``gateway outbox retry`` requeues)."""
    delivery_backoff_base: float = Field(default=1.0, gt=0)
    """Seconds: the wait after attempt n is uniform in [0, min(cap, base * 2^(n-1))] (full jitter)."""
    delivery_backoff_cap: float = Field(default=300.0, gt=0)
    """Seconds: the longest wait between two attempts at one message."""
    delivery_breaker_failures: int = Field(default=5, ge=1)
    """Consecutive failed pushes to one agency that open its circuit: its messages then wait, untried."""
    delivery_breaker_cooldown: float = Field(default=30.0, gt=0)
    """Seconds an open circuit waits before one trial push (half-open) decides whether it closes."""
    delivery_lease: float = Field(default=60.0, gt=0)
    """Seconds a deliverer holds a claimed outbox row; a crashed one's rows are taken over after it.
    Must exceed the longest push (the connector's timeout and its own retries)."""
    delivery_poll_interval: float = Field(default=1.0, gt=0)
    """Seconds between two looks at the outbox by a deliverer with nothing to do."""
    delivery_worker: bool = True
    """Whether ``gateway serve`` (each of its workers) runs a deliverer; leases keep them apart."""
    rate_limit: str = "50/second"
    """Requests per client on every authenticated route, in ``limits`` notation (``50/second``)."""
    rate_burst: int | None = Field(default=None, ge=1)
    """Calls a quiet client may make at once; unset is twice the rate's amount (100 for ``50/second``)."""
    rate_limit_storage: str = "memory://"
    """Where the rate limits count: ``memory://`` (this process) or ``redis://host:port/db`` (replicas)."""
    auth_failures_per_client: str = "10/minute"
    """Failed client authentications at the token endpoint per claimed client id."""
    auth_failures_per_address: str = "10/minute"
    """Failed client authentications at the token endpoint per source address."""
    forwarded_allow_ips: str = ""
    """Proxies whose ``X-Forwarded-For`` gives the source address (comma-separated); none by default."""
    console_oidc_issuer: str | None = None
    """The console's OpenID Connect provider (one per gateway); unset: one-time links only. Discovery at
    ``{issuer}/.well-known/openid-configuration``; https, or http on loopback."""
    console_oidc_client_id: str | None = None
    """The console's client id at that provider; required with ``console_oidc_issuer``."""
    console_oidc_client_secret_file: Path | None = None
    """A file holding the client secret (``client_secret_basic``); unset: a public client (PKCE only)."""
    console_oidc_redirect_url: str | None = None
    """The callback registered at the provider; default ``{public_url}/console/login/oidc/callback``."""
    console_oidc_scopes: str = "openid"
    """Scopes asked for (``openid`` and whatever the provider needs to put the claims below in the ID
    token, e.g. ``openid profile groups``)."""
    console_oidc_agency_claim: str = "agency"
    """The ID token claim that names the person's agency (one of the agencies' ids)."""
    console_oidc_role_claim: str = "roles"
    """The ID token claim (a string or a list) that holds the person's roles or groups."""
    console_oidc_roles: dict[str, ConsoleRole] = Field(default_factory=_identity_roles)
    """JSON: a value of the role claim -> the console role it gives; other values give none."""

    witnesses: Annotated[list[WitnessSpec], NoDecode] = Field(default_factory=list)
    """The audit log's witnesses: a JSON list of ``{name, url, vkey}``, or the path of a file holding
    one. Each serve process submits new checkpoints to them (C2SP tlog-witness); none: not witnessed."""
    witness_quorum: int | None = Field(default=None, ge=1)
    """Cosignatures by different witnesses that make a checkpoint witnessed (2: two of three); unset:
    every configured witness."""
    witness_interval: float = Field(default=60.0, gt=0)
    """Seconds between two submissions of the newest checkpoint to the witnesses (a fixed cadence
    reveals less of the log's volume than one per entry)."""
    witness_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds one add-checkpoint call may take; a slower witness is asked again in the next round."""

    @field_validator("witnesses", mode="before")
    @classmethod
    def _witness_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return []
        if not text.startswith("["):  # a file's path
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as e:
                raise ValueError(f"cannot read the witnesses file {value}: {e.strerror}") from e
        try:
            return json.loads(text)
        except ValueError as e:
            raise ValueError(f"the witnesses are not a JSON list: {e}") from e

    @model_validator(mode="after")
    def _a_quorum_of_distinct_witnesses(self) -> Settings:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise ValueError("GATEWAY_WITNESSES names a witness twice")
        if self.witness_quorum is not None and self.witness_quorum > len(names):
            raise ValueError(
                f"GATEWAY_WITNESS_QUORUM {self.witness_quorum} exceeds the {len(names)} witnesses"
            )
        return self

    @property
    def quorum(self) -> int:
        """The cosignatures a checkpoint needs (``witness_quorum``, else every witness)."""
        return self.witness_quorum if self.witness_quorum is not None else len(self.witnesses)

    @field_validator("rate_limit", "auth_failures_per_client", "auth_failures_per_address")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        import limits  # here, not at the top: it loads its async storage (~0.1 s) for every command

        try:
            limits.parse(value)
        except ValueError as e:
            raise ValueError(f"{value!r} is not a rate such as 50/second or 10/minute") from e
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _a_limit_storage(cls, value: str) -> str:
        # Only what is installed and tested; memcached or MongoDB would need more dependencies.
        if not value.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
            raise ValueError("GATEWAY_RATE_LIMIT_STORAGE must be memory:// or a redis:// URL")
        return value

    @field_validator("delivery_modes")
    @classmethod
    def _known_agencies(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(AGENCIES))
        if unknown:
            raise ValueError(f"unknown agencies {', '.join(unknown)}; expected some of {', '.join(AGENCIES)}")
        return value

    @model_validator(mode="after")
    def _burst_covers_the_rate(self) -> Settings:
        import limits

        if self.rate_burst is not None and self.rate_burst < limits.parse(self.rate_limit).amount:
            raise ValueError("GATEWAY_RATE_BURST must be at least the amount of GATEWAY_RATE_LIMIT")
        return self

    @model_validator(mode="after")
    def _console_oidc_complete(self) -> Settings:
        if self.console_oidc_issuer is not None:
            if not self.console_oidc_client_id:
                raise ValueError(
                    "GATEWAY_CONSOLE_OIDC_CLIENT_ID must be set with GATEWAY_CONSOLE_OIDC_ISSUER"
                )
            for name, url in (
                ("ISSUER", self.console_oidc_issuer),
                ("REDIRECT_URL", self.console_oidc_redirect_url),
            ):
                if url is not None and not _secure_url(url):
                    raise ValueError(
                        f"GATEWAY_CONSOLE_OIDC_{name} must be an https:// URL (http only on loopback)"
                    )
            if "openid" not in self.console_oidc_scopes.split():
                raise ValueError("GATEWAY_CONSOLE_OIDC_SCOPES must include openid")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.mode != "local":
            if self.pseudonym_secret_file is None and (
                not self.pseudonym_secret or len(self.pseudonym_secret) < 32
            ):
                raise ValueError(
                    "GATEWAY_PSEUDONYM_SECRET must be set (>= 32 chars) outside local mode "
                    "(or GATEWAY_PSEUDONYM_SECRET_FILE name a file holding it)"
                )
            if not self.database_url:
                raise ValueError("GATEWAY_DATABASE_URL must be set outside local mode")
            if not self.public_url or not self.public_url.startswith("https://"):
                raise ValueError("GATEWAY_PUBLIC_URL must be an https:// URL outside local mode")
            # The key that opens sealed identities and messages is kept apart from the data it opens: a
            # copy of the data directory (a backup, a stolen disk) must not carry it along.
            key = self.sealing_key_file
            if key is None or key.resolve().is_relative_to(self.data_dir.resolve()):
                raise ValueError(
                    "GATEWAY_SEALING_KEY_FILE must name a key file outside the data directory "
                    "outside local mode"
                )
        return self

    @property
    def effective_database_url(self) -> str:
        """The configured database, or SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'gateway.db'}"

    @property
    def base_url(self) -> str:
        """The URL agency systems use to reach this gateway (issuer and token audience)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def _secure_url(url: str) -> bool:
    """An https URL, or http on a loopback address (tests, a provider on the same host)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings instance."""
    return Settings()
