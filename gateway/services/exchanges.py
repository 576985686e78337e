"""Exchanges: shares (push), the inbox, requests (pull) and what-if decisions.

Order on every path: validate -> decide (one evaluation for all recipients) -> commit audit entries ->
only then move data. A recipient the policy refuses receives nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Row, Text, cast, select, update
from sqlalchemy.orm import defer

from connectors import ConnectorError, Delivery, FetchRequest
from gateway.db import transaction, utcnow
from gateway.errors import InvalidInput, NotFound, PolicyDenied, UpstreamFailed
from gateway.models import Case, Message
from gateway.policy import Decision
from gateway.runtime import Runtime
from gateway.schemas import DecisionIn, InboxMessage, RequestIn, ShareIn
from gateway.services.cases import CaseService, actor_facts, case_facts, pseudonyms
from gateway.services.trail import CallContext, decision_record, make_entry, payload_digest
from gateway.strictjson import strict_json

log = logging.getLogger("gateway.services.exchanges")


def usage_restriction(purpose: str, legal_basis: str | None) -> str:
    """The restriction that travels with delivered data (purpose binding, baseline rule 4)."""
    return (
        f"Only for purpose '{purpose}' (basis: {legal_basis or 'n/a'}). "
        "Sharing it on is a new decision through the gateway."
    )


def _stored(text: str | None) -> Any:
    return None if text is None else strict_json(text)


def _shown(m: Row[*tuple[Any, ...]]) -> dict[str, Any]:
    """One inbox row as the API shows it; ``InvalidInput`` or ``ValidationError`` when it cannot be."""
    shown = {
        "messageId": m.message_id,
        "caseId": m.case_id,
        "informationType": m.information_type,
        "purpose": m.purpose,
        "sender": m.sender,
        "legalBasis": m.legal_basis,
        "payload": _stored(m.payload),
        "receivedAt": m.received_at,
        "usageRestriction": usage_restriction(m.purpose, m.legal_basis),
        "basedOn": _stored(m.based_on),
        "origin": _stored(m.origin),
    }
    InboxMessage.model_validate(shown)  # the same check the response gets, but for this row alone
    return shown


NOT_RECEIVED = "not a message delivered to your agency in this case"


def _origin_of(m: Message) -> dict[str, str]:
    """A delivered message as an origin entry of the policy input."""
    return {
        "messageId": m.message_id,
        "purpose": m.purpose,
        "informationType": m.information_type,
        "sender": m.sender,
    }


def policy_origin(origin: list[dict[str, str]]) -> list[dict[str, str]]:
    """The origin as the policy sees it: one entry per (purpose, information type, sender).

    The policy reads only those three (rule 4), so repeats decide nothing; without them the list is
    bounded by the facts, however long a chain of onward shares made the lineage.
    """
    seen: dict[tuple[str, str, str], dict[str, str]] = {}
    for item in origin:
        seen.setdefault((item["purpose"], item["informationType"], item["sender"]), item)
    return list(seen.values())


class ExchangeService:
    """Shares, inbox, requests and what-if decisions on one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.cases = CaseService(rt)

    def _check_identifiers(
        self, information_type: str | None, purpose: str | None, step: str | None = None
    ) -> None:
        facts = self.rt.process_facts()
        errors = []
        if step is not None and not any(step in facts.steps(f) for f in facts.flows()):
            errors.append({"field": "step", "message": "unknown step"})
        if information_type is not None and information_type not in facts.information_types():
            errors.append({"field": "informationType", "message": "unknown information type"})
        if purpose is not None and purpose not in facts.purposes():
            errors.append({"field": "purpose", "message": "unknown purpose"})
        if errors:
            raise InvalidInput("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)

    def _payload_fields(self, names: Iterable[str]) -> list[str]:
        """The payload field names the policy sees: only those some grant or information type names.

        What the engine sees is bounded by the facts, not by the request: evaluation time grows with
        the square of the number of field names, and a field that no grant names reaches nobody
        anyway (rule 5), so leaving it out changes no decision. Only the ``removed`` list of a
        ``strip_fields`` obligation no longer names fields the facts do not know.
        """
        known = self.rt.process_facts().field_names()
        return sorted(known.intersection(names))

    # -- shares ---------------------------------------------------------------------------------------

    def origin(self, ctx: CallContext, case: Case, based_on: list[str] | None) -> list[dict[str, str]]:
        """Where shared-on data came from: each message in ``based_on`` and, in turn, its own origin.

        Each must be a message delivered to the caller's agency in this case; otherwise a 404 naming
        the field that does not say whether the id exists elsewhere. The policy checks the new purpose
        against every purpose in the result (baseline rule 4: received data carries its purpose).
        """
        if not based_on:
            return []
        with self.rt.sessions() as s:
            query = select(Message).where(Message.message_id.in_(based_on))
            found = {m.message_id: m for m in s.scalars(query)}
        errors = []
        lineage: dict[str, dict[str, str]] = {}
        for i, message_id in enumerate(based_on):
            m = found.get(message_id)
            if m is None or m.recipient != ctx.principal.agency or m.case_id != case.case_id:
                errors.append({"field": f"basedOn[{i}]", "message": NOT_RECEIVED})
                continue
            for item in [_origin_of(m), *(m.origin or [])]:
                lineage.setdefault(item["messageId"], item)
        if errors:
            # A well-formed id that names nothing the caller received: not found, naming the field, and
            # the same answer whether the id exists elsewhere or not at all.
            raise NotFound("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)
        return list(lineage.values())

    def share(self, ctx: CallContext, case_id: str, body: ShareIn) -> dict[str, Any]:
        """Decide per recipient, audit, then deliver the minimised payload to each allowed recipient."""
        self._check_identifiers(body.information_type, body.purpose)
        if len(set(body.recipients)) != len(body.recipients):
            raise InvalidInput.field("recipients", "a recipient is listed twice")
        engine = self.rt.policy.current
        case, failure = self.cases.visible(ctx, case_id, attempted="share", engine=engine)
        origin = self.origin(ctx, case, body.based_on)
        policy_input: dict[str, Any] = {
            "action": "share",
            "actor": actor_facts(ctx),
            "case": case_facts(case),
            "informationType": body.information_type,
            "purpose": body.purpose,
            "recipients": list(body.recipients),
            "payloadFields": self._payload_fields(body.payload.keys()),
        }
        if body.based_on:
            policy_input["origin"] = policy_origin(origin)
        decision = self.cases.decide(policy_input, failure, engine)
        share_id = str(uuid.uuid4())
        plan: list[dict[str, Any]] = []
        entries = []
        for recipient in body.recipients:
            part = decision.recipients.get(recipient, {})
            allowed = bool(part.get("allowed", False))
            fields = sorted(f for f in part.get("fields", []) if f in body.payload) if allowed else []
            minimised = {k: body.payload[k] for k in fields}
            message_id = str(uuid.uuid4()) if allowed else None
            plan.append(
                {
                    "recipient": recipient,
                    "allowed": allowed,
                    "part": part,
                    "fields": fields,
                    "payload": minimised,
                    "messageId": message_id,
                }
            )
            refs = {"shareId": share_id}
            if message_id:
                refs["messageId"] = message_id
            if body.based_on:
                # The trail names what the data was shared on from (comma-separated message ids).
                refs["basedOn"] = ",".join(body.based_on)
            entries.append(
                make_entry(
                    ctx,
                    type_="exchange",
                    action="share",
                    outcome="authorised" if allowed else "refused",
                    case_id=case.case_id,
                    step=f"{case.flow}/{case.step}",
                    subjects=pseudonyms(case),
                    information_type=body.information_type,
                    purpose=body.purpose,
                    counterpart=recipient,
                    decision=decision_record(decision, recipient),
                    digest=payload_digest(minimised) if allowed else None,
                    refs=refs,
                )
            )
        # No audit, no exchange: the entries are committed before anything is stored or sent.
        self.rt.audit_append(entries)
        results = []
        delivered_to: list[str] = []
        for item in plan:
            result: dict[str, Any] = {
                "recipient": item["recipient"],
                "allowed": item["allowed"],
                "reasons": item["part"].get("reasons", decision.reasons),
                "legalBasis": item["part"].get("legalBasis"),
            }
            if item["allowed"]:
                result["messageId"] = item["messageId"]
                result["fields"] = item["fields"]
                result["delivered"] = self._deliver(ctx, case, body, item, share_id, origin)
                delivered_to.append(item["recipient"])
            results.append(result)
        if delivered_to:
            self._involve(case, [ctx.principal.agency, *delivered_to])
        return {"shareId": share_id, "policyRevision": decision.policy_revision, "results": results}

    def _deliver(
        self,
        ctx: CallContext,
        case: Case,
        body: ShareIn,
        item: dict[str, Any],
        share_id: str,
        origin: list[dict[str, str]],
    ) -> bool:
        """Put the message in the recipient's inbox, then push it to the recipient's system."""
        legal_basis = item["part"].get("legalBasis") or ""
        with transaction(self.rt.sessions) as s:
            s.add(
                Message(
                    message_id=item["messageId"],
                    share_id=share_id,
                    case_id=case.case_id,
                    recipient=item["recipient"],
                    sender=ctx.principal.agency,
                    information_type=body.information_type,
                    purpose=body.purpose,
                    legal_basis=legal_basis,
                    payload=item["payload"],
                    received_at=utcnow(),
                    based_on=list(body.based_on) if body.based_on else None,
                    origin=origin or None,
                )
            )
        connector = self.rt.connectors.get(item["recipient"])
        if connector is None:
            return False
        try:
            receipt = connector.deliver(
                Delivery(
                    message_id=item["messageId"],
                    case_id=case.case_id,
                    sender=ctx.principal.agency,
                    recipient=item["recipient"],
                    information_type=body.information_type,
                    purpose=body.purpose,
                    legal_basis=legal_basis,
                    payload=item["payload"],
                    usage_restriction=usage_restriction(body.purpose, legal_basis),
                    trace_parent=ctx.trace.child().traceparent,
                )
            )
            return bool(receipt.accepted)
        except ConnectorError as e:
            # The message waits in the inbox; the failed push is itself part of the trail.
            log.warning("push to %s failed: %s", item["recipient"], type(e).__name__)
            self.rt.audit_append(
                [
                    make_entry(
                        ctx,
                        type_="delivery",
                        action="push",
                        outcome="push_failed",
                        case_id=case.case_id,
                        step=f"{case.flow}/{case.step}",
                        counterpart=item["recipient"],
                        information_type=body.information_type,
                        purpose=body.purpose,
                        refs={"messageId": item["messageId"], "error": type(e).__name__},
                    )
                ]
            )
            return False

    def _involve(self, case: Case, agencies: list[str]) -> None:
        """Remember which agencies took part; most exchanges change nothing, so skip the write then."""
        if set(agencies) <= set(case.involved or []):
            return
        with transaction(self.rt.sessions) as s:
            stored = s.get(Case, case.case_id)
            if stored is not None:
                merged = list(dict.fromkeys([*(stored.involved or []), *agencies]))
                if merged != stored.involved:
                    stored.involved = merged

    # -- inbox ----------------------------------------------------------------------------------------

    def inbox(self, ctx: CallContext, limit: int = 100) -> dict[str, Any]:
        """Unacknowledged messages for the caller's agency, oldest first: ``{messages, unreadable}``.

        Stored JSON is read as text and parsed as strictly as a request body, one row at a time. A
        message that cannot be shown (a payload an older version let through, a damaged row) is listed
        under ``unreadable`` by id instead: it neither hides the others nor stays out of reach of an ack.
        """
        with self.rt.sessions() as s:
            rows = s.execute(
                select(
                    Message.message_id,
                    Message.case_id,
                    Message.information_type,
                    Message.purpose,
                    Message.sender,
                    Message.legal_basis,
                    Message.received_at,
                    cast(Message.payload, Text).label("payload"),
                    cast(Message.based_on, Text).label("based_on"),
                    cast(Message.origin, Text).label("origin"),
                )
                .where(Message.recipient == ctx.principal.agency, Message.acked_at.is_(None))
                .order_by(Message.received_at)
                .limit(limit)
            ).all()
        messages, unreadable = [], []
        for m in rows:
            try:
                messages.append(_shown(m))
            except (InvalidInput, ValidationError) as e:
                # By id and kind only: the reason could quote the stored content.
                log.warning("inbox: message %s cannot be shown: %s", m.message_id, type(e).__name__)
                unreadable.append(
                    {
                        "messageId": m.message_id,
                        "caseId": m.case_id,
                        "sender": m.sender,
                        "receivedAt": m.received_at,
                    }
                )
        return {"messages": messages, "unreadable": unreadable}

    def ack(self, ctx: CallContext, message_id: str) -> None:
        """Acknowledge a message of the caller's agency; another agency's message is a 404."""
        with self.rt.sessions() as s:
            # Without the payload: a message the inbox cannot show must still be acknowledged.
            m = s.get(Message, message_id, options=[defer(Message.payload), defer(Message.origin)])
            if m is None or m.recipient != ctx.principal.agency:
                raise NotFound("no such message")
            if m.acked_at is not None:
                return
            case_id, info_type, purpose, sender = m.case_id, m.information_type, m.purpose, m.sender
        # The entry first, as everywhere: if the database then refuses the update, the log says
        # acknowledged once too often (a retry acknowledges again), never an acknowledgement unlogged.
        self.rt.audit_append(
            [
                make_entry(
                    ctx,
                    type_="delivery",
                    action="ack",
                    outcome="acknowledged",
                    case_id=case_id,
                    counterpart=sender,
                    information_type=info_type,
                    purpose=purpose,
                    refs={"messageId": message_id},
                )
            ]
        )
        with transaction(self.rt.sessions) as s:
            s.execute(
                update(Message)
                .where(Message.message_id == message_id, Message.acked_at.is_(None))
                .values(acked_at=utcnow())
            )

    # -- requests -------------------------------------------------------------------------------------

    def request(self, ctx: CallContext, case_id: str, body: RequestIn) -> dict[str, Any]:
        """Ask the holder's system for information; answered minimised, or 403 with reasons."""
        self._check_identifiers(body.information_type, body.purpose)
        case, failure = self.cases.visible(ctx, case_id, attempted="request")
        requester = ctx.principal.agency
        decision = self.cases.decide(
            {
                "action": "request",
                "actor": actor_facts(ctx),
                "case": case_facts(case),
                "informationType": body.information_type,
                "purpose": body.purpose,
                "holder": body.holder,
            },
            failure,
        )
        part = decision.recipients.get(requester, {})
        allowed = decision.allowed and bool(part.get("allowed", decision.allowed))
        legal_basis = part.get("legalBasis") or decision.legal_basis
        request_id = str(uuid.uuid4())
        record = decision_record(decision, requester if requester in decision.recipients else None)
        self.rt.audit_append(
            [
                make_entry(
                    ctx,
                    type_="decision",
                    action="request",
                    outcome="authorised" if allowed else "refused",
                    case_id=case.case_id,
                    step=f"{case.flow}/{case.step}",
                    subjects=pseudonyms(case),
                    information_type=body.information_type,
                    purpose=body.purpose,
                    counterpart=body.holder,
                    decision=record,
                    refs={"requestId": request_id},
                )
            ]
        )
        if not allowed:
            reasons = part.get("reasons") or decision.reasons
            raise PolicyDenied(
                "request refused by policy (" + ", ".join(r.get("code", "?") for r in reasons) + ")",
                reasons=reasons,
                extra={"policyRevision": decision.policy_revision, "requestId": request_id},
            )
        connector = self.rt.connectors.get(body.holder)
        if connector is None:
            raise UpstreamFailed(f"no connector for {body.holder}")
        try:
            result = connector.fetch(
                FetchRequest(
                    request_id=request_id,
                    case_id=case.case_id,
                    requester=requester,
                    holder=body.holder,
                    information_type=body.information_type,
                    purpose=body.purpose,
                    subject_roles=[s.role for s in case.subjects],
                    subject_pseudonyms=pseudonyms(case),
                    trace_parent=ctx.trace.child().traceparent,
                )
            )
        except ConnectorError as e:
            raise UpstreamFailed(f"the system of {body.holder} did not answer") from e
        allowed_fields = set(part.get("fields", []))
        data = {k: v for k, v in (result.data if result.found else {}).items() if k in allowed_fields}
        # The answer is audited (with a digest of exactly what goes out) before the caller receives it.
        self.rt.audit_append(
            [
                make_entry(
                    ctx,
                    type_="exchange",
                    action="request",
                    outcome="answered" if result.found else "not_found",
                    case_id=case.case_id,
                    step=f"{case.flow}/{case.step}",
                    subjects=pseudonyms(case),
                    information_type=body.information_type,
                    purpose=body.purpose,
                    counterpart=body.holder,
                    decision=record,
                    digest=payload_digest(data),
                    refs={"requestId": request_id},
                )
            ]
        )
        self._involve(case, [requester, body.holder])
        return {
            "requestId": request_id,
            "allowed": True,
            "legalBasis": legal_basis,
            "policyRevision": decision.policy_revision,
            "fields": sorted(data.keys()),
            "data": data,
        }

    # -- what-if --------------------------------------------------------------------------------------

    def what_if(self, ctx: CallContext, body: DecisionIn) -> tuple[Decision, dict[str, Any]]:
        """Evaluate a decision without changing anything (the evaluation itself is audited)."""
        self._check_identifiers(body.information_type, body.purpose, body.step)
        case, failure = self.cases.visible(ctx, body.case_id, attempted=f"what-if:{body.action}")
        policy_input: dict[str, Any] = {
            "action": body.action,
            "actor": actor_facts(ctx),
            "case": case_facts(case),
        }
        if body.information_type is not None:
            policy_input["informationType"] = body.information_type
        if body.purpose is not None:
            policy_input["purpose"] = body.purpose
        if body.action == "share":
            policy_input["recipients"] = [body.recipient] if body.recipient else []
            policy_input["payloadFields"] = self._payload_fields(body.payload_fields or [])
        if body.action == "request" and body.holder:
            policy_input["holder"] = body.holder
        if body.action == "share" and body.based_on:
            policy_input["origin"] = policy_origin(self.origin(ctx, case, body.based_on))
        if body.action == "case.transition" and body.step:
            policy_input["transition"] = {"flow": body.flow or case.flow, "step": body.step}
        if body.action == "case.track" and body.track:
            policy_input["track"] = {"name": body.track, "open": True if body.open is None else body.open}
        decision = self.cases.decide(policy_input, failure)
        focus: str | None = body.recipient if body.action == "share" else None
        if body.action == "request":
            focus = ctx.principal.agency if ctx.principal.agency in decision.recipients else None
        record = decision_record(decision, focus)
        self.rt.audit_append(
            [
                make_entry(
                    ctx,
                    type_="decision",
                    action=f"what-if:{body.action}",
                    outcome="evaluated",
                    case_id=case.case_id,
                    step=f"{case.flow}/{case.step}",
                    information_type=body.information_type,
                    purpose=body.purpose,
                    counterpart=body.recipient or body.holder,
                    decision=record,
                )
            ]
        )
        part = decision.recipients.get(focus, {}) if focus else {}
        out = {
            "allowed": bool(part.get("allowed")) if focus else decision.allowed,
            "reasons": part.get("reasons", decision.reasons) if focus else decision.reasons,
            "legalBasis": part.get("legalBasis") if focus else decision.legal_basis,
            "obligations": decision.obligations,
            "policyRevision": decision.policy_revision,
            "recipients": decision.recipients or None,
        }
        return decision, out
