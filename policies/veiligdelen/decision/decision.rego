# METADATA
# title: Veilig Delen exchange and case decisions
# description: >-
#   Decides whether information may move between the agencies of a domestic-violence or
#   child-abuse case (share, request) and whether a case may change (open, read, transition,
#   track). Deny by default; every allow names its legal basis and purpose. The facts (who takes
#   part in which step, legal bases, purposes, field lists) live in data.veiligdelen.facts.
#
#   The decision is a function of its input, decide(inp), computed as a pipeline of functions that
#   each run once. Two regopy 1.5.2 properties shape this: `with` recompiles every rule a tested
#   rule depends on, once per reference (exponential in shared rules), and calls are not cached.
#   Tests therefore call decide({...}) with a literal input, and no rule is evaluated twice.
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
	decision := _decision(inp, ctx, _denials(inp, ctx))
}

_decision(inp, ctx, denials) := _exchange_decision(inp, ctx, denials) if {
	ctx.exchange
} else := _case_decision(inp, ctx, denials)

# ---------------------------------------------------------------------------------------------
# Context: everything later steps read, computed once
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Context
# description: >-
#   What every later step reads, computed once: the identifiers of the input (null when absent),
#   the step's participants (core, consulted, awaiting samenloop), the sender and receivers of an
#   exchange, and the data.json rows (grants) that could allow it.
_context(inp) := ctx if {
	is_object(inp)
	facts := data.veiligdelen.facts
	action := object.get(inp, "action", null)
	actor := object.get(inp, ["actor", "agency"], null)
	flow := object.get(inp, ["case", "flow"], null)
	step := object.get(inp, ["case", "step"], null)
	step_facts := object.get(facts.flows, [flow, "steps", step], {})

	# Samenloop van zorg en straf: both tracks open (rule 3).
	zorg := object.get(inp, ["case", "tracks", "zorg"], false)
	straf := object.get(inp, ["case", "tracks", "straf"], false)
	samenloop := {zorg, straf} == {true}

	# Core participants act on their own; conditional ones count as core under samenloop; in a
	# step marked coreIncludesInvolved (the hand-over) every agency involved in the case does.
	involved := _list(object.get(inp, ["case", "involved"], []))
	static := {a | some a in object.get(step_facts, "core", [])}
	by_involvement := {a | object.get(step_facts, "coreIncludesInvolved", false) == true; some a in involved}
	by_samenloop := {a | samenloop; some a in object.get(step_facts, "conditional", [])}
	core := (static | by_involvement) | by_samenloop

	# Consulted parties may be asked and answer the asker; they do not share on their own.
	consulted := {a | some a in object.get(step_facts, "consulted", []); not a in core}
	awaiting := {a | not samenloop; some a in object.get(step_facts, "conditional", []); not a in core}

	sender := _sender(action, actor, object.get(inp, "holder", null))
	receivers := _receivers(action, actor, _list(object.get(inp, "recipients", [])))
	type := object.get(inp, "informationType", null)
	step_known := count(step_facts) > 0
	participants := (core | consulted) | awaiting
	ctx := {
		"action": action,
		"actor": actor,
		"flow": flow,
		"step": step,
		"stepName": _step_name(flow, step),
		"stepKnown": step_known,
		"agencies": object.keys(facts.agencies),
		"schema": object.get(facts.inputSchema, [action], {}),
		"samenloop": samenloop,
		"hasMinor": facts.minorRequired.subjectRole in _list(object.get(inp, ["case", "subjectRoles"], [])),
		"core": core,
		"consulted": consulted,
		"awaiting": awaiting,
		"participants": participants,
		"involved": involved,
		"exchange": action in {"share", "request"},
		"sender": sender,
		"receivers": receivers,
		"type": type,
		"purpose": object.get(inp, "purpose", null),
		"grants": {r: g | some r in receivers; g := object.get(facts.grants, [type, r, sender], null); g != null},
	}
}

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

# ---------------------------------------------------------------------------------------------
# Denials of the whole decision (rules 2, 7, 8 and unknown identifiers)
# ---------------------------------------------------------------------------------------------

# A reason before rendering: a message template of data.json and its arguments.
_item(template, args) := {"template": template, "args": args}

# METADATA
# title: Denials
# description: >-
#   What refuses the decision as a whole: missing or unknown input (rule 8), an actor or holder
#   outside the step (rule 2), a case change the actor may not make or the process does not allow
#   (rule 7). Items are {template, args}; rendering happens last.
_denials(inp, ctx) := ((_input_denials(inp, ctx) | _exchange_denials(inp, ctx)) | _case_denials(inp, ctx))

_input_denials(inp, ctx) := (((((no_action | missing) | unknown_action) | unknown_agency) | unknown_step) | unknown_ids) if {
	no_action := {_item("missing_input", [_join(["action"])]) | not is_string(ctx.action)}
	missing_paths := _missing(inp, ctx)
	missing := {_item("missing_input", [_join(missing_paths)]) | count(missing_paths) > 0}
	unknown_action := {_item("unknown_action", [ctx.action]) |
		is_string(ctx.action)
		not ctx.action in object.keys(data.veiligdelen.facts.inputSchema)
	}
	acting := {ctx.actor} | {h | ctx.action == "request"; h := object.get(inp, "holder", null)}
	unknown_agency := {_item("unknown_agency", [a]) |
		some a in acting
		is_string(a)
		not a in ctx.agencies
	}
	unknown_step := {_item("unknown_step", [ctx.flow, ctx.step]) |
		ctx.schema["case.step"]
		is_string(ctx.flow)
		is_string(ctx.step)
		not ctx.stepKnown
	}
	unknown_ids := _unknown_ids(inp, ctx)
}

_unknown_ids(inp, ctx) := types | purposes if {
	types := {_item("unknown_information_type", [ctx.type]) |
		ctx.schema.informationType
		is_string(ctx.type)
		not ctx.type in object.keys(data.veiligdelen.facts.informationTypes)
	}
	purposes := {_item("unknown_purpose", [ctx.purpose]) |
		ctx.schema.purpose
		is_string(ctx.purpose)
		not ctx.purpose in object.keys(data.veiligdelen.facts.purposes)
	}
}

# Rule 8: a field the action needs that is absent, null, empty or of the wrong type denies.
# inputSchema maps each path to its type name: string, boolean or array.
_missing(inp, ctx) := (fields | no_recipients) | bad_flow if {
	fields := {path |
		some path in object.keys(ctx.schema)
		value := object.get(inp, split(path, "."), null)
		not _present(value, ctx.schema[path])
	}
	no_recipients := {"recipients" | ctx.action == "share"; count(_list(object.get(inp, "recipients", []))) == 0}
	bad_flow := {"transition.flow" |
		ctx.action == "case.transition"
		not is_string(object.get(inp, ["transition", "flow"], ""))
	}
}

_present(value, type) if {
	type_name(value) == type
	value != ""
}

# Rule 2 for the acting agencies of an exchange: the actor acts on its own in this step, the
# holder of a request takes part in it (core or consulted).
_exchange_denials(inp, ctx) := ((not_participant | consulted) | awaiting) | holder if {
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
} else := set()

_outside_step(ctx, a) if {
	ctx.stepKnown
	a in ctx.agencies
	not a in ctx.participants
}

# ---------------------------------------------------------------------------------------------
# Exchanges: share (actor -> recipients) and request (holder -> actor)
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Exchange decision
# description: >-
#   Share and request: each receiver is decided on its own by the allow rule below (rules 1-6),
#   gets its fields (rule 5) and, when allowed, its obligations (rules 4 and 5).
_exchange_decision(inp, ctx, denials) := {
	"allowed": allowed,
	"reasons": _exchange_reasons(denials, results),
	"legalBasis": _joined_or_null({grants[r].legalBasis | some r in ok}),
	"obligations": obligations,
	"recipients": results,
} if {
	grants := ctx.grants
	granted := object.keys(grants)
	payload := _list(object.get(inp, "payloadFields", []))

	# Rule 3: samenloop for the safety assessment, conditions and plan.
	needs_samenloop := {r |
		not ctx.samenloop
		ctx.type in data.veiligdelen.facts.samenloop.informationTypes
		some r in ctx.receivers
		r in data.veiligdelen.facts.samenloop.recipients
	}

	# Rule 6: the RvdK receives only for cases with a minor.
	needs_minor := {r | not ctx.hasMinor; some r in ctx.receivers; r in data.veiligdelen.facts.minorRequired.recipients}
	in_step := {r | some r in granted; _grant_in_step(ctx.stepName, grants[r])}

	# The allow rule: every condition is stated positively, so whatever no rule allows stays denied.
	ok := {r |
		count(denials) == 0
		some r in _reachable(ctx)
		r in in_step
		ctx.purpose in grants[r].purposes
		not r in needs_samenloop
		not r in needs_minor
	}

	# Why the others were refused (computed only for them: the VM is slow, see the package notes).
	receiver_denials := _receiver_denials(ctx, ctx.receivers - ok, granted, in_step, needs_samenloop, needs_minor)

	# Bound in comprehension bodies: regopy 1.5.2 miscomputes a call in an object comprehension's
	# value when the call takes variables of the enclosing function.
	allowed_results := {r: result |
		some r in ok
		g := grants[r]
		reasons := _render({{"template": _allowed_template(g), "args": [r, ctx.type, ctx.sender, ctx.purpose, g.legalBasis]}})
		fields := _minimise(ctx.action, payload, g.fields)
		result := {"allowed": true, "reasons": reasons, "legalBasis": g.legalBasis, "purpose": ctx.purpose, "fields": fields}
	}
	denied_results := {r: result |
		some r in ctx.receivers
		not r in ok
		reasons := _render(_denial_items(denials, receiver_denials, r))
		result := {"allowed": false, "reasons": reasons, "legalBasis": null, "purpose": ctx.purpose, "fields": []}
	}
	results := object.union(allowed_results, denied_results)
	allowed := count(ok) > 0
	obligations := [o |
		some r in _sorted(ok)
		some o in _obligations(ctx, r, payload, allowed_results[r].fields)
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
_receiver_denials(ctx, refused, granted, in_step, needs_samenloop, needs_minor) := ((((participation | no_row) | wrong_step) | purpose) | samenloop) | minor if {
	participation := _share_participation(ctx, refused)
	no_row := {{"recipient": r, "template": "no_legal_basis", "args": [ctx.sender, ctx.type, r]} |
		ctx.type in object.keys(data.veiligdelen.facts.informationTypes)
		ctx.sender in ctx.agencies
		some r in refused
		r in ctx.agencies
		not r in granted
	}
	wrong_step := {{"recipient": r, "template": "no_legal_basis_step", "args": [ctx.sender, ctx.type, r, ctx.flow, ctx.step]} |
		some r in (granted & refused)
		not r in in_step
	}

	# Rule 4: purpose binding.
	purpose := {{"recipient": r, "template": "purpose_not_allowed", "args": [ctx.purpose, ctx.type, ctx.sender, r, allowed]} |
		ctx.purpose in object.keys(data.veiligdelen.facts.purposes)
		some r in (granted & refused)
		not ctx.purpose in ctx.grants[r].purposes
		allowed := _join(ctx.grants[r].purposes)
	}
	samenloop := {{"recipient": r, "template": "samenloop_required", "args": [ctx.type, r]} | some r in (needs_samenloop & refused)}
	minor := {{"recipient": r, "template": "no_minor_in_case", "args": [r, data.veiligdelen.facts.minorRequired.subjectRole]} |
		some r in (needs_minor & refused)
	}
}

# Rule 2 for a share's recipients: a participant of the step (core, consulted, or conditional
# while samenloop holds).
_share_participation(ctx, refused) := (unknown | awaiting) | outside if {
	ctx.action == "share"
	unknown := {{"recipient": r, "template": "unknown_agency", "args": [r]} | some r in refused; not r in ctx.agencies}
	awaiting := {{"recipient": r, "template": "samenloop_participant", "args": [r, ctx.flow, ctx.step]} |
		some r in refused
		r in ctx.awaiting
	}
	outside := {{"recipient": r, "template": "recipient_not_a_participant", "args": [r, ctx.flow, ctx.step]} |
		ctx.stepKnown
		some r in refused
		r in ctx.agencies
		not r in ctx.participants
	}
} else := set()

_grant_in_step(_, g) if not g.steps

_grant_in_step(step_name, g) if step_name in g.steps

# Rule 5: minimisation. Share: the payload fields the row lists; request: the row's fields.
_minimise("share", payload, allowed) := _sorted({f | some f in payload; f in allowed})

_minimise("request", _, allowed) := _sorted(allowed)

_allowed_template(g) := "allowed_exchange" if g.verified == true

_allowed_template(g) := "allowed_exchange_unverified" if not g.verified == true

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

# Rules 4 and 5: what the gateway must do with each delivery.
_obligations(ctx, r, payload, fields) := [_strip(ctx.action, r, payload, fields), usage] if {
	usage := {
		"code": "usage_restriction",
		"recipient": r,
		"informationType": ctx.type,
		"purpose": ctx.purpose,
		"onwardSharing": "new_decision_required",
	}
}

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
_case_decision(inp, ctx, denials) := {
	"allowed": allowed,
	"reasons": _case_reasons(inp, ctx, denials, allowed),
	"legalBasis": _case_basis(ctx, allowed),
	"obligations": [],
	"recipients": {},
} if {
	allowed := _case_allowed(inp, ctx, denials)
}

_case_allowed(inp, ctx, denials) if {
	count(denials) == 0
	_case_ok(inp, ctx)
} else := false

_case_basis(ctx, true) := data.veiligdelen.facts.agencies[ctx.actor].legalBasis

_case_basis(_, false) := null

_case_reasons(inp, ctx, _, true) := _render({_case_allowed_item(inp, ctx)})

_case_reasons(_, _, denials, false) := _render(denials) if {
	count(denials) > 0
} else := _render({_item("denied_by_default", [])})

_case_denials(inp, ctx) := _open_denials(ctx) if {
	ctx.action == "case.open"
} else := _read_denials(inp, ctx) if {
	ctx.action == "case.read"
} else := _transition_denials(inp, ctx) if {
	ctx.action == "case.transition"
} else := _track_denials(inp, ctx) if {
	ctx.action == "case.track"
} else := set()

# case.open: by the agencies that open cases, in a step where the opener is a core participant.
_open_denials(ctx) := not_opener | not_core if {
	not_opener := {_item("not_authorised_open", [ctx.actor, _join(data.veiligdelen.facts.caseOpeners)]) |
		ctx.actor in ctx.agencies
		not ctx.actor in data.veiligdelen.facts.caseOpeners
	}
	not_core := {_item("not_a_participant", [ctx.actor, ctx.flow, ctx.step]) |
		ctx.actor in ctx.agencies
		ctx.stepKnown
		not ctx.actor in ctx.core
	}
}

# case.read: any kind of participant of the current step, or an agency involved in the case.
_read_denials(inp, ctx) := outside | minor if {
	outside := {_item("not_a_participant", [ctx.actor, ctx.flow, ctx.step]) |
		ctx.actor in ctx.agencies
		ctx.stepKnown
		not _takes_part(inp, ctx, ctx.actor)
	}
	minor := {_item("no_minor_in_case", [ctx.actor, data.veiligdelen.facts.minorRequired.subjectRole]) | _minor_blocks(ctx)}
}

# Rule 6 for reading: the RvdK reads only cases with a minor.
_minor_blocks(ctx) if {
	not ctx.hasMinor
	ctx.actor in data.veiligdelen.facts.minorRequired.recipients
}

_takes_part(inp, ctx, a) if a in ctx.participants

_takes_part(inp, ctx, a) if a in ctx.involved

# case.transition: the movers of the current flow, along a legal move of the process.
_target(inp, ctx) := {
	"flow": object.get(inp, ["transition", "flow"], ctx.flow),
	"step": object.get(inp, ["transition", "step"], null),
}

_transition_denials(inp, ctx) := (not_mover | unknown) | illegal if {
	target := _target(inp, ctx)
	movers := object.get(data.veiligdelen.facts.flows, [ctx.flow, "movers"], [])
	not_mover := {_item("not_authorised_transition", [ctx.actor, ctx.flow, _join(movers)]) |
		ctx.actor in ctx.agencies
		not ctx.actor in movers
	}
	target_known := _step_exists(ctx, target.flow, target.step)
	unknown := {_item("unknown_step", [target.flow, target.step]) |
		is_string(target.flow)
		is_string(target.step)
		not target_known
	}
	illegal := {_item("illegal_transition", [ctx.flow, ctx.step, target.flow, target.step]) |
		ctx.stepKnown
		target_known
		not _legal_move(ctx, target)
	}
}

_step_exists(ctx, flow, step) if {
	step in object.keys(object.get(data.veiligdelen.facts.flows, [flow, "steps"], {}))
} else := false

# Forward to a later step of the same flow.
_legal_move(ctx, target) if {
	target.flow == ctx.flow
	order := data.veiligdelen.facts.flows[ctx.flow].order
	some i, s in order
	s == ctx.step
	some j, t in order
	t == target.step
	j > i
}

# The cross-flow moves of data.json (escalation, hand-over); a "from" without step is any step.
_legal_move(ctx, target) if {
	some m in data.veiligdelen.facts.transitions
	m.from.flow == ctx.flow
	object.get(m.from, "step", ctx.step) == ctx.step
	m.to.flow == target.flow
	m.to.step == target.step
}

# case.track: each track has its owners.
_track_denials(inp, ctx) := unknown | not_owner if {
	name := object.get(inp, ["track", "name"], null)
	unknown := {_item("unknown_track", [name]) |
		is_string(name)
		not name in object.keys(data.veiligdelen.facts.tracks)
	}
	not_owner := {_item("not_authorised_track", [ctx.actor, name, _join(owners)]) |
		ctx.actor in ctx.agencies
		owners := data.veiligdelen.facts.tracks[name].owners
		not ctx.actor in owners
	}
}

_case_ok(_, ctx) if {
	ctx.action == "case.open"
	ctx.actor in data.veiligdelen.facts.caseOpeners
	ctx.actor in ctx.core
}

_case_ok(inp, ctx) if {
	ctx.action == "case.read"
	_takes_part(inp, ctx, ctx.actor)
	not _minor_blocks(ctx)
}

_case_ok(inp, ctx) if {
	ctx.action == "case.transition"
	ctx.actor in data.veiligdelen.facts.flows[ctx.flow].movers
	_legal_move(ctx, _target(inp, ctx))
}

_case_ok(inp, ctx) if {
	ctx.action == "case.track"
	ctx.actor in data.veiligdelen.facts.tracks[inp.track.name].owners
}

_case_allowed_item(_, ctx) := _item("allowed_case_open", [ctx.actor, ctx.flow, ctx.step, basis]) if {
	ctx.action == "case.open"
	basis := data.veiligdelen.facts.agencies[ctx.actor].legalBasis
}

_case_allowed_item(_, ctx) := _item("allowed_case_read", [ctx.actor, basis]) if {
	ctx.action == "case.read"
	basis := data.veiligdelen.facts.agencies[ctx.actor].legalBasis
}

_case_allowed_item(inp, ctx) := _item("allowed_case_transition", [ctx.actor, ctx.flow, ctx.step, t.flow, t.step, basis]) if {
	ctx.action == "case.transition"
	t := _target(inp, ctx)
	basis := data.veiligdelen.facts.agencies[ctx.actor].legalBasis
}

_case_allowed_item(inp, ctx) := _item("allowed_case_track", [ctx.actor, inp.track.name, basis]) if {
	ctx.action == "case.track"
	basis := data.veiligdelen.facts.agencies[ctx.actor].legalBasis
}

# ---------------------------------------------------------------------------------------------
# Reasons rendered from data.json's message templates, most fundamental first
# ---------------------------------------------------------------------------------------------

# Order by the rank of each code in data.json, then by message.
_render(items) := [{"code": t[2], "message": t[1], "messageNl": t[3]} |
	some t in _sorted({_sort_key(i) | some i in items})
]

_sort_key(i) := [data.veiligdelen.facts.reasonCodes[m.code].rank, sprintf(m.message, i.args), m.code, sprintf(m.messageNl, i.args)] if {
	m := data.veiligdelen.facts.messages[i.template]
}

# Reasons already rendered (from several receivers), merged and ordered the same way.
_ordered(rendered) := [{"code": t[2], "message": t[1], "messageNl": t[3]} |
	some t in _sorted({[data.veiligdelen.facts.reasonCodes[x.code].rank, x.message, x.code, x.messageNl] | some x in rendered})
]

_joined_or_null(bases) := concat(" | ", _sorted(bases)) if {
	count(bases) > 0
} else := null

# sort() of a set returns a set in regopy 1.5.2 (an array in OPA): sort an array so both agree.
_sorted(s) := sort([x | some x in s])

# A sorted, comma-separated list for messages. The JSON round trip is the identity in OPA; in regopy
# 1.5.2 it turns the string concat made into a plain one, which sprintf would otherwise wrap in quotes
# (as it does with string literals passed to a function: message arguments come from the input and
# data.json, or through here).
_join(xs) := json.unmarshal(json.marshal(concat(", ", _sorted(xs))))
