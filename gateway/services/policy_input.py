"""The policy input of every action, built in one place.

The real actions (`CaseService`, `ExchangeService`) and what-if (``POST /v1/decisions``) call the same
builder for the same action, so a what-if answer is the decision the action would get: it cannot drift.
The input never holds an identifier of a person: subjects appear as their roles only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.models import CaseRecord
from gateway.services.process import ProcessFacts
from gateway.services.trail import CallContext

PolicyInput = dict[str, Any]


def actor(ctx: CallContext) -> dict[str, str]:
    """The caller as the policy sees it."""
    p = ctx.principal
    return {"agency": p.agency, "clientId": p.client_id, "role": p.role}


def case_view(case: CaseRecord) -> dict[str, Any]:
    """The case as the policy sees it: its flow, step, tracks, the subjects' roles, who took part."""
    return {
        "flow": case.flow,
        "step": case.step,
        "tracks": {"zorg": bool(case.zorg), "straf": bool(case.straf)},
        "subjectRoles": sorted({s.role for s in case.subjects}),
        "involved": list(case.involved or []),
    }


def _on_case(action: str, ctx: CallContext, case: CaseRecord, **rest: Any) -> PolicyInput:
    return {"action": action, "actor": actor(ctx), "case": case_view(case), **rest}


def case_open(ctx: CallContext, case: CaseRecord) -> PolicyInput:
    """Opening ``case`` (not stored yet: nothing is until the policy allows it)."""
    return _on_case("case.open", ctx, case)


def case_read(ctx: CallContext, case: CaseRecord) -> PolicyInput:
    """Reading ``case``; also the visibility check in front of every route that names a case."""
    return _on_case("case.read", ctx, case)


def case_transition(ctx: CallContext, case: CaseRecord, flow: str, step: str) -> PolicyInput:
    """Moving ``case`` to ``step`` of ``flow``."""
    return _on_case("case.transition", ctx, case, transition={"flow": flow, "step": step})


def case_track(ctx: CallContext, case: CaseRecord, track: str, is_open: bool) -> PolicyInput:
    """Opening or closing the ``track`` (zorg, straf) of ``case``."""
    return _on_case("case.track", ctx, case, track={"name": track, "open": is_open})


IDENTITY_PREFIX = "bsn:"
"""``bsn:<role>``: the pseudo-field of the identities of a case's subjects in that role."""


def payload_fields(facts: ProcessFacts, names: Iterable[str], case: CaseRecord | None = None) -> list[str]:
    """The payload field names the policy sees: only those some grant or information type names, and
    ``bsn:<role>`` for each role of the case's subjects (a grant's fields decide who may identify whom).

    What the engine sees is bounded by the facts, not by the request: a field that no grant names
    reaches nobody anyway (rule 5), so leaving it out changes no decision. An identity pseudo-field
    comes from the case only, never from a payload's (or a what-if's) names.
    """
    given = {n for n in names if not n.startswith(IDENTITY_PREFIX)}
    if case is not None:
        given.update(IDENTITY_PREFIX + s.role for s in case.subjects)
    return sorted(facts.field_names().intersection(given))


def policy_origin(origin: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The origin as the policy sees it: one entry per (purpose, information type, sender).

    The policy reads only those three (rule 4), so repeats decide nothing; without them the list is
    bounded by the facts, however long a chain of onward shares made the lineage. Message ids are left
    out too: they decide nothing, and would make every shared-on input new to the decision cache.
    """
    seen = {(o["purpose"], o["informationType"], o["sender"]) for o in origin}
    return [{"purpose": p, "informationType": t, "sender": s} for p, t, s in sorted(seen)]


def share(
    ctx: CallContext,
    case: CaseRecord,
    facts: ProcessFacts,
    *,
    information_type: str,
    purpose: str,
    recipients: Sequence[str],
    field_names: Iterable[str],
    origin: Sequence[Mapping[str, str]] = (),
) -> PolicyInput:
    """Sharing ``information_type`` for ``purpose`` to ``recipients``; ``origin`` when shared on."""
    built = _on_case(
        "share",
        ctx,
        case,
        informationType=information_type,
        purpose=purpose,
        recipients=list(recipients),
        payloadFields=payload_fields(facts, field_names, case),
    )
    if origin:
        built["origin"] = policy_origin(origin)
    return built


def request(
    ctx: CallContext, case: CaseRecord, *, information_type: str, purpose: str, holder: str
) -> PolicyInput:
    """Asking ``holder`` for ``information_type`` for ``purpose``; the caller receives."""
    return _on_case("request", ctx, case, informationType=information_type, purpose=purpose, holder=holder)


def what_if(
    ctx: CallContext,
    case: CaseRecord,
    facts: ProcessFacts,
    *,
    action: str,
    information_type: str | None = None,
    purpose: str | None = None,
    recipient: str | None = None,
    holder: str | None = None,
    field_names: Iterable[str] = (),
    origin: Sequence[Mapping[str, str]] = (),
    flow: str | None = None,
    step: str | None = None,
    track: str | None = None,
    is_open: bool | None = None,
) -> PolicyInput:
    """The input the real ``action`` would decide on, from what a what-if names.

    What a what-if leaves out stays out (an absent purpose is absent, so the policy says what is
    missing, rule 8) instead of being filled in with something the real action would never send.
    """
    if action == "share":
        built = share(
            ctx,
            case,
            facts,
            information_type=information_type or "",
            purpose=purpose or "",
            recipients=[recipient] if recipient else [],
            field_names=field_names,
            origin=origin,
        )
    elif action == "request":
        built = request(
            ctx, case, information_type=information_type or "", purpose=purpose or "", holder=holder or ""
        )
    elif action == "case.transition":
        built = case_transition(ctx, case, flow or case.flow, step or "")
    elif action == "case.track":
        built = case_track(ctx, case, track or "", True if is_open is None else is_open)
    else:
        built = case_read(ctx, case)
    # Identifiers the what-if did not name are left out, as the action's own input would lack them.
    for key, given in (("informationType", information_type), ("purpose", purpose), ("holder", holder)):
        if given is None:
            built.pop(key, None)
    if action == "case.transition" and not step:
        built.pop("transition", None)
    if action == "case.track" and not track:
        built.pop("track", None)
    return built
