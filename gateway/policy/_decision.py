"""The decision value and the engine seam; shared by every engine so they parse results alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Reason codes the engine adapters produce themselves; the policy produces the others (docs/policies.md).
ENGINE_ERROR = "engine_error"
ENGINE_TIMEOUT = "engine_timeout"
UNDEFINED_DECISION = "undefined_decision"
MALFORMED_DECISION = "malformed_decision"
# A policy engine reached over the network (OPA) can also be unreachable.
ENGINE_UNAVAILABLE = "engine_unavailable"

_FAIL_MESSAGES: dict[str, tuple[str, str]] = {
    ENGINE_ERROR: (
        "The policy engine failed; denied (fail closed)",
        "De beleidsengine faalde; geweigerd (fail closed)",
    ),
    ENGINE_TIMEOUT: (
        "The policy engine did not decide in time; denied (fail closed)",
        "De beleidsengine besliste niet op tijd; geweigerd (fail closed)",
    ),
    UNDEFINED_DECISION: (
        "The policy gave no decision; denied (fail closed)",
        "Het beleid gaf geen besluit; geweigerd (fail closed)",
    ),
    MALFORMED_DECISION: (
        "The policy gave a decision the gateway cannot read; denied (fail closed)",
        "Het beleid gaf een onleesbaar besluit; geweigerd (fail closed)",
    ),
    ENGINE_UNAVAILABLE: (
        "The policy engine cannot be reached; denied (fail closed)",
        "De beleidsengine is niet bereikbaar; geweigerd (fail closed)",
    ),
}


class MalformedDecision(ValueError):
    """A result that is not a well-formed decision (see `Decision.from_result`)."""


@dataclass(frozen=True)
class Reason:
    """Why a decision came out as it did: a code of ``reasonCodes`` and its sentence in both languages."""

    code: str
    message: str
    message_nl: str

    def to_json(self) -> dict[str, str]:
        """``{code, message, messageNl}``, as the API and the audit log show it."""
        return {"code": self.code, "message": self.message, "messageNl": self.message_nl}


STRIP_FIELDS = "strip_fields"
USAGE_RESTRICTION = "usage_restriction"
ENFORCED_OBLIGATIONS = frozenset({STRIP_FIELDS, USAGE_RESTRICTION})
"""The obligations the gateway carries out; a decision with any other is malformed (fail closed).

``strip_fields``: only ``fields`` reach the recipient (rule 5); ``usage_restriction``: the delivered
message carries its purpose and that sharing it on is a new decision (rule 4).
"""


@dataclass(frozen=True)
class Obligation:
    """Something the gateway must do with one delivery; ``params`` are the policy's other members."""

    code: str
    recipient: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields a ``strip_fields`` obligation lets through."""
        value = self.params.get("fields", ())
        return tuple(value) if isinstance(value, (list, tuple)) else ()

    def to_json(self) -> dict[str, Any]:
        """The obligation as the policy returned it."""
        return {"code": self.code, "recipient": self.recipient, **self.params}


@dataclass(frozen=True)
class RecipientDecision:
    """The decision for one receiving agency: allowed or not, why, on which basis, which fields.

    ``obligations`` are the decision's obligations that concern this recipient; the gateway enforces
    each of them (`ENFORCED_OBLIGATIONS`).
    """

    agency: str
    allowed: bool
    reasons: tuple[Reason, ...]
    legal_basis: str | None
    purpose: str | None
    fields: tuple[str, ...]
    obligations: tuple[Obligation, ...] = ()

    @property
    def codes(self) -> list[str]:
        """The reason codes, in order."""
        return [r.code for r in self.reasons]

    def to_json(self) -> dict[str, Any]:
        """``{allowed, reasons, legalBasis, purpose, fields}`` (camelCase, as the policy returns it)."""
        return {
            "allowed": self.allowed,
            "reasons": [r.to_json() for r in self.reasons],
            "legalBasis": self.legal_basis,
            "purpose": self.purpose,
            "fields": list(self.fields),
        }


@dataclass(frozen=True)
class Decision:
    """One policy decision: allowed or not, why, on which legal basis, and what the gateway must do.

    ``recipients`` maps each receiving agency of a share or request to its `RecipientDecision`.
    """

    allowed: bool
    reasons: tuple[Reason, ...]
    legal_basis: str | None
    obligations: tuple[Obligation, ...]
    recipients: Mapping[str, RecipientDecision]
    policy_revision: str
    engine_failure: bool = field(default=False, compare=False)
    """True when the engine, not the policy, decided (fail closed): an operator should look."""
    input_digest: str | None = field(default=None, compare=False)
    """``sha256:...`` of the input it was made on, when `Runtime.decide` recorded that input (issue 11):
    the entry's ``decision.inputDigest``."""

    @property
    def codes(self) -> list[str]:
        """The reason codes, in order."""
        return [r.code for r in self.reasons]

    def recipient(self, agency: str) -> RecipientDecision:
        """The decision for ``agency``; one the policy did not decide is refused with the overall reasons.

        `from_result` makes sure an allowed share or request decided every receiver, so the fallback
        only ever stands for a decision refused as a whole.
        """
        found = self.recipients.get(agency)
        if found is not None:
            return found
        return RecipientDecision(agency, False, self.reasons, None, None, ())

    def to_json(self) -> dict[str, Any]:
        """The decision as the API shows it (camelCase)."""
        return {
            "allowed": self.allowed,
            "reasons": [r.to_json() for r in self.reasons],
            "legalBasis": self.legal_basis,
            "obligations": [o.to_json() for o in self.obligations],
            "recipients": {a: p.to_json() for a, p in self.recipients.items()},
            "policyRevision": self.policy_revision,
        }

    @classmethod
    def fail_closed(
        cls, code: str, revision: str, policy_input: Any = None, detail: str | None = None
    ) -> Decision:
        """A deny the engine adapter makes itself; every requested receiver is denied too."""
        message, message_nl = _FAIL_MESSAGES.get(code, _FAIL_MESSAGES[ENGINE_ERROR])
        if detail:
            message = f"{message}: {detail}"
        reason = Reason(code, message, message_nl)
        purpose = policy_input.get("purpose") if isinstance(policy_input, Mapping) else None
        recipients = {
            agency: RecipientDecision(
                agency, False, (reason,), None, purpose if isinstance(purpose, str) else None, ()
            )
            for agency in _receivers(policy_input)
        }
        return cls(False, (reason,), None, (), recipients, revision, engine_failure=True)

    @classmethod
    def from_result(cls, result: Any, revision: str, policy_input: Any = None) -> Decision:
        """Check and convert the policy's ``result`` document; raises `MalformedDecision`.

        Beyond the shape it checks what the gateway relies on: an allow names a legal basis (rule 1), a
        deny gives a reason, a share decides every requested recipient, the top level agrees with the
        recipients, and every obligation is one the gateway enforces, for a recipient it allows.
        """
        if not isinstance(result, Mapping):
            raise MalformedDecision("the result is not an object")
        allowed = result.get("allowed")
        if not isinstance(allowed, bool):
            raise MalformedDecision("allowed is not a boolean")
        reasons = _reasons(result.get("reasons"), "reasons")
        legal_basis = result.get("legalBasis")
        if legal_basis is not None and not isinstance(legal_basis, str):
            raise MalformedDecision("legalBasis is neither a string nor null")
        obligations = _obligations(result.get("obligations"))
        raw_recipients = result.get("recipients")
        if not isinstance(raw_recipients, Mapping):
            raise MalformedDecision("recipients is not an object")
        recipients = {
            str(a): _recipient(str(a), p, [o for o in obligations if o.recipient == a])
            for a, p in raw_recipients.items()
        }
        for o in obligations:
            if o.recipient not in recipients or not recipients[o.recipient].allowed:
                raise MalformedDecision(f"an obligation for {o.recipient}, which is not an allowed recipient")
        if allowed and not legal_basis:
            raise MalformedDecision("an allow without a legal basis")
        if not allowed and not reasons:
            raise MalformedDecision("a deny without a reason")
        action = policy_input.get("action") if isinstance(policy_input, Mapping) else None
        if action in {"share", "request"}:
            any_allowed = any(p.allowed for p in recipients.values())
            if allowed != any_allowed:
                raise MalformedDecision("allowed disagrees with the recipients")
            if allowed and set(_receivers(policy_input)) - set(recipients):
                raise MalformedDecision("a requested recipient was not decided")
        return cls(allowed, reasons, legal_basis, tuple(obligations), recipients, revision)


def _reasons(value: Any, where: str) -> tuple[Reason, ...]:
    if not isinstance(value, list):
        raise MalformedDecision(f"{where} is not a list")
    out = []
    for r in value:
        if not (
            isinstance(r, Mapping)
            and isinstance(r.get("code"), str)
            and isinstance(r.get("message"), str)
            and isinstance(r.get("messageNl"), str)
        ):
            raise MalformedDecision(f"{where} holds an entry without code, message and messageNl")
        out.append(Reason(r["code"], r["message"], r["messageNl"]))
    return tuple(out)


def _obligations(value: Any) -> list[Obligation]:
    if not isinstance(value, list) or not all(
        isinstance(o, Mapping) and isinstance(o.get("code"), str) and isinstance(o.get("recipient"), str)
        for o in value
    ):
        raise MalformedDecision("obligations is not a list of objects with a code and a recipient")
    out = []
    for o in value:
        if o["code"] not in ENFORCED_OBLIGATIONS:
            # Returning an obligation the gateway would ignore would be a promise nobody keeps.
            raise MalformedDecision(f"obligation {o['code']} is not one the gateway enforces")
        params = {k: v for k, v in o.items() if k not in {"code", "recipient"}}
        if o["code"] == STRIP_FIELDS and not (
            isinstance(params.get("fields"), list) and all(isinstance(f, str) for f in params["fields"])
        ):
            raise MalformedDecision("a strip_fields obligation without a list of fields")
        out.append(Obligation(o["code"], o["recipient"], params))
    return out


def _recipient(agency: str, part: Any, obligations: list[Obligation]) -> RecipientDecision:
    if not isinstance(part, Mapping) or not isinstance(part.get("allowed"), bool):
        raise MalformedDecision(f"recipient {agency} has no boolean allowed")
    reasons = _reasons(part.get("reasons"), f"recipients.{agency}.reasons")
    fields = part.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise MalformedDecision(f"recipients.{agency}.fields is not a list of strings")
    legal_basis = part.get("legalBasis")
    if part["allowed"] and not isinstance(legal_basis, str):
        raise MalformedDecision(f"recipient {agency} is allowed without a legal basis")
    if not part["allowed"] and (not reasons or fields):
        raise MalformedDecision(f"recipient {agency} is denied without a reason, or with fields")
    for o in obligations:
        if o.code == STRIP_FIELDS and not set(o.fields) <= set(fields):
            raise MalformedDecision(f"strip_fields for {agency} lets through fields the decision does not")
    purpose = part.get("purpose")
    return RecipientDecision(
        agency,
        part["allowed"],
        reasons,
        legal_basis if isinstance(legal_basis, str) else None,
        purpose if isinstance(purpose, str) else None,
        tuple(fields),
        tuple(obligations),
    )


def _receivers(policy_input: Any) -> list[str]:
    """The agencies that would receive data: share recipients, or the requesting actor."""
    if not isinstance(policy_input, Mapping):
        return []
    action = policy_input.get("action")
    if action == "share":
        recipients = policy_input.get("recipients")
        if isinstance(recipients, list):
            return list(dict.fromkeys(r for r in recipients if isinstance(r, str)))
    if action == "request":
        actor = policy_input.get("actor")
        agency = actor.get("agency") if isinstance(actor, Mapping) else None
        if isinstance(agency, str):
            return [agency]
    return []


@runtime_checkable
class PolicyEngine(Protocol):
    """Decides with one loaded policy revision. Implementations: `EmbeddedEngine` (regopy); an OPA
    sidecar adapter fits the same seam. An engine never raises from `decide`: it fails closed."""

    @property
    def revision(self) -> str:
        """The revision (``sha256:...``) of the loaded policy directory."""
        ...

    def decide(self, policy_input: dict[str, Any]) -> Decision:
        """Evaluate ``veiligdelen/decision/result`` for ``policy_input``; a deny on any failure."""
        ...

    def info(self) -> dict[str, Any]:
        """``{revision, engine, loadedAt, modules}`` for ``GET /v1/policies``."""
        ...

    def facts(self) -> dict[str, Any]:
        """A copy of ``data.veiligdelen.facts`` (identifiers, steps, rows) of the loaded revision."""
        ...

    def health(self) -> str | None:
        """None when the engine can decide now; otherwise a short reason for ``/readyz`` (e.g. stalled)."""
        ...
