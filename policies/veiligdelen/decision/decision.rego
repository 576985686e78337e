# METADATA
# title: Veilig Delen exchange and case decisions
# description: >-
#   Decides whether information may move between the agencies of a domestic-violence or
#   child-abuse case (share, request) and whether a case may change (open, read, transition,
#   track). Deny by default; every allow names its legal basis and purpose. The facts (who takes
#   part in which step, which purposes a step serves, legal bases, purposes, field lists) live in
#   data.veiligdelen.facts.
#
#   One package, a file per concern: this file (the entrypoint and the shape of a decision),
#   context.rego (what the input says, and what refuses it as input), exchange.rego (share and
#   request, rules 1-6), case.rego (open, read, transition, track, rule 7), reasons.rego (how a
#   reason is written). What the engines force on the way it is written is in compat.rego, each
#   with the bug it works around. No two files use each other (OPA compiles each module as it is
#   uploaded): this file uses context, exchange and case; they use reasons and compat.
#
#   Reasons are {template, args} (reasons.rego); the policy does not write sentences or order
#   reasons: the gateway renders each template in English and Dutch and orders the reasons by
#   the rank of their code (docs/policies.md).
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
#   A function of its input, so tests call decide({...}) (compat.rego says why not `with`).
decide(inp) := decision if {
	ctx := _context(inp)
	decision := _decision(ctx, _denials(ctx))
}

_decision(ctx, denials) := _exchange_decision(ctx, denials) if {
	ctx.exchange
} else := _case_decision(ctx, denials)

# METADATA
# title: Denials
# description: >-
#   What refuses the decision as a whole: missing or unknown input (rule 8), an actor or holder
#   outside the step (rule 2), a purpose the step does not serve or that the shared data's origin
#   does not allow (rule 4), a case change the actor may not make or the process does not allow
#   (rule 7).
_denials(ctx) := (_input_denials(ctx) | _exchange_denials(ctx)) | _case_denials(ctx)
