# METADATA
# title: Exchanges
# description: >-
#   Share (actor -> recipients) and request (holder -> actor): what refuses the exchange as a
#   whole (rules 2 and 4), then each receiver decided on its own (rules 1-6) with its fields
#   (rule 5) and, when allowed, its obligations (rules 4 and 5).
package veiligdelen.decision

# Rules 2 and 4 for the exchange as a whole: the actor acts on its own in this step, the holder of
# a request takes part in it (core or consulted), the step serves the purpose, and data shared on
# from received messages (origin) was received for a compatible purpose.
_exchange_denials(ctx) := (((((not_participant | consulted) | awaiting) | holder) | step_purpose) | origin) if {
	known_purposes := data.veiligdelen.facts.purposes
	ctx.exchange
	actor := ctx.actor
	purpose := ctx.purpose
	not_participant := {_reason("not_a_participant", [actor, ctx.flow, ctx.step]) | _outside_step(ctx, actor)}
	consulted := {_reason("consulted_party_cannot_share", [actor, ctx.flow, ctx.step]) | actor in ctx.parties.consulted}
	awaiting := {_reason("samenloop_participant", [a, ctx.flow, ctx.step]) |
		some a in {actor, ctx.sender}
		a in ctx.parties.awaiting
	}
	holder := {_reason("holder_not_a_participant", [ctx.sender, ctx.flow, ctx.step]) |
		ctx.action == "request"
		_outside_step(ctx, ctx.sender)
	}
	step_purpose := {_reason("purpose_not_in_step", [ctx.flow, ctx.step, purpose, _list_arg(ctx.stepPurposes)]) |
		not purpose in ctx.stepPurposes
		ctx.stepKnown
		known_purposes[purpose]
	}
	origin := {_reason("purpose_incompatible_with_origin", args) |
		some o in ctx.origins
		known_purposes[purpose]
		compatible := _compatible(o.purpose)
		o.purpose != purpose
		not purpose in compatible
		args := [purpose, o.purpose, actor, o.informationType, o.sender, _list_arg(array.concat([o.purpose], compatible))]
	}
} else := set()

_compatible(purpose) := x if {
	compatible := data.veiligdelen.facts.compatiblePurposes
	x := compatible[purpose].purposes
} else := []

_outside_step(ctx, a) if {
	agencies := data.veiligdelen.facts.agencies
	ctx.stepKnown
	agencies[a]
	not a in ctx.parties.participants
}

# METADATA
# title: Exchange decision
# description: >-
#   Share and request: each receiver is decided on its own by the allow rule below (rules 1-6),
#   gets its fields (rule 5) and, when allowed, its obligations (rules 4 and 5). A row is
#   data.veiligdelen.facts.grants[type][receiver][sender]; it is read by path, field by field.
_exchange_decision(ctx, denials) := {
	"allowed": count(ok) > 0,
	"reasons": _exchange_reasons(denials, results),
	"legalBasis": _joined_or_null({rows[r].legalBasis | some r in ok}),
	"obligations": obligations,
	"recipients": results,
} if {
	facts := data.veiligdelen.facts
	type := ctx.type
	sender := ctx.sender
	purpose := ctx.purpose
	action := ctx.action
	payload := ctx.payload
	receivers := ctx.receivers

	# The receivers' rows, read once: those with a legal basis for this type from this sender.
	grants := facts.grants
	rows := {r: row |
		some r in receivers
		row := grants[type][r][sender]
		is_string(row.legalBasis)
	}
	granted := object.keys(rows)
	in_step := {r | some r in granted; not rows[r].steps} | {r | some r in granted; ctx.stepName in rows[r].steps}

	# Rule 3: samenloop for the safety assessment, conditions and plan.
	needs_samenloop := {r |
		not ctx.samenloop
		type in facts.samenloop.informationTypes
		some r in receivers
		r in facts.samenloop.recipients
	}

	# Rule 6: the RvdK receives only for cases with a minor.
	needs_minor := {r | not ctx.hasMinor; some r in receivers; r in facts.minorRequired.recipients}

	# The allow rule: every condition is stated positively, so whatever no rule allows stays denied.
	candidates := ((_reachable(ctx) & in_step) - needs_samenloop) - needs_minor
	ok := {r | count(denials) == 0; some r in candidates; purpose in rows[r].purposes}

	# Why the others were refused (computed only when there are any).
	refused := receivers - ok
	receiver_denials := _receiver_denials(ctx, refused, granted, in_step, needs_samenloop, needs_minor)

	# Values are bound in the comprehension bodies (compat.rego: object comprehension values).
	allowed_results := {r: result |
		some r in ok
		row := rows[r]
		basis := row.legalBasis
		template := _allowed_template(object.get(row, "verified", false))
		reasons := {_reason(template, [r, type, sender, purpose, basis])}
		fields := _minimise(action, payload, row.fields)
		result := {"allowed": true, "reasons": reasons, "legalBasis": basis, "purpose": purpose, "fields": fields}
	}
	denied_results := {r: result |
		some r in refused
		reasons := _denial_reasons(denials, receiver_denials, r)
		result := {"allowed": false, "reasons": reasons, "legalBasis": null, "purpose": purpose, "fields": []}
	}
	results := object.union(allowed_results, denied_results)

	# Rules 4 and 5: what the gateway must do with each delivery.
	obligations := [o |
		some r in _sorted(ok)
		some o in [
			_strip(action, r, payload, allowed_results[r].fields),
			{
				"code": "usage_restriction",
				"recipient": r,
				"informationType": type,
				"purpose": purpose,
				"onwardSharing": "new_decision_required",
			},
		]
	]
}

# Rule 2: who may receive. Share: the actor acts on its own and the recipient takes part (core or
# consulted). Request: the actor acts on its own and the holder takes part; the actor receives.
_reachable(ctx) := ctx.receivers & (ctx.parties.core | ctx.parties.consulted) if {
	ctx.action == "share"
	ctx.actor in ctx.parties.core
} else := {ctx.actor} if {
	ctx.action == "request"
	ctx.actor in ctx.parties.core
	ctx.sender in (ctx.parties.core | ctx.parties.consulted)
} else := set()

# Deny rules per receiver: {recipient, reason} pairs.
_receiver_denials(ctx, refused, granted, in_step, needs_samenloop, needs_minor) := set() if {
	count(refused) == 0
} else := ((((participation | no_row) | wrong_step) | purpose) | samenloop) | minor if {
	facts := data.veiligdelen.facts
	agencies := facts.agencies
	grants := facts.grants
	known_types := facts.informationTypes
	known_purposes := facts.purposes
	participation := _share_participation(ctx, refused)
	no_row := {{"recipient": r, "reason": _reason("no_legal_basis", [ctx.sender, ctx.type, r])} |
		known_types[ctx.type]
		agencies[ctx.sender]
		some r in refused
		agencies[r]
		not r in granted
	}
	wrong_step := {{"recipient": r, "reason": _reason("no_legal_basis_step", [ctx.sender, ctx.type, r, ctx.flow, ctx.step])} |
		some r in (granted & refused)
		not r in in_step
	}

	# Rule 4: purpose binding.
	purpose := {{"recipient": r, "reason": _reason("purpose_not_allowed", [ctx.purpose, ctx.type, ctx.sender, r, _list_arg(purposes)])} |
		known_purposes[ctx.purpose]
		some r in (granted & refused)
		purposes := grants[ctx.type][r][ctx.sender].purposes
		not ctx.purpose in purposes
	}
	samenloop := {{"recipient": r, "reason": _reason("samenloop_required", [ctx.type, r])} | some r in (needs_samenloop & refused)}
	minor := {{"recipient": r, "reason": _reason("no_minor_in_case", [r, facts.minorRequired.subjectRole])} |
		some r in (needs_minor & refused)
	}
}

# Rule 2 for a share's recipients: a participant of the step (core, consulted, or conditional
# while samenloop holds).
_share_participation(ctx, refused) := (unknown | awaiting) | outside if {
	agencies := data.veiligdelen.facts.agencies
	ctx.action == "share"
	unknown := {{"recipient": r, "reason": _reason("unknown_agency", [r])} | some r in refused; not agencies[r]}
	awaiting := {{"recipient": r, "reason": _reason("samenloop_participant", [r, ctx.flow, ctx.step])} |
		some r in refused
		r in ctx.parties.awaiting
	}
	outside := {{"recipient": r, "reason": _reason("recipient_not_a_participant", [r, ctx.flow, ctx.step])} |
		ctx.stepKnown
		some r in refused
		agencies[r]
		not r in ctx.parties.participants
	}
} else := set()

# Rule 5: minimisation. Share: the payload fields the row lists, and the identities (bsn:<role>, which
# the gateway adds for the case's subjects) the row lists; request: the row's fields without
# identities (the holder's answer is data about the case, its subjects stay pseudonyms).
_minimise("share", payload, allowed) := _sorted({f | some f in payload; f in allowed})

_minimise("request", _, allowed) := _sorted({f | some f in allowed; not startswith(f, "bsn:")})

_allowed_template(verified) := "allowed_exchange" if {
	verified == true
} else := "allowed_exchange_unverified"

# A refused receiver: what refused the whole exchange and what refused it, or else the default.
_denial_reasons(denials, receiver_denials, r) := reasons if {
	reasons := denials | {d.reason | some d in receiver_denials; d.recipient == r}
	count(reasons) > 0
} else := _denied_by_default

# The top level: what refused the whole decision, or else what each receiver got.
_exchange_reasons(denials, results) := denials if {
	count(denials) > 0
} else := {x | some part in results; some x in part.reasons} if {
	count(results) > 0
} else := _denied_by_default

_strip("share", r, payload, fields) := {
	"code": "strip_fields",
	"recipient": r,
	"fields": fields,
	"removed": _sorted({f | some f in payload; not f in fields}),
}

_strip("request", r, _, fields) := {"code": "strip_fields", "recipient": r, "fields": fields}
