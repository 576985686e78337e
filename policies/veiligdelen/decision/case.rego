# METADATA
# title: Case changes and case reads
# description: >-
#   case.open, case.read, case.transition, case.track (rule 7): allowed when nothing refuses it and
#   the action's condition holds; an allow names the actor's task basis (agencies[actor].legalBasis).
package veiligdelen.decision

# METADATA
# title: Case decision
# description: >-
#   case.open, case.read, case.transition, case.track (rule 7): allowed when nothing refuses it and
#   the action's condition holds; an allow names the actor's task basis (agencies[actor].legalBasis).
_case_decision(ctx, denials) := {
	"allowed": true,
	"reasons": {_case_allowed_reason(ctx, basis)},
	"legalBasis": basis,
	"obligations": [],
	"recipients": {},
} if {
	agencies := data.veiligdelen.facts.agencies
	count(denials) == 0
	_case_ok(ctx)
	basis := agencies[ctx.actor].legalBasis
} else := {
	"allowed": false,
	"reasons": _case_reasons(denials),
	"legalBasis": null,
	"obligations": [],
	"recipients": {},
}

_case_reasons(denials) := denials if {
	count(denials) > 0
} else := _denied_by_default

_case_denials(ctx) := _open_denials(ctx) if {
	ctx.action == "case.open"
} else := _read_denials(ctx) if {
	ctx.action == "case.read"
} else := _transition_denials(ctx) if {
	ctx.action == "case.transition"
} else := _track_denials(ctx) if {
	ctx.action == "case.track"
} else := set()

# case.open: by the agencies that open cases, in a step where the opener is a core participant.
_open_denials(ctx) := not_opener | not_core if {
	facts := data.veiligdelen.facts
	agencies := facts.agencies
	not_opener := {_reason("not_authorised_open", [ctx.actor, _list_arg(facts.caseOpeners)]) |
		agencies[ctx.actor]
		not ctx.actor in facts.caseOpeners
	}
	not_core := {_reason("not_a_participant", [ctx.actor, ctx.flow, ctx.step]) |
		agencies[ctx.actor]
		ctx.stepKnown
		not ctx.actor in ctx.parties.core
	}
}

# case.read: any kind of participant of the current step, or an agency involved in the case.
_read_denials(ctx) := outside | minor if {
	facts := data.veiligdelen.facts
	agencies := facts.agencies
	outside := {_reason("not_a_participant", [ctx.actor, ctx.flow, ctx.step]) |
		agencies[ctx.actor]
		ctx.stepKnown
		not _takes_part(ctx, ctx.actor)
	}
	minor := {_reason("no_minor_in_case", [ctx.actor, facts.minorRequired.subjectRole]) | _minor_blocks(ctx)}
}

# Rule 6 for reading: the RvdK reads only cases with a minor.
_minor_blocks(ctx) if {
	facts := data.veiligdelen.facts
	not ctx.hasMinor
	ctx.actor in facts.minorRequired.recipients
}

_takes_part(ctx, a) if a in ctx.parties.participants

_takes_part(ctx, a) if a in ctx.parties.involved

# case.transition: the movers of the current flow, along a legal move of the process.
_transition_denials(ctx) := (not_mover | unknown) | illegal if {
	flows := data.veiligdelen.facts.flows
	agencies := data.veiligdelen.facts.agencies
	target := ctx.change
	movers := object.get(flows, [ctx.flow, "movers"], [])
	not_mover := {_reason("not_authorised_transition", [ctx.actor, ctx.flow, _list_arg(movers)]) |
		agencies[ctx.actor]
		not ctx.actor in movers
	}
	target_known := _step_exists(target.flow, target.step)
	unknown := {_reason("unknown_step", [target.flow, target.step]) |
		is_string(target.flow)
		is_string(target.step)
		not target_known
	}
	illegal := {_reason("illegal_transition", [ctx.flow, ctx.step, target.flow, target.step]) |
		ctx.stepKnown
		target_known
		not _legal_move(ctx.flow, ctx.step, target.flow, target.step)
	}
}

_step_exists(flow, step) if {
	flows := data.veiligdelen.facts.flows
	flows[flow].steps[step]
} else := false

# Forward to a later step of the same flow.
_legal_move(flow, step, target_flow, target_step) if {
	flows := data.veiligdelen.facts.flows
	target_flow == flow
	order := flows[flow].order
	some i, s in order
	s == step
	some j, t in order
	t == target_step
	j > i
}

# The cross-flow moves of data.json (escalation, hand-over); a "from" without step is any step.
_legal_move(flow, step, target_flow, target_step) if {
	facts := data.veiligdelen.facts
	some m in facts.transitions
	m.from.flow == flow
	object.get(m.from, "step", step) == step
	m.to.flow == target_flow
	m.to.step == target_step
}

# case.track: each track has its owners.
_track_denials(ctx) := unknown | not_owner if {
	tracks := data.veiligdelen.facts.tracks
	agencies := data.veiligdelen.facts.agencies
	name := ctx.change.track
	unknown := {_reason("unknown_track", [name]) |
		is_string(name)
		not tracks[name]
	}
	not_owner := {_reason("not_authorised_track", [ctx.actor, name, _list_arg(owners)]) |
		agencies[ctx.actor]
		owners := tracks[name].owners
		not ctx.actor in owners
	}
}

_case_ok(ctx) if {
	facts := data.veiligdelen.facts
	ctx.action == "case.open"
	ctx.actor in facts.caseOpeners
	ctx.actor in ctx.parties.core
}

_case_ok(ctx) if {
	ctx.action == "case.read"
	_takes_part(ctx, ctx.actor)
	not _minor_blocks(ctx)
}

_case_ok(ctx) if {
	flows := data.veiligdelen.facts.flows
	ctx.action == "case.transition"
	ctx.actor in flows[ctx.flow].movers
	_legal_move(ctx.flow, ctx.step, ctx.change.flow, ctx.change.step)
}

_case_ok(ctx) if {
	tracks := data.veiligdelen.facts.tracks
	ctx.action == "case.track"
	ctx.actor in tracks[ctx.change.track].owners
}

_case_allowed_reason(ctx, basis) := _reason("allowed_case_open", [ctx.actor, ctx.flow, ctx.step, basis]) if {
	ctx.action == "case.open"
}

_case_allowed_reason(ctx, basis) := _reason("allowed_case_read", [ctx.actor, basis]) if {
	ctx.action == "case.read"
}

_case_allowed_reason(ctx, basis) := _reason("allowed_case_transition", args) if {
	ctx.action == "case.transition"
	args := [ctx.actor, ctx.flow, ctx.step, ctx.change.flow, ctx.change.step, basis]
}

_case_allowed_reason(ctx, basis) := _reason("allowed_case_track", [ctx.actor, ctx.change.track, basis]) if {
	ctx.action == "case.track"
}

