# METADATA
# title: Context
# description: >-
#   What the input says, read once into a small context that every later rule reads, and what
#   refuses the input as such: a missing or malformed field (rule 8), an unknown action, agency,
#   step, information type or purpose.
package veiligdelen.decision

# METADATA
# title: Context
# description: >-
#   What every later step reads, computed once: the identifiers of the input (null when absent),
#   the fields it lacks (rule 8), the step's participants (ctx.parties: core, consulted, awaiting
#   samenloop, all of them, and the agencies involved in the case) and purposes, the sender and
#   receivers of an exchange, where shared data came from, and the case change asked for
#   (ctx.change: the target flow and step of a transition, the track). The groups keep the object
#   small: compat.rego says why.
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
		"parties": {
			"core": core,
			"consulted": consulted,
			"awaiting": awaiting,
			"participants": (core | consulted) | awaiting,
			"involved": involved,
		},
		"exchange": action in {"share", "request"},
		"sender": _sender(action, actor, holder),
		"holder": holder,
		"receivers": _receivers(action, actor, _list(object.get(inp, "recipients", []))),
		"type": object.get(inp, "informationType", null),
		"purpose": object.get(inp, "purpose", null),
		"payload": _list(object.get(inp, "payloadFields", [])),
		"origins": _valid_origins(origins),
		"change": {
			"flow": object.get(inp, ["transition", "flow"], flow),
			"step": object.get(inp, ["transition", "step"], null),
			"track": object.get(inp, ["track", "name"], null),
		},
	}
}

_step_facts(flow, step) := x if {
	flows := data.veiligdelen.facts.flows
	x := flows[flow].steps[step]
} else := {}

_schema(action) := x if {
	schemas := data.veiligdelen.facts.inputSchema
	x := schemas[action]
} else := {}

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

# METADATA
# title: Input denials
# description: >-
#   Rule 8 and unknown identifiers: a field the action needs is missing or malformed, or the
#   action, an acting agency, the step, the information type or the purpose is not in data.json.
_input_denials(ctx) := ((((no_action | missing) | unknown_action) | unknown_agency) | unknown_step) | unknown_ids if {
	schemas := data.veiligdelen.facts.inputSchema
	agencies := data.veiligdelen.facts.agencies
	action := ctx.action
	missing_fields := ctx.missing
	no_action := {_reason("missing_input", [_list_arg(["action"])]) | not is_string(action)}
	missing := {_reason("missing_input", [_list_arg(missing_fields)]) | count(missing_fields) > 0}
	unknown_action := {_reason("unknown_action", [ctx.action]) |
		not schemas[action]
		is_string(action)
	}
	acting := {ctx.actor} | {ctx.holder | action == "request"}
	unknown_agency := {_reason("unknown_agency", [a]) |
		some a in acting
		not agencies[a]
		is_string(a)
	}
	unknown_step := {_reason("unknown_step", [ctx.flow, ctx.step]) |
		not ctx.stepKnown
		schemas[action]["case.step"]
		is_string(ctx.flow)
		is_string(ctx.step)
	}
	unknown_ids := _unknown_ids(ctx)
}

_unknown_ids(ctx) := types | purposes if {
	schema := _schema(ctx.action)
	known_types := data.veiligdelen.facts.informationTypes
	known_purposes := data.veiligdelen.facts.purposes
	type := ctx.type
	purpose := ctx.purpose
	types := {_reason("unknown_information_type", [type]) |
		not known_types[type]
		schema.informationType
		is_string(type)
	}
	purposes := {_reason("unknown_purpose", [purpose]) |
		not known_purposes[purpose]
		schema.purpose
		is_string(purpose)
	}
}
