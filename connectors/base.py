"""The seam between the gateway and agency systems: messages, results, the Connector protocol, errors.

The gateway decides and audits first; only then does a connector deliver a minimised message to the
recipient agency's system (push) or fetch information from the holder agency's system (pull). Nothing
here decides anything: a connector carries what it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args, runtime_checkable

Agency = Literal["politie", "veilig_thuis", "om", "reclassering", "rvdk"]
"""An agency identifier of the contract (DESIGN section 2): the one list, which every other place uses."""

AGENCIES: tuple[str, ...] = get_args(Agency)
"""The agency identifiers, in the contract's order."""


@dataclass(frozen=True)
class Delivery:
    """A minimised message the gateway has decided on and audited, on its way to the recipient's system."""

    message_id: str
    case_id: str
    sender: str
    recipient: str
    information_type: str
    purpose: str
    legal_basis: str
    payload: dict[str, Any]
    usage_restriction: str
    trace_parent: str
    subjects: tuple[SubjectIdentity, ...] = ()
    """The subjects the policy lets this recipient identify, with their BSN (never written to disk)."""


@dataclass(frozen=True)
class SubjectIdentity:
    """A person in a case as a recipient may know them: their role and BSN."""

    role: str
    bsn: str


@dataclass(frozen=True)
class DeliveryReceipt:
    """The recipient system's answer; ``accepted`` False means it answered but did not take the message on."""

    message_id: str
    accepted: bool
    detail: str


@dataclass(frozen=True)
class FetchRequest:
    """A request the gateway has allowed and audited, for information the holder agency keeps.

    ``subject_pseudonyms`` are the gateway's keyed pseudonyms, never BSNs.
    """

    request_id: str
    case_id: str
    requester: str
    holder: str
    information_type: str
    purpose: str
    subject_roles: list[str]
    subject_pseudonyms: list[str]
    trace_parent: str


@dataclass(frozen=True)
class FetchResult:
    """What the holder's system answered; the gateway still minimises ``data`` before passing it on."""

    found: bool
    data: dict[str, Any]


@runtime_checkable
class Connector(Protocol):
    """One agency system, as the gateway sees it.

    ``deliver`` and ``fetch`` raise ``ConnectorUnavailable`` when the system cannot be reached and
    ``ConnectorRejected`` when it refuses the request; they never return a half-done result.
    """

    agency: str

    def deliver(self, d: Delivery) -> DeliveryReceipt:
        """Hand a minimised message to this agency's system."""
        ...

    def fetch(self, r: FetchRequest) -> FetchResult:
        """Ask this agency's system for the information it holds."""
        ...

    def health(self) -> bool:
        """Whether the system answers now; never raises."""
        ...


class ConnectorError(Exception):
    """Root of every error a connector raises; ``agency`` names the system involved."""

    def __init__(self, agency: str, detail: str) -> None:
        super().__init__(f"{agency}: {detail}")
        self.agency = agency
        self.detail = detail


class ConnectorUnavailable(ConnectorError):
    """The system is down, timed out, or answered with something unusable; trying later may work."""


class ConnectorTimeout(ConnectorUnavailable):
    """The system did not answer within the deadline; it may still have acted on the request."""


class ConnectorRejected(ConnectorError):
    """The system answered and refused the request; sending it again unchanged will not help.

    ``status`` is the HTTP status when the refusal came over HTTP.
    """

    def __init__(self, agency: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(agency, detail)
        self.status = status
