"""Sample messages and helpers for the connector tests (importable: conftest modules are not meant to be)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx

from connectors import Delivery, FetchRequest

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def make_delivery(**changes: Any) -> Delivery:
    """A delivery from veilig_thuis to politie, with ``changes`` applied."""
    d = Delivery(
        message_id="msg-0001",
        case_id="case-0001",
        sender="veilig_thuis",
        recipient="politie",
        information_type="veiligheidsbeoordeling",
        purpose="maatregelen_afstemmen",
        legal_basis="Wmo 2015 art. 5.2.6",
        payload={"veiligheidsniveau": "acuut onveilig", "risicofactoren": ["escalerend geweld"]},
        usage_restriction="Alleen voor maatregelen_afstemmen; verder delen is een nieuwe beslissing.",
        trace_parent=TRACEPARENT,
    )
    return replace(d, **changes)


def make_fetch(**changes: Any) -> FetchRequest:
    """A request from veilig_thuis to politie for strafrechtelijke_informatie, with ``changes`` applied."""
    r = FetchRequest(
        request_id="req-0001",
        case_id="case-0001",
        requester="veilig_thuis",
        holder="politie",
        information_type="strafrechtelijke_informatie",
        purpose="veiligheid_beoordelen",
        subject_roles=["slachtoffer", "pleger", "kind"],
        subject_pseudonyms=["p-1a2b", "p-3c4d", "p-5e6f"],
        trace_parent=TRACEPARENT,
    )
    return replace(r, **changes)


class RecordingClient(httpx.Client):
    """An ordinary httpx client that also remembers every request it sent."""

    def __init__(self, **kwargs: Any) -> None:
        self.sent: list[httpx.Request] = []
        super().__init__(event_hooks={"request": [self.sent.append]}, **kwargs)
