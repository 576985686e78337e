"""Cases: open, read, move a step, open and close tracks. Every change is a policy decision first."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from gateway.db import transaction, utcnow
from gateway.errors import Conflict, InvalidInput, NotFound, PolicyDenied
from gateway.models import Case, Subject
from gateway.policy import Decision, PolicyEngine
from gateway.runtime import Runtime
from gateway.schemas import CaseCreate
from gateway.services.trail import CallContext, decision_record, make_entry

ILLEGAL_TRANSITION = "illegal_transition"


def case_facts(case: Case) -> dict[str, Any]:
    """The case as the policy sees it: no identifiers of people, only roles."""
    return {
        "flow": case.flow,
        "step": case.step,
        "tracks": {"zorg": case.zorg, "straf": case.straf},
        "subjectRoles": sorted({s.role for s in case.subjects}),
        "involved": list(case.involved or []),
    }


def actor_facts(ctx: CallContext) -> dict[str, str]:
    """The caller as the policy sees it."""
    p = ctx.principal
    return {"agency": p.agency, "clientId": p.client_id, "role": p.role}


def pseudonyms(case: Case) -> list[str]:
    """The subjects' pseudonyms, for the audit entry."""
    return [s.pseudonym for s in case.subjects]


class CaseService:
    """Case operations on one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def load(self, case_id: str) -> Case:
        """The case, or 404."""
        with self.rt.sessions() as s:
            case = s.get(Case, case_id)
            if case is None:
                raise NotFound("no such case")
            return case

    def visible(
        self, ctx: CallContext, case_id: str, *, attempted: str, engine: PolicyEngine | None = None
    ) -> tuple[Case, str | None]:
        """The case, when the caller may read it (``case.read``); otherwise the 404 of a missing id.

        Every route that names a case checks this first, so a caller that may not read a case learns
        nothing about it: not its step from a refusal's reasons, not even that it exists (the 404 is the
        one ``load`` gives for an unknown id). The refused attempt is logged as a refused read.

        When the engine itself failed (fail closed), the caller may or may not read the case; the second
        value is then the failure's reason code, and the route decides its action as that same failure
        (`decide`) instead of asking the engine again: a deny whose reasons say nothing about the case.
        """
        case = self.load(case_id)
        decision = self.rt.decide(
            {"action": "case.read", "actor": actor_facts(ctx), "case": case_facts(case)}, engine
        )
        if decision.allowed:
            return case, None
        if decision.engine_failure:
            return case, decision.codes[0]
        self.rt.audit_append(
            [
                make_entry(
                    ctx,
                    type_="access",
                    action="case.read",
                    outcome="refused",
                    case_id=case.case_id,
                    step=f"{case.flow}/{case.step}",
                    subjects=pseudonyms(case),
                    decision=decision_record(decision),
                    refs={"attempted": attempted},
                )
            ]
        )
        raise NotFound("no such case")

    def decide(
        self, policy_input: dict[str, Any], failure: str | None, engine: PolicyEngine | None = None
    ) -> Decision:
        """Decide ``policy_input``, or deny it with ``failure`` when the visibility check failed closed."""
        if failure is not None:
            revision = (engine or self.rt.policy.current).revision
            return Decision.fail_closed(failure, revision, policy_input)
        return self.rt.decide(policy_input, engine)

    def _refuse(self, decision: Decision, what: str) -> PolicyDenied:
        codes = ", ".join(r.get("code", "?") for r in decision.reasons)
        return PolicyDenied(
            f"{what} refused by policy ({codes})",
            reasons=decision.reasons,
            extra={"policyRevision": decision.policy_revision},
        )

    def open(self, ctx: CallContext, body: CaseCreate) -> Case:
        """Open a case when the policy allows the caller to (baseline rule 7)."""
        facts = self.rt.process_facts()
        steps = facts.steps(body.flow)
        step = body.step or steps[0]
        if step not in steps:
            raise InvalidInput.field("step", f"not a step of flow {body.flow}")
        subjects = [(sub.role, self.rt.pseudonymizer.pseudonym(sub.bsn)) for sub in body.subjects]
        case_id = str(uuid.uuid4())
        policy_case = {
            "flow": body.flow,
            "step": step,
            "tracks": {"zorg": False, "straf": False},
            "subjectRoles": sorted({r for r, _ in subjects}),
            "involved": [],
        }
        decision = self.rt.decide({"action": "case.open", "actor": actor_facts(ctx), "case": policy_case})
        entry = make_entry(
            ctx,
            type_="case",
            action="case.open",
            outcome="opened" if decision.allowed else "refused",
            case_id=case_id,
            step=f"{body.flow}/{step}",
            subjects=[p for _, p in subjects],
            decision=decision_record(decision),
        )
        self.rt.audit_append([entry])
        if not decision.allowed:
            raise self._refuse(decision, "opening the case")
        now = utcnow()
        with transaction(self.rt.sessions) as s:
            case = Case(
                case_id=case_id,
                flow=body.flow,
                step=step,
                zorg=False,
                straf=False,
                opened_by=ctx.principal.agency,
                involved=[ctx.principal.agency],
                created_at=now,
                updated_at=now,
                subjects=[Subject(position=i, role=r, pseudonym=p) for i, (r, p) in enumerate(subjects)],
            )
            s.add(case)
        return case

    def _decide_and_audit(
        self,
        ctx: CallContext,
        case: Case,
        *,
        action: str,
        type_: str,
        outcome: str,
        extra: dict[str, Any] | None = None,
        refs: dict[str, str] | None = None,
        failure: str | None = None,
    ) -> Decision:
        """Decide ``action`` on ``case`` and commit the audit entry before anything takes effect."""
        policy_input = {
            "action": action,
            "actor": actor_facts(ctx),
            "case": case_facts(case),
            **(extra or {}),
        }
        decision = self.decide(policy_input, failure)
        self.rt.audit_append(
            [
                make_entry(
                    ctx,
                    type_=type_,
                    action=action,
                    outcome=outcome if decision.allowed else "refused",
                    case_id=case.case_id,
                    step=f"{case.flow}/{case.step}",
                    subjects=pseudonyms(case),
                    decision=decision_record(decision),
                    refs=refs,
                )
            ]
        )
        return decision

    def _apply(self, ctx: CallContext, case_id: str, change: Callable[[Case], None]) -> Case:
        """Apply an allowed change; the acting agency now takes part in the case."""
        with transaction(self.rt.sessions) as s:
            stored = s.get(Case, case_id)
            if stored is None:
                raise NotFound("no such case")
            change(stored)
            stored.updated_at = utcnow()
            if ctx.principal.agency not in stored.involved:
                stored.involved = [*stored.involved, ctx.principal.agency]
        return self.load(case_id)

    def read(self, ctx: CallContext, case_id: str) -> Case:
        """The case, to agencies that take part in it; others get a 404 so they learn nothing."""
        case = self.load(case_id)
        decision = self._decide_and_audit(ctx, case, action="case.read", type_="access", outcome="read")
        if not decision.allowed:
            raise NotFound("no such case")
        return case

    def transition(self, ctx: CallContext, case_id: str, flow: str | None, step: str) -> Case:
        """Move the case to another step (or flow); 409 when the process does not allow that move."""
        case, failure = self.visible(ctx, case_id, attempted="case.transition")
        target_flow = flow or case.flow
        facts = self.rt.process_facts()
        if target_flow not in facts.flows():
            raise InvalidInput.field("flow", "unknown flow")
        if step not in facts.steps(target_flow):
            if flow is None and any(step in facts.steps(f) for f in facts.flows()):
                # A well-formed step of another flow: whether it fits depends on the case, so a conflict
                # with its state (409), not malformed input; naming the flow moves between flows.
                raise Conflict(f"{step} is not a step of the case's flow {case.flow}; name the flow to move")
            raise InvalidInput.field("step", f"not a step of flow {target_flow}")
        decision = self._decide_and_audit(
            ctx,
            case,
            action="case.transition",
            type_="case",
            outcome="moved",
            extra={"transition": {"flow": target_flow, "step": step}},
            refs={"fromFlow": case.flow, "fromStep": case.step, "toFlow": target_flow, "toStep": step},
            failure=failure,
        )
        if not decision.allowed:
            if any(r.get("code") == ILLEGAL_TRANSITION for r in decision.reasons):
                raise Conflict(
                    f"{case.flow}/{case.step} -> {target_flow}/{step} is not a move of the process",
                    reasons=decision.reasons,
                    extra={"policyRevision": decision.policy_revision},
                )
            raise self._refuse(decision, "moving the case")

        def move(stored: Case) -> None:
            stored.flow, stored.step = target_flow, step

        return self._apply(ctx, case_id, move)

    def set_track(self, ctx: CallContext, case_id: str, track: str, is_open: bool) -> Case:
        """Open or close the zorg or straf track."""
        case, failure = self.visible(ctx, case_id, attempted="case.track")
        decision = self._decide_and_audit(
            ctx,
            case,
            action="case.track",
            type_="case",
            outcome="opened" if is_open else "closed",
            extra={"track": {"name": track, "open": is_open}},
            refs={"track": track},
            failure=failure,
        )
        if not decision.allowed:
            raise self._refuse(decision, f"changing the {track} track")
        return self._apply(ctx, case_id, lambda stored: setattr(stored, track, is_open))

    def list_for(self, agency: str, limit: int = 100) -> list[Case]:
        """Cases an agency is involved in (for operators' tools and the demo)."""
        with self.rt.sessions() as s:
            rows = s.scalars(select(Case).order_by(Case.created_at.desc()).limit(limit)).all()
            return [c for c in rows if agency in (c.involved or [])]
