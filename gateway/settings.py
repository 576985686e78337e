"""One settings class, read from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Deployment settings; every field maps to ``GATEWAY_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    mode: Literal["local", "production"] = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(default=REPO_ROOT / "var")
    database_url: str | None = None
    public_url: str | None = None
    policy_engine: Literal["embedded", "opa"] = "embedded"
    policy_dir: Path = Field(default=REPO_ROOT / "policies")
    policy_watch: bool = False
    """Reload the policy when its files change (polling; the same checks as POST /v1/policies/reload)."""
    policy_watch_interval: float = Field(default=2.0, gt=0)
    """Seconds between two polls of the policy directory when ``policy_watch`` is on."""
    opa_url: str = "http://127.0.0.1:8181"
    opa_timeout: float = 1.0
    """Seconds for one decision from OPA; past it the decision is a deny (``engine_timeout``)."""
    opa_upload: bool = True
    """Upload ``policy_dir`` into OPA (true), or only verify what OPA loaded itself from a bundle."""
    pseudonym_secret: str | None = None
    access_token_ttl: int = 300
    log_origin: str = "veilig-delen.example/audit"
    connectors: Literal["simulated", "http"] = "simulated"
    agency_urls: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.mode != "local":
            if not self.pseudonym_secret or len(self.pseudonym_secret) < 32:
                raise ValueError("GATEWAY_PSEUDONYM_SECRET must be set (>= 32 chars) outside local mode")
            if not self.database_url:
                raise ValueError("GATEWAY_DATABASE_URL must be set outside local mode")
            if not self.public_url or not self.public_url.startswith("https://"):
                raise ValueError("GATEWAY_PUBLIC_URL must be an https:// URL outside local mode")
        return self

    @property
    def effective_database_url(self) -> str:
        """The configured database, or SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'gateway.db'}"

    @property
    def base_url(self) -> str:
        """The URL agency systems use to reach this gateway (issuer and token audience)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings instance."""
    return Settings()
