# METADATA
# title: Reasons
# description: >-
#   How the policy says why: a reason is {template, args}, a key of
#   data.veiligdelen.facts.messages and the values of its %v placeholders, in order. An argument
#   is a string; a list is joined first (_list_arg). The gateway writes the sentence in English
#   (message) and Dutch (messageNl), reports the template's code, and orders a decision's reasons
#   by the rank of their code in facts.reasonCodes, then by message. It refuses to load a policy
#   whose data.json lacks a language for a template, or whose _reason calls give a template the
#   wrong number of arguments.
package veiligdelen.decision

# A reason: the message template of data.json that says it, and the values of its placeholders.
_reason(template, args) := {"template": template, "args": args}

_denied_by_default := {_reason("denied_by_default", [])}

# A list as one argument: its members sorted and joined with ", " (the order both engines agree on).
_list_arg(xs) := concat(", ", _sorted(xs))
