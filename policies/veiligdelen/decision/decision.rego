# METADATA
# title: Veilig Delen exchange and case decisions
# description: >-
#   Decides whether information may move between the agencies of a domestic-violence or
#   child-abuse case (share, request) and whether a case may change (open, read, transition,
#   track). Deny by default; every allow names its legal basis and purpose. The facts (who takes
#   part in which step, legal bases, purposes, field lists) live in data.veiligdelen.facts.
package veiligdelen.decision

# METADATA
# title: Decision
# description: >-
#   The one entrypoint the gateway queries (veiligdelen/decision/result). Always defined, so an
#   undefined answer from the engine means an engine failure, never a decision.
# entrypoint: true
result := {
	"allowed": allowed,
	"reasons": reasons,
	"legalBasis": legal_basis,
	"obligations": obligations,
	"recipients": recipients,
}

_facts := data.veiligdelen.facts

# ---------------------------------------------------------------------------------------------
# Outcome
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Allowed
# description: >-
#   Deny by default. An exchange is allowed when at least one receiver is; a case action when no
#   rule denies it and its positive condition holds.
default allowed := false

allowed if {
	_exchange
	some r in _receivers
	_receiver_ok(r)
}

allowed if {
	_case_action
	count(_deny) == 0
	_case_action_ok
}

# METADATA
# title: Reasons
# description: Every decision carries at least one reason, most fundamental first.
default reasons := []

reasons := _render_all(_top_items) if count(_top_items) > 0

reasons := _render_all({_item("denied_by_default", "denied_by_default", [])}) if count(_top_items) == 0

# METADATA
# title: Legal basis
# description: The legal bases of everything allowed, joined; null when nothing is allowed.
default legal_basis := null

legal_basis := concat(" | ", _sorted(_allowed_bases)) if {
	allowed
	count(_allowed_bases) > 0
}

# METADATA
# title: Obligations
# description: >-
#   What the gateway must do with each allowed delivery: strip the payload to the allowed fields
#   and bind the data to its purpose (sharing it on is a new decision).
default obligations := []

obligations := [o |
	some r in _sorted(_receivers_ok)
	some o in _obligations_for(r)
]

# METADATA
# title: Recipients
# description: >-
#   Per receiving agency, decided on its own: for share every requested recipient, for request
#   the actor (the agency receiving the data).
default recipients := {}

recipients := {r: _receiver_result(r) | some r in _receivers} if _exchange

# ---------------------------------------------------------------------------------------------
# Input views
# ---------------------------------------------------------------------------------------------

_exchange if input.action in {"share", "request"}

_case_action if input.action in {"case.open", "case.read", "case.transition", "case.track"}

_actor := input.actor.agency

_flow := input.case.flow

_step := input.case.step

_step_facts := _facts.flows[_flow].steps[_step]

_step_name := sprintf("%v/%v", [_flow, _step])

_known_agency(a) if _facts.agencies[a]

_known_type if _facts.informationTypes[input.informationType]

_known_purpose if _facts.purposes[input.purpose]

# Fields the action reads: only they are checked for presence and known identifiers.
_uses(field) if _facts.inputSchema[input.action][field]

# Samenloop van zorg en straf: both tracks open (baseline rule 3).
_samenloop if {
	input.case.tracks.zorg == true
	input.case.tracks.straf == true
}

_has_minor if _facts.minorRequired.subjectRole in input.case.subjectRoles

# ---------------------------------------------------------------------------------------------
# Participation in the current step (baseline rule 2)
# ---------------------------------------------------------------------------------------------

# Core participants act on their own; conditional participants count as core under samenloop.
_core contains a if some a in _step_facts.core

_core contains a if {
	_step_facts.coreIncludesInvolved
	some a in input.case.involved
}

_core contains a if {
	_samenloop
	some a in _step_facts.conditional
}

# Consulted parties may be asked and answer the asker; they do not share on their own.
_consulted contains a if {
	some a in _step_facts.consulted
	not a in _core
}

# Conditional participants while samenloop does not hold.
_awaiting_samenloop contains a if {
	not _samenloop
	some a in _step_facts.conditional
	not a in _core
}

_outside_step(a) if {
	_step_facts
	_known_agency(a)
	not a in _core
	not a in _consulted
	not a in _awaiting_samenloop
}

# ---------------------------------------------------------------------------------------------
# Deny rules that concern the whole decision
# ---------------------------------------------------------------------------------------------

_item(code, template, args) := {"code": code, "template": template, "args": args}

# Rule 8: a required field that is absent, null or of the wrong kind denies.
_missing contains path if {
	some path, kind in _facts.inputSchema[input.action]
	not _acceptable(object.get(input, split(path, "."), null), kind)
}

_acceptable(v, kind) if _is_kind(v, kind)

_acceptable(null, kind) if endswith(kind, "?")

_acceptable(v, kind) if {
	endswith(kind, "?")
	_is_kind(v, trim_suffix(kind, "?"))
}

_is_kind(v, "string") if {
	is_string(v)
	v != ""
}

_is_kind(v, "boolean") if is_boolean(v)

_is_kind(v, "stringList") if _is_string_list(v)

_is_kind(v, "nonEmptyStringList") if {
	_is_string_list(v)
	count(v) > 0
}

_is_string_list(v) if {
	is_array(v)
	every x in v {
		is_string(x)
	}
}

_deny contains _item("missing_input", "missing_input", ["action"]) if not is_string(input.action)

_deny contains _item("missing_input", "missing_input", [_join(_missing)]) if count(_missing) > 0

_deny contains _item("unknown_action", "unknown_action", [input.action]) if {
	is_string(input.action)
	not _facts.inputSchema[input.action]
}

_deny contains _item("unknown_agency", "unknown_agency", [_actor]) if {
	_uses("actor.agency")
	is_string(_actor)
	not _known_agency(_actor)
}

_deny contains _item("unknown_agency", "unknown_agency", [input.holder]) if {
	_uses("holder")
	is_string(input.holder)
	not _known_agency(input.holder)
}

_deny contains _item("unknown_step", "unknown_step", [_flow, _step]) if {
	_uses("case.step")
	is_string(_flow)
	is_string(_step)
	not _step_facts
}

_deny contains _item("unknown_information_type", "unknown_information_type", [input.informationType]) if {
	_uses("informationType")
	is_string(input.informationType)
	not _known_type
}

_deny contains _item("unknown_purpose", "unknown_purpose", [input.purpose]) if {
	_uses("purpose")
	is_string(input.purpose)
	not _known_purpose
}

# ---------------------------------------------------------------------------------------------
# Exchanges: share (actor -> recipients) and request (holder -> actor)
# ---------------------------------------------------------------------------------------------

# The agency that provides the data, and the agencies that receive it.
_sender := _actor if input.action == "share"

_sender := input.holder if input.action == "request"

_receivers contains r if {
	input.action == "share"
	some r in input.recipients
	is_string(r)
}

_receivers contains _actor if {
	input.action == "request"
	is_string(_actor)
}

# The row of data.json that would allow the provision: grants[type][receiver][sender].
_grant(r) := _facts.grants[input.informationType][r][_sender]

_grant_in_step(g) if not g.steps

_grant_in_step(g) if _step_name in g.steps

# The actor of an exchange must act on its own in this step.
_deny contains _item("not_a_participant", "not_a_participant", [_actor, _flow, _step]) if {
	_exchange
	_outside_step(_actor)
}

_deny contains _item("consulted_party_cannot_share", "consulted_party_cannot_share", [_actor, _flow, _step]) if {
	_exchange
	_actor in _consulted
}

_deny contains _item("samenloop_required", "samenloop_participant", [_actor, _flow, _step]) if {
	_exchange
	_actor in _awaiting_samenloop
}

# The holder of a request must take part in the step, as core or consulted party.
_deny contains _item("holder_not_a_participant", "holder_not_a_participant", [input.holder, _flow, _step]) if {
	input.action == "request"
	_outside_step(input.holder)
}

_deny contains _item("samenloop_required", "samenloop_participant", [input.holder, _flow, _step]) if {
	input.action == "request"
	input.holder in _awaiting_samenloop
}

# Deny rules per receiver: each carries the receiver it concerns.
_receiver_deny contains object.union(_item("unknown_agency", "unknown_agency", [r]), {"recipient": r}) if {
	some r in _receivers
	input.action == "share"
	not _known_agency(r)
}

_receiver_deny contains object.union(
	_item("recipient_not_a_participant", "recipient_not_a_participant", [r, _flow, _step]),
	{"recipient": r},
) if {
	some r in _receivers
	input.action == "share"
	_outside_step(r)
}

_receiver_deny contains object.union(
	_item("samenloop_required", "samenloop_participant", [r, _flow, _step]),
	{"recipient": r},
) if {
	some r in _receivers
	input.action == "share"
	r in _awaiting_samenloop
}

# Rule 1: no row, no legal basis.
_receiver_deny contains object.union(
	_item("no_legal_basis", "no_legal_basis", [_sender, input.informationType, r]),
	{"recipient": r},
) if {
	some r in _receivers
	_known_agency(r)
	_known_agency(_sender)
	_known_type
	not _grant(r)
}

_receiver_deny contains object.union(
	_item("no_legal_basis", "no_legal_basis_step", [_sender, input.informationType, r, _flow, _step]),
	{"recipient": r},
) if {
	some r in _receivers
	g := _grant(r)
	not _grant_in_step(g)
}

# Rule 4: purpose binding.
_receiver_deny contains object.union(
	_item("purpose_not_allowed", "purpose_not_allowed", [
		input.purpose, input.informationType, _sender, r,
		_join(g.purposes),
	]),
	{"recipient": r},
) if {
	some r in _receivers
	_known_purpose
	g := _grant(r)
	not input.purpose in g.purposes
}

# Rule 3: samenloop for the safety assessment, conditions and plan.
_receiver_deny contains object.union(
	_item("samenloop_required", "samenloop_required", [input.informationType, r]),
	{"recipient": r},
) if {
	some r in _receivers
	r in _facts.samenloop.recipients
	input.informationType in _facts.samenloop.informationTypes
	not _samenloop
}

# Rule 6: the RvdK receives only for cases with a minor.
_receiver_deny contains object.union(
	_item("no_minor_in_case", "no_minor_in_case", [r, _facts.minorRequired.subjectRole]),
	{"recipient": r},
) if {
	some r in _receivers
	r in _facts.minorRequired.recipients
	not _has_minor
}

_receiver_denied(r) if {
	some d in _receiver_deny
	d.recipient == r
}

# Positive conditions, on top of "no deny rule fired": fail closed if a deny rule has a gap.
_reachable(r) if {
	input.action == "share"
	_actor in _core
	r in _core
}

_reachable(r) if {
	input.action == "share"
	_actor in _core
	r in _consulted
}

_reachable(r) if {
	input.action == "request"
	r == _actor
	_actor in _core
	_sender in _core
}

_reachable(r) if {
	input.action == "request"
	r == _actor
	_actor in _core
	_sender in _consulted
}

_receiver_ok(r) if {
	count(_deny) == 0
	not _receiver_denied(r)
	_reachable(r)
	g := _grant(r)
	_grant_in_step(g)
	input.purpose in g.purposes
	not _needs_samenloop(r)
	not _needs_minor(r)
}

_needs_samenloop(r) if {
	r in _facts.samenloop.recipients
	input.informationType in _facts.samenloop.informationTypes
	not _samenloop
}

_needs_minor(r) if {
	r in _facts.minorRequired.recipients
	not _has_minor
}

_receivers_ok contains r if {
	some r in _receivers
	_receiver_ok(r)
}

_allowed_bases contains _grant(r).legalBasis if some r in _receivers_ok

_allowed_bases contains _facts.agencies[_actor].legalBasis if {
	_case_action
	allowed
}

# Rule 5: minimisation. Share: the payload fields the row lists; request: the row's fields.
_fields(r) := _sorted({f | some f in input.payloadFields; f in _grant(r).fields}) if input.action == "share"

_fields(r) := sort(_grant(r).fields) if input.action == "request"

_allowed_item(r) := object.union(
	_item("allowed", _allowed_template(_grant(r)), [
		r, input.informationType, _sender, input.purpose,
		_grant(r).legalBasis,
	]),
	{"recipient": r},
)

_allowed_template(g) := "allowed_exchange" if g.verified == true

_allowed_template(g) := "allowed_exchange_unverified" if not g.verified == true

_receiver_result(r) := {
	"allowed": true,
	"reasons": _render_all({_allowed_item(r)}),
	"legalBasis": _grant(r).legalBasis,
	"purpose": input.purpose,
	"fields": _fields(r),
} if {
	_receiver_ok(r)
}

_receiver_result(r) := {
	"allowed": false,
	"reasons": _render_all(_denial_items(r)),
	"legalBasis": null,
	"purpose": object.get(input, "purpose", null),
	"fields": [],
} if {
	not _receiver_ok(r)
}

_denial_items(r) := items if {
	items := _deny | {d | some d in _receiver_deny; d.recipient == r}
	count(items) > 0
}

_denial_items(r) := {_item("denied_by_default", "denied_by_default", [])} if {
	count(_deny | {d | some d in _receiver_deny; d.recipient == r}) == 0
}

_obligations_for(r) := [
	{
		"code": "strip_fields",
		"recipient": r,
		"fields": _fields(r),
		"removed": _sorted({f | some f in input.payloadFields; not f in _fields(r)}),
	},
	_usage_restriction(r),
] if input.action == "share"

_obligations_for(r) := [
	{"code": "strip_fields", "recipient": r, "fields": _fields(r)},
	_usage_restriction(r),
] if input.action == "request"

_usage_restriction(r) := {
	"code": "usage_restriction",
	"recipient": r,
	"informationType": input.informationType,
	"purpose": input.purpose,
	"onwardSharing": "new_decision_required",
}

# ---------------------------------------------------------------------------------------------
# Case changes (baseline rule 7) and case reads
# ---------------------------------------------------------------------------------------------

# case.open: by the agencies that open cases, in a step where the opener is a core participant.
_deny contains _item("not_authorised_for_action", "not_authorised_open", [_actor, _join(_facts.caseOpeners)]) if {
	input.action == "case.open"
	_known_agency(_actor)
	not _actor in _facts.caseOpeners
}

_deny contains _item("not_a_participant", "not_a_participant", [_actor, _flow, _step]) if {
	input.action == "case.open"
	_known_agency(_actor)
	_step_facts
	not _actor in _step_facts.core
}

# case.read: any kind of participant of the current step, or an agency involved in the case.
_takes_part(a) if a in _step_facts.core

_takes_part(a) if a in _step_facts.consulted

_takes_part(a) if a in _step_facts.conditional

_takes_part(a) if a in input.case.involved

_deny contains _item("not_a_participant", "not_a_participant", [_actor, _flow, _step]) if {
	input.action == "case.read"
	_known_agency(_actor)
	_step_facts
	not _takes_part(_actor)
}

_deny contains _item("no_minor_in_case", "no_minor_in_case", [_actor, _facts.minorRequired.subjectRole]) if {
	input.action == "case.read"
	_actor in _facts.minorRequired.recipients
	not _has_minor
}

# case.transition: the movers of the current flow, along a legal move of the process.
_target := {
	"flow": object.get(input.transition, "flow", _flow),
	"step": input.transition.step,
}

_deny contains _item(
	"not_authorised_for_action", "not_authorised_transition",
	[_actor, _flow, _join(_facts.flows[_flow].movers)],
) if {
	input.action == "case.transition"
	_known_agency(_actor)
	not _actor in _facts.flows[_flow].movers
}

_deny contains _item("unknown_step", "unknown_step", [_target.flow, _target.step]) if {
	input.action == "case.transition"
	is_string(_target.flow)
	not _facts.flows[_target.flow].steps[_target.step]
}

_deny contains _item("illegal_transition", "illegal_transition", [_flow, _step, _target.flow, _target.step]) if {
	input.action == "case.transition"
	_step_facts
	_facts.flows[_target.flow].steps[_target.step]
	not _legal_move
}

# Forward to a later step of the same flow.
_legal_move if {
	_target.flow == _flow
	some i, s in _facts.flows[_flow].order
	s == _step
	some j, t in _facts.flows[_flow].order
	t == _target.step
	j > i
}

# The cross-flow moves of data.json (escalation, hand-over); a "from" without step is any step.
_legal_move if {
	some m in _facts.transitions
	m.from.flow == _flow
	object.get(m.from, "step", _step) == _step
	m.to.flow == _target.flow
	m.to.step == _target.step
}

# case.track: each track has its owners.
_deny contains _item("unknown_track", "unknown_track", [input.track.name]) if {
	input.action == "case.track"
	is_string(input.track.name)
	not _facts.tracks[input.track.name]
}

_deny contains _item(
	"not_authorised_for_action", "not_authorised_track",
	[_actor, input.track.name, _join(_facts.tracks[input.track.name].owners)],
) if {
	input.action == "case.track"
	_known_agency(_actor)
	not _actor in _facts.tracks[input.track.name].owners
}

_case_action_ok if {
	input.action == "case.open"
	_actor in _facts.caseOpeners
	_actor in _step_facts.core
}

_case_action_ok if {
	input.action == "case.read"
	_takes_part(_actor)
	not _needs_minor(_actor)
}

_case_action_ok if {
	input.action == "case.transition"
	_actor in _facts.flows[_flow].movers
	_legal_move
}

_case_action_ok if {
	input.action == "case.track"
	_actor in _facts.tracks[input.track.name].owners
}

_case_allowed_item := _item("allowed", "allowed_case_open", [_actor, _flow, _step, _task_basis]) if {
	input.action == "case.open"
}

_case_allowed_item := _item("allowed", "allowed_case_read", [_actor, _task_basis]) if {
	input.action == "case.read"
}

_case_allowed_item := _item(
	"allowed", "allowed_case_transition",
	[_actor, _flow, _step, _target.flow, _target.step, _task_basis],
) if {
	input.action == "case.transition"
}

_case_allowed_item := _item("allowed", "allowed_case_track", [_actor, input.track.name, _task_basis]) if {
	input.action == "case.track"
}

_task_basis := _facts.agencies[_actor].legalBasis

# ---------------------------------------------------------------------------------------------
# Reasons: what the top level reports
# ---------------------------------------------------------------------------------------------

_top_items := _deny if count(_deny) > 0

_top_items := _receiver_deny | {_allowed_item(r) | some r in _receivers_ok} if {
	count(_deny) == 0
	_exchange
}

_top_items := {_case_allowed_item} if {
	count(_deny) == 0
	_case_action
	allowed
}

_top_items := set() if {
	count(_deny) == 0
	_case_action
	not allowed
}

# Render with the message templates of data.json, then order by data.json's reasonOrder.
_render(i) := {
	"code": i.code,
	"message": sprintf(_facts.messages[i.template].message, i.args),
	"messageNl": sprintf(_facts.messages[i.template].messageNl, i.args),
}

_render_all(items) := _ordered({_render(i) | some i in items})

_ordered(rs) := [r |
	some code in _code_order(rs)
	some m in _sorted({x.message | some x in rs; x.code == code})
	some r in rs
	r.code == code
	r.message == m
]

_code_order(rs) := array.concat(known, others) if {
	codes := {r.code | some r in rs}
	known := [c | some c in _facts.reasonOrder; c in codes]
	others := _sorted({c | some c in codes; not c in _facts.reasonOrder})
}

# sort() of a set returns a set in regopy 1.5.2 (an array in OPA): sort an array so both agree.
_sorted(s) := sort([x | some x in s])

# A sorted, comma-separated list for messages. trim_space works around regopy 1.5.2, whose sprintf
# quotes strings computed by concat; it changes nothing in OPA.
_join(xs) := trim_space(concat(", ", _sorted(xs)))
