"""Connectors: how the gateway reaches agency systems, after it has decided and audited.

``Connector`` is the seam; ``SimulatedAgencySystem`` (in memory) and ``HttpConnector`` (real systems)
implement it. The HTTP stand-in for an agency lives in ``standins.agency``, apart, so that
importing the connectors does not pull in a web framework.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.base import (
        AGENCIES,
        Agency,
        Connector,
        ConnectorError,
        ConnectorRejected,
        ConnectorTimeout,
        ConnectorUnavailable,
        Delivery,
        DeliveryReceipt,
        FetchRequest,
        FetchResult,
        SubjectIdentity,
    )
    from connectors.http import HttpConnector
    from connectors.registry import build_connectors
    from connectors.simulated import SimulatedAgencySystem, simulated_connectors

__all__ = [
    "AGENCIES",
    "Agency",
    "Connector",
    "ConnectorError",
    "ConnectorRejected",
    "ConnectorTimeout",
    "ConnectorUnavailable",
    "Delivery",
    "DeliveryReceipt",
    "FetchRequest",
    "FetchResult",
    "HttpConnector",
    "SimulatedAgencySystem",
    "SubjectIdentity",
    "build_connectors",
    "simulated_connectors",
]

_WHERE = {
    "AGENCIES": "connectors.base",
    "Agency": "connectors.base",
    "Connector": "connectors.base",
    "ConnectorError": "connectors.base",
    "ConnectorRejected": "connectors.base",
    "ConnectorTimeout": "connectors.base",
    "ConnectorUnavailable": "connectors.base",
    "Delivery": "connectors.base",
    "DeliveryReceipt": "connectors.base",
    "FetchRequest": "connectors.base",
    "FetchResult": "connectors.base",
    "HttpConnector": "connectors.http",
    "SimulatedAgencySystem": "connectors.simulated",
    "SubjectIdentity": "connectors.base",
    "build_connectors": "connectors.registry",
    "simulated_connectors": "connectors.simulated",
}
"""Where each public name is defined. Importing the package loads none of them: the first use of a name
imports its module (PEP 562), so ``connectors.base`` (the gateway's settings need ``AGENCIES``) does not
pull in httpx and the HTTP signature libraries."""


if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name imported from here

    def __getattr__(name: str) -> object:
        try:
            module = _WHERE[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next use is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
