"""Connectors: how the gateway reaches agency systems, after it has decided and audited.

``Connector`` is the seam; ``SimulatedAgencySystem`` (in memory) and ``HttpConnector`` (real systems)
implement it. The HTTP stand-in for an agency lives in ``standins.agency``, apart, so that
importing the connectors does not pull in a web framework.
"""

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
