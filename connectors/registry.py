"""Build the gateway's connectors, one per agency, from its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from connectors.base import AGENCIES, Connector
from connectors.config import ConnectorConfigError, ConnectorsConfig, load_connectors_file
from connectors.http import HttpConnector
from connectors.signatures import RequestSigner
from connectors.simulated import simulated_connectors


def connectors_config(
    kind: Literal["simulated", "http"], agency_urls: dict[str, str], file: Path | None = None
) -> ConnectorsConfig | None:
    """The validated per-agency configuration for ``http`` (the file, else ``agency_urls``); ``None``
    for ``simulated``. Raises ``ConnectorConfigError`` with one line naming the source and the field."""
    if kind == "simulated":
        return None
    if kind != "http":
        raise ValueError(f"unknown connector kind {kind!r}; expected 'simulated' or 'http'")
    if file is not None:
        if agency_urls:
            raise ConnectorConfigError(
                "set GATEWAY_CONNECTORS_FILE or GATEWAY_AGENCY_URLS, not both (the file holds the URLs)"
            )
        return load_connectors_file(file)
    missing = sorted(set(AGENCIES) - agency_urls.keys())
    unknown = sorted(agency_urls.keys() - set(AGENCIES))
    if unknown:
        raise ConnectorConfigError(
            f"GATEWAY_AGENCY_URLS: unknown agencies {', '.join(unknown)}; expected {', '.join(AGENCIES)}"
        )
    if missing:
        raise ConnectorConfigError(
            f"GATEWAY_AGENCY_URLS must give a URL for every agency; missing {', '.join(missing)}"
        )
    return ConnectorsConfig.from_agency_urls(agency_urls)


def build_connectors(
    kind: Literal["simulated", "http"],
    agency_urls: dict[str, str],
    *,
    file: Path | None = None,
    signer: RequestSigner | None = None,
) -> dict[str, Connector]:
    """A connector for every agency: simulated systems, or HTTP connectors configured by ``file`` (the
    connector file) or ``agency_urls`` (loopback only), signing with ``signer``.

    Everything is validated here, at start-up: a missing agency or a bad file would otherwise surface
    only at the first share, in the middle of a case.
    """
    config = connectors_config(kind, agency_urls, file)
    if config is None:
        return dict[str, Connector](simulated_connectors())
    return {
        agency: HttpConnector.from_endpoint(agency, config.agencies[agency], signer)  # type: ignore[index]
        for agency in AGENCIES
    }
