# METADATA
# title: Veilig Delen exchange and case decisions
# description: >-
#   Decides whether information may move between the agencies of a domestic-violence or
#   child-abuse case (share, request) and whether a case may change (open, read, transition,
#   track). Deny by default; every allow names its legal basis and purpose. The facts (who takes
#   part in which step, which purposes a step serves, legal bases, purposes, field lists) live in
#   data.veiligdelen.facts.
#
#   The decision is a function of its input, decide(inp), computed as a pipeline of functions that
#   each run once. regopy 1.5.2 properties shape this (docs/policies.md): `with` recompiles every
#   rule a tested rule depends on, once per reference (exponential in shared rules), so tests call
#   decide({...}) with a literal input; calls are not cached, so each value is computed once; the
#   input and data.json are copied when passed to a function or builtin, so the input is read once
#   into a small context and rows are read by path, never passed around; and indexing data.x by a
#   variable can cost far more than indexing a local bound to data.x, so functions that look data
#   up bind `facts := data.veiligdelen.facts` first and index that local.
package veiligdelen.decision

# METADATA
# title: Decision
# description: >-
#   The entrypoint the gateway queries (veiligdelen/decision/result): decide(input). Defined for
#   every object input, so an undefined answer means an engine failure, never a decision.
# entrypoint: true
result := decide(input)

# METADATA
# title: Decide
# description: >-
#   The whole decision for one input: {allowed, reasons, legalBasis, obligations, recipients}.
decide(inp) := decision if {
	ctx := _context(inp)
	decision := _decision(ctx, _denials(ctx))
}

_decision(ctx, denials) := _exchange_decision(ctx, denials) if {
	ctx.exchange
} else := _case_decision(ctx, denials)

# ---------------------------------------------------------------------------------------------
# Context: everything later steps read, computed once from the input
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Context
# description: >-
#   What every later step reads, computed once: the identifiers of the input (null when absent),
#   the fields it lacks (rule 8), the step's participants (core, consulted, awaiting samenloop)
#   and purposes, the sender and receivers of an exchange, and where shared data came from.
_context(inp) := ctx if {
	facts := data.veiligdelen.facts
	is_object(inp)
	action := object.get(inp, "action", null)
	actor := object.get(inp, ["actor", "agency"], null)
	flow := object.get(inp, ["case", "flow"], null)
	step := object.get(inp, ["case", "step"], null)
	step_facts := _step_facts(flow, step)

	# Samenloop van zorg en straf: both tracks open (rule 3).
	zorg := object.get(inp, ["case", "tracks", "zorg"], false)
	straf := object.get(inp, ["case", "tracks", "straf"], false)
	samenloop := {zorg, straf} == {true}

	# Core participants act on their own; conditional ones count as core under samenloop; in a
	# step marked coreIncludesInvolved (the hand-over) every agency involved in the case does.
	involved := _list(object.get(inp, ["case", "involved"], []))
	conditional := object.get(step_facts, "conditional", [])
	static := {a | some a in object.get(step_facts, "core", [])}
	by_involvement := {a | object.get(step_facts, "coreIncludesInvolved", false) == true; some a in involved}
	by_samenloop := {a | samenloop; some a in conditional}
	core := (static | by_involvement) | by_samenloop

	# Consulted parties may be asked and answer the asker; they do not share on their own.
	consulted := {a | some a in object.get(step_facts, "consulted", []); not a in core}
	awaiting := {a | not samenloop; some a in conditional; not a in core}

	holder := object.get(inp, "holder", null)
	origins := object.get(inp, "origin", [])
	ctx := {
		"action": action,
		"actor": actor,
		"flow": flow,
		"step": step,
		"stepName": _step_name(flow, step),
		"stepKnown": count(step_facts) > 0,
		"stepPurposes": object.get(step_facts, "purposes", []),
		"missing": _missing(inp, action, origins),
		"samenloop": samenloop,
		"hasMinor": facts.minorRequired.subjectRole in _list(object.get(inp, ["case", "subjectRoles"], [])),
		"core": core,
		"consulted": consulted,
		"awaiting": awaiting,
		"participants": (core | consulted) | awaiting,
		"involved": involved,
		"exchange": action in {"share", "request"},
		"sender": _sender(action, actor, holder),
		"holder": holder,
		"receivers": _receivers(action, actor, _list(object.get(inp, "recipients", []))),
		"type": object.get(inp, "informationType", null),
		"purpose": object.get(inp, "purpose", null),
		"payload": _list(object.get(inp, "payloadFields", [])),
		"origins": _valid_origins(origins),
		"target": {
			"flow": object.get(inp, ["transition", "flow"], flow),
			"step": object.get(inp, ["transition", "step"], null),
		},
		"track": object.get(inp, ["track", "name"], null),
	}
}

_step_facts(flow, step) := x if {
	facts := data.veiligdelen.facts
	x := facts.flows[flow].steps[step]
} else := {}

_schema(action) := x if {
	facts := data.veiligdelen.facts
	x := facts.inputSchema[action]
} else := {}

_compatible(purpose) := x if {
	facts := data.veiligdelen.facts
	x := facts.compatiblePurposes[purpose].purposes
} else := []

_step_name(flow, step) := concat("/", [flow, step]) if {
	is_string(flow)
	is_string(step)
} else := ""

# The agency that provides the data: the actor of a share, the holder of a request.
_sender("share", actor, _) := actor

_sender("request", _, holder) := holder

_sender(action, _, _) := null if not action in {"share", "request"}

# The agencies that receive data: the recipients of a share, the actor of a request.
_receivers("share", _, recipients) := {r | some r in recipients; is_string(r)}

_receivers("request", actor, _) := {actor | is_string(actor)}

_receivers(action, _, _) := set() if not action in {"share", "request"}

_list(v) := v if {
	is_array(v)
} else := []

# Rule 8: a field the action needs that is absent, null, empty or of the wrong type denies.
# inputSchema maps each path to its type name: string, boolean or array. The one place that
# reads the whole input besides _context.
_missing(inp, action, origins) := ((fields | no_recipients) | bad_flow) | bad_origin if {
	schema := _schema(action)
	fields := {path |
		some path in object.keys(schema)
		not _present(object.get(inp, split(path, "."), null), schema[path])
	}
	no_recipients := {"recipients" | action == "share"; count(_list(object.get(inp, "recipients", []))) == 0}
	bad_flow := {"transition.flow" |
		action == "case.transition"
		not is_string(object.get(inp, ["transition", "flow"], ""))
	}

	# origin is optional: where shared data came from (rule 4); when given, every entry is whole.
	bad_origin := {"origin" | action == "share"; not _origins_ok(origins)}
}

_present(value, type) if {
	type_name(value) == type
	value != ""
}

# Only well-formed origins reach the rules: a malformed one is missing_input, and OPA raises
# where regopy is undefined (concat over a non-string), so nothing may read it.
_valid_origins(origins) := origins if {
	_origins_ok(origins)
} else := []

_origins_ok(origins) if {
	is_array(origins)
	every o in origins {
		_origin_ok(o)
	}
}

_origin_ok(o) if {
	is_string(o.purpose)
	is_string(o.informationType)
	is_string(o.sender)
}

# ---------------------------------------------------------------------------------------------
# Denials of the whole decision (rules 2, 4, 7, 8 and unknown identifiers)
# ---------------------------------------------------------------------------------------------

# A reason before rendering: a message template of data.json and its arguments.
_item(template, args) := {"template": template, "args": args}

# METADATA
# title: Denials
# description: >-
#   What refuses the decision as a whole: missing or unknown input (rule 8), an actor or holder
#   outside the step (rule 2), a purpose the step does not serve or that the shared data's origin
#   does not allow (rule 4), a case change the actor may not make or the process does not allow
#   (rule 7). Items are {template, args}; rendering happens last.
_denials(ctx) := (_input_denials(ctx) | _exchange_denials(ctx)) | _case_denials(ctx)

_input_denials(ctx) := ((((no_action | missing) | unknown_action) | unknown_agency) | unknown_step) | unknown_ids if {
	facts := data.veiligdelen.facts
	no_action := {_item("missing_input", [_join(["action"])]) | not is_string(ctx.action)}
	missing := {_item("missing_input", [_join(ctx.missing)]) | count(ctx.missing) > 0}
	unknown_action := {_item("unknown_action", [ctx.action]) |
		is_string(ctx.action)
		not facts.inputSchema[ctx.action]
	}
	acting := {ctx.actor} | {ctx.holder | ctx.action == "request"}
	unknown_agency := {_item("unknown_agency", [a]) |
		some a in acting
		is_string(a)
		not facts.agencies[a]
	}
	unknown_step := {_item("unknown_step", [ctx.flow, ctx.step]) |
		facts.inputSchema[ctx.action]["case.step"]
		is_string(ctx.flow)
		is_string(ctx.step)
		not ctx.stepKnown
	}
	unknown_ids := _unknown_ids(ctx)
}

_unknown_ids(ctx) := types | purposes if {
	facts := data.veiligdelen.facts
	types := {_item("unknown_information_type", [ctx.type]) |
		facts.inputSchema[ctx.action].informationType
		is_string(ctx.type)
		not facts.informationTypes[ctx.type]
	}
	purposes := {_item("unknown_purpose", [ctx.purpose]) |
		facts.inputSchema[ctx.action].purpose
		is_string(ctx.purpose)
		not facts.purposes[ctx.purpose]
	}
}

# Rules 2 and 4 for the exchange as a whole: the actor acts on its own in this step, the holder of
# a request takes part in it (core or consulted), the step serves the purpose, and data shared on
# from received messages (origin) was received for a compatible purpose.
_exchange_denials(ctx) := (((((not_participant | consulted) | awaiting) | holder) | step_purpose) | origin) if {
	facts := data.veiligdelen.facts
	ctx.exchange
	not_participant := {_item("not_a_participant", [ctx.actor, ctx.flow, ctx.step]) | _outside_step(ctx, ctx.actor)}
	consulted := {_item("consulted_party_cannot_share", [ctx.actor, ctx.flow, ctx.step]) | ctx.actor in ctx.consulted}
	awaiting := {_item("samenloop_participant", [a, ctx.flow, ctx.step]) |
		some a in {ctx.actor, ctx.sender}
		a in ctx.awaiting
	}
	holder := {_item("holder_not_a_participant", [ctx.sender, ctx.flow, ctx.step]) |
		ctx.action == "request"
		_outside_step(ctx, ctx.sender)
	}
	step_purpose := {_item("purpose_not_in_step", [ctx.flow, ctx.step, ctx.purpose, _join(ctx.stepPurposes)]) |
		ctx.stepKnown
		facts.purposes[ctx.purpose]
		not ctx.purpose in ctx.stepPurposes
	}
	origin := {_item("purpose_incompatible_with_origin", args) |
		facts.purposes[ctx.purpose]
		some o in ctx.origins
		compatible := _compatible(o.purpose)
		o.purpose != ctx.purpose
		not ctx.purpose in compatible
		args := [ctx.purpose, o.purpose, ctx.actor, o.informationType, o.sender, _join(array.concat([o.purpose], compatible))]
	}
} else := set()

_outside_step(ctx, a) if {
	facts := data.veiligdelen.facts
	ctx.stepKnown
	facts.agencies[a]
	not a in ctx.participants
}

# ---------------------------------------------------------------------------------------------
# Exchanges: share (actor -> recipients) and request (holder -> actor)
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Exchange decision
# description: >-
#   Share and request: each receiver is decided on its own by the allow rule below (rules 1-6),
#   gets its fields (rule 5) and, when allowed, its obligations (rules 4 and 5). A row is
#   data.veiligdelen.facts.grants[type][receiver][sender]; it is read by path, field by field.
_exchange_decision(ctx, denials) := {
	"allowed": count(ok) > 0,
	"reasons": _exchange_reasons(denials, results),
	"legalBasis": _joined_or_null({allowed_results[r].legalBasis | some r in ok}),
	"obligations": obligations,
	"recipients": results,
} if {
	facts := data.veiligdelen.facts
	type := ctx.type
	sender := ctx.sender

	grants := facts.grants
	granted := {r | some r in ctx.receivers; is_string(grants[type][r][sender].legalBasis)}
	in_step := {r | some r in granted; not grants[type][r][sender].steps} | {r |
		some r in granted
		ctx.stepName in grants[type][r][sender].steps
	}

	# Rule 3: samenloop for the safety assessment, conditions and plan.
	needs_samenloop := {r |
		not ctx.samenloop
		type in facts.samenloop.informationTypes
		some r in ctx.receivers
		r in facts.samenloop.recipients
	}

	# Rule 6: the RvdK receives only for cases with a minor.
	needs_minor := {r | not ctx.hasMinor; some r in ctx.receivers; r in facts.minorRequired.recipients}

	# The allow rule: every condition is stated positively, so whatever no rule allows stays denied.
	ok := {r |
		count(denials) == 0
		some r in _reachable(ctx)
		r in in_step
		ctx.purpose in grants[type][r][sender].purposes
		not r in needs_samenloop
		not r in needs_minor
	}

	# Why the others were refused (computed only when there are any: the VM is slow).
	refused := ctx.receivers - ok
	receiver_denials := _receiver_denials(ctx, refused, granted, in_step, needs_samenloop, needs_minor)

	# Bound in comprehension bodies: regopy 1.5.2 miscomputes a call in an object comprehension's
	# value when the call takes variables of the enclosing function.
	allowed_results := {r: result |
		some r in ok
		row := grants[type][r][sender]
		basis := row.legalBasis
		template := _allowed_template(object.get(row, "verified", false))
		reasons := _render({_item(template, [r, type, sender, ctx.purpose, basis])})
		fields := _minimise(ctx.action, ctx.payload, row.fields)
		result := {"allowed": true, "reasons": reasons, "legalBasis": basis, "purpose": ctx.purpose, "fields": fields}
	}
	denied_results := {r: result |
		some r in refused
		reasons := _render(_denial_items(denials, receiver_denials, r))
		result := {"allowed": false, "reasons": reasons, "legalBasis": null, "purpose": ctx.purpose, "fields": []}
	}
	results := object.union(allowed_results, denied_results)

	# Rules 4 and 5: what the gateway must do with each delivery.
	obligations := [o |
		some r in _sorted(ok)
		some o in [
			_strip(ctx.action, r, ctx.payload, allowed_results[r].fields),
			{
				"code": "usage_restriction",
				"recipient": r,
				"informationType": type,
				"purpose": ctx.purpose,
				"onwardSharing": "new_decision_required",
			},
		]
	]
}

# Rule 2: who may receive. Share: the actor acts on its own and the recipient takes part (core or
# consulted). Request: the actor acts on its own and the holder takes part; the actor receives.
_reachable(ctx) := {r | some r in ctx.receivers; r in (ctx.core | ctx.consulted)} if {
	ctx.action == "share"
	ctx.actor in ctx.core
} else := {ctx.actor} if {
	ctx.action == "request"
	ctx.actor in ctx.core
	ctx.sender in (ctx.core | ctx.consulted)
} else := set()

# Deny rules per receiver; each item carries the receiver it concerns.
_receiver_denials(ctx, refused, granted, in_step, needs_samenloop, needs_minor) := set() if {
	count(refused) == 0
} else := ((((participation | no_row) | wrong_step) | purpose) | samenloop) | minor if {
	facts := data.veiligdelen.facts
	participation := _share_participation(ctx, refused)
	no_row := {{"recipient": r, "template": "no_legal_basis", "args": [ctx.sender, ctx.type, r]} |
		facts.informationTypes[ctx.type]
		facts.agencies[ctx.sender]
		some r in refused
		facts.agencies[r]
		not r in granted
	}
	wrong_step := {{"recipient": r, "template": "no_legal_basis_step", "args": [ctx.sender, ctx.type, r, ctx.flow, ctx.step]} |
		some r in (granted & refused)
		not r in in_step
	}

	# Rule 4: purpose binding.
	purpose := {{"recipient": r, "template": "purpose_not_allowed", "args": [ctx.purpose, ctx.type, ctx.sender, r, allowed]} |
		facts.purposes[ctx.purpose]
		some r in (granted & refused)
		purposes := facts.grants[ctx.type][r][ctx.sender].purposes
		not ctx.purpose in purposes
		allowed := _join(purposes)
	}
	samenloop := {{"recipient": r, "template": "samenloop_required", "args": [ctx.type, r]} | some r in (needs_samenloop & refused)}
	minor := {{"recipient": r, "template": "no_minor_in_case", "args": [r, facts.minorRequired.subjectRole]} |
		some r in (needs_minor & refused)
	}
}

# Rule 2 for a share's recipients: a participant of the step (core, consulted, or conditional
# while samenloop holds).
_share_participation(ctx, refused) := (unknown | awaiting) | outside if {
	facts := data.veiligdelen.facts
	ctx.action == "share"
	unknown := {{"recipient": r, "template": "unknown_agency", "args": [r]} | some r in refused; not facts.agencies[r]}
	awaiting := {{"recipient": r, "template": "samenloop_participant", "args": [r, ctx.flow, ctx.step]} |
		some r in refused
		r in ctx.awaiting
	}
	outside := {{"recipient": r, "template": "recipient_not_a_participant", "args": [r, ctx.flow, ctx.step]} |
		ctx.stepKnown
		some r in refused
		facts.agencies[r]
		not r in ctx.participants
	}
} else := set()

# Rule 5: minimisation. Share: the payload fields the row lists; request: the row's fields.
_minimise("share", payload, allowed) := _sorted({f | some f in payload; f in allowed})

_minimise("request", _, allowed) := _sorted(allowed)

_allowed_template(verified) := "allowed_exchange" if {
	verified == true
} else := "allowed_exchange_unverified"

_denial_items(denials, receiver_denials, r) := items if {
	items := denials | {d | some d in receiver_denials; d.recipient == r}
	count(items) > 0
} else := {_item("denied_by_default", [])}

# The top level: what refused the whole decision, or else what each receiver got.
_exchange_reasons(denials, results) := _render(denials) if {
	count(denials) > 0
} else := _ordered({x | some part in results; some x in part.reasons}) if {
	count(results) > 0
} else := _render({_item("denied_by_default", [])})

_strip("share", r, payload, fields) := {
	"code": "strip_fields",
	"recipient": r,
	"fields": fields,
	"removed": _sorted({f | some f in payload; not f in fields}),
}

_strip("request", r, _, fields) := {"code": "strip_fields", "recipient": r, "fields": fields}

# ---------------------------------------------------------------------------------------------
# Case changes (rule 7) and case reads
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Case decision
# description: >-
#   case.open, case.read, case.transition, case.track (rule 7): allowed when nothing refuses it and
#   the action's condition holds; an allow names the actor's task basis (agencies[actor].legalBasis).
_case_decision(ctx, denials) := {
	"allowed": true,
	"reasons": _render({_case_allowed_item(ctx, basis)}),
	"legalBasis": basis,
	"obligations": [],
	"recipients": {},
} if {
	facts := data.veiligdelen.facts
	count(denials) == 0
	_case_ok(ctx)
	basis := facts.agencies[ctx.actor].legalBasis
} else := {
	"allowed": false,
	"reasons": _case_reasons(denials),
	"legalBasis": null,
	"obligations": [],
	"recipients": {},
}

_case_reasons(denials) := _render(denials) if {
	count(denials) > 0
} else := _render({_item("denied_by_default", [])})

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
	not_opener := {_item("not_authorised_open", [ctx.actor, _join(facts.caseOpeners)]) |
		facts.agencies[ctx.actor]
		not ctx.actor in facts.caseOpeners
	}
	not_core := {_item("not_a_participant", [ctx.actor, ctx.flow, ctx.step]) |
		facts.agencies[ctx.actor]
		ctx.stepKnown
		not ctx.actor in ctx.core
	}
}

# case.read: any kind of participant of the current step, or an agency involved in the case.
_read_denials(ctx) := outside | minor if {
	facts := data.veiligdelen.facts
	outside := {_item("not_a_participant", [ctx.actor, ctx.flow, ctx.step]) |
		facts.agencies[ctx.actor]
		ctx.stepKnown
		not _takes_part(ctx, ctx.actor)
	}
	minor := {_item("no_minor_in_case", [ctx.actor, facts.minorRequired.subjectRole]) | _minor_blocks(ctx)}
}

# Rule 6 for reading: the RvdK reads only cases with a minor.
_minor_blocks(ctx) if {
	facts := data.veiligdelen.facts
	not ctx.hasMinor
	ctx.actor in facts.minorRequired.recipients
}

_takes_part(ctx, a) if a in ctx.participants

_takes_part(ctx, a) if a in ctx.involved

# case.transition: the movers of the current flow, along a legal move of the process.
_transition_denials(ctx) := (not_mover | unknown) | illegal if {
	facts := data.veiligdelen.facts
	target := ctx.target
	movers := object.get(facts.flows, [ctx.flow, "movers"], [])
	not_mover := {_item("not_authorised_transition", [ctx.actor, ctx.flow, _join(movers)]) |
		facts.agencies[ctx.actor]
		not ctx.actor in movers
	}
	target_known := _step_exists(target.flow, target.step)
	unknown := {_item("unknown_step", [target.flow, target.step]) |
		is_string(target.flow)
		is_string(target.step)
		not target_known
	}
	illegal := {_item("illegal_transition", [ctx.flow, ctx.step, target.flow, target.step]) |
		ctx.stepKnown
		target_known
		not _legal_move(ctx.flow, ctx.step, target.flow, target.step)
	}
}

_step_exists(flow, step) if {
	facts := data.veiligdelen.facts
	facts.flows[flow].steps[step]
} else := false

# Forward to a later step of the same flow.
_legal_move(flow, step, target_flow, target_step) if {
	facts := data.veiligdelen.facts
	target_flow == flow
	order := facts.flows[flow].order
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
	facts := data.veiligdelen.facts
	name := ctx.track
	unknown := {_item("unknown_track", [name]) |
		is_string(name)
		not facts.tracks[name]
	}
	not_owner := {_item("not_authorised_track", [ctx.actor, name, _join(owners)]) |
		facts.agencies[ctx.actor]
		owners := facts.tracks[name].owners
		not ctx.actor in owners
	}
}

_case_ok(ctx) if {
	facts := data.veiligdelen.facts
	ctx.action == "case.open"
	ctx.actor in facts.caseOpeners
	ctx.actor in ctx.core
}

_case_ok(ctx) if {
	ctx.action == "case.read"
	_takes_part(ctx, ctx.actor)
	not _minor_blocks(ctx)
}

_case_ok(ctx) if {
	facts := data.veiligdelen.facts
	ctx.action == "case.transition"
	ctx.actor in facts.flows[ctx.flow].movers
	_legal_move(ctx.flow, ctx.step, ctx.target.flow, ctx.target.step)
}

_case_ok(ctx) if {
	facts := data.veiligdelen.facts
	ctx.action == "case.track"
	ctx.actor in facts.tracks[ctx.track].owners
}

_case_allowed_item(ctx, basis) := _item("allowed_case_open", [ctx.actor, ctx.flow, ctx.step, basis]) if {
	ctx.action == "case.open"
}

_case_allowed_item(ctx, basis) := _item("allowed_case_read", [ctx.actor, basis]) if {
	ctx.action == "case.read"
}

_case_allowed_item(ctx, basis) := _item("allowed_case_transition", args) if {
	ctx.action == "case.transition"
	args := [ctx.actor, ctx.flow, ctx.step, ctx.target.flow, ctx.target.step, basis]
}

_case_allowed_item(ctx, basis) := _item("allowed_case_track", [ctx.actor, ctx.track, basis]) if {
	ctx.action == "case.track"
}

# ---------------------------------------------------------------------------------------------
# Reasons rendered from data.json's message templates, most fundamental first
# ---------------------------------------------------------------------------------------------

# Order by the rank of each code in data.json, then by message. regopy 1.5.2 compares terms by their
# JSON text ([8] < [10] is false there), so the rank is shifted to three digits to order alike in OPA.
_render(items) := [{"code": t[2], "message": t[1], "messageNl": t[3]} |
	some t in _sorted({_sort_key(i) | some i in items})
]

_sort_key(i) := [rank + 100, sprintf(m.message, i.args), m.code, sprintf(m.messageNl, i.args)] if {
	facts := data.veiligdelen.facts
	m := facts.messages[i.template]
	rank := facts.reasonCodes[m.code].rank
}

# Reasons already rendered (from several receivers), merged and ordered the same way.
_ordered(rendered) := [{"code": t[2], "message": t[1], "messageNl": t[3]} |
	some t in _sorted({[data.veiligdelen.facts.reasonCodes[x.code].rank + 100, x.message, x.code, x.messageNl] | some x in rendered})
]

# Legal bases joined in one order in both engines: by their text with "~" appended, because
# regopy orders "Wmo e en f" before "Wmo e" (the space sorts before the closing quote of its JSON
# text) and OPA after it; with the suffix no basis is a prefix of another and both agree.
_joined_or_null(bases) := concat(" | ", [b | some pair in _sorted({[concat("", [x, "~"]), x] | some x in bases}); b := pair[1]]) if {
	count(bases) > 0
} else := null

# sort() of a set returns a set in regopy 1.5.2 (an array in OPA): sort an array so both agree.
_sorted(s) := sort([x | some x in s])

# A sorted, comma-separated list for messages. The JSON round trip is the identity in OPA; in regopy
# 1.5.2 it turns the string concat made into a plain one, which sprintf would otherwise wrap in quotes
# (as it does with string literals passed to a function: message arguments come from the input and
# data.json, or through here).
_join(xs) := json.unmarshal(json.marshal(concat(", ", _sorted(xs))))
