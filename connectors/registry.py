"""Build the gateway's connectors, one per agency, from its settings."""

from __future__ import annotations

from typing import Literal

from connectors.base import AGENCIES, Connector
from connectors.http import HttpConnector
from connectors.simulated import simulated_connectors


def build_connectors(kind: Literal["simulated", "http"], agency_urls: dict[str, str]) -> dict[str, Connector]:
    """A connector for every agency: simulated systems, or HTTP connectors to ``agency_urls``.

    ``agency_urls`` is used only for ``http``, where it must name exactly the five agencies: a missing
    one would otherwise surface only at the first share, in the middle of a case.
    """
    if kind == "simulated":
        return dict[str, Connector](simulated_connectors())
    if kind == "http":
        missing = sorted(set(AGENCIES) - agency_urls.keys())
        unknown = sorted(agency_urls.keys() - set(AGENCIES))
        if missing or unknown:
            raise ValueError(
                f"agency_urls (GATEWAY_AGENCY_URLS): missing {missing or 'none'}, unknown {unknown or 'none'}"
            )
        return {agency: HttpConnector(agency, agency_urls[agency]) for agency in AGENCIES}
    raise ValueError(f"unknown connector kind {kind!r}; expected 'simulated' or 'http'")
