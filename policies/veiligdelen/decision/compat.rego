# METADATA
# title: Engine compatibility
# description: >-
#   Every place where the way the policy is written is forced by an engine rather than by the
#   rules: regopy 1.5.2 (rego-cpp, the embedded engine) differs from OPA in a few ways, and the
#   policy must decide alike in both (tests/policy/test_golden.py, test_opa_parity.py). The
#   helpers live here; the coding patterns are listed so a reader knows why the other files look
#   the way they do.
#
#   Patterns (used in the other files, not helpers):
#   - `with` recompiles every rule a tested rule depends on, once per reference (exponential in
#     shared rules), and `with input as {...}` crashes the process: so the decision is a function,
#     decide(inp), and tests call it with a literal input (the test runner refuses `with input as`).
#   - Calls are not cached within a query: each value is computed once and passed on (the
#     context), never recomputed by calling the function again.
#   - A call in an object comprehension's value that takes variables of the enclosing function is
#     miscomputed: bind the value in the comprehension's body (exchange.rego, allowed_results).
#   - OPA raises where regopy is undefined (concat over a non-string): malformed input is filtered
#     before any rule reads it (context.rego, _valid_origins).
#   - A reference into data indexed by a variable, data.veiligdelen.facts.grants[type] (also
#     through facts := data.veiligdelen.facts, then facts.grants[type]), costs time in proportion
#     to the size of the collection in regopy: 0.9 ms for grants, 0.06 ms for inputSchema, against
#     some 0.01 ms once the collection is in a variable. So the collection is bound first, by a
#     constant path, and the variable is indexed: grants := data.veiligdelen.facts.grants, then
#     grants[type][r][sender]. A constant path (facts.minorRequired.recipients) costs nothing.
#   - Each ctx.x costs some 4 us (every operation costs 3-6 us): a rule reads a field it uses in a
#     comprehension or more than once into a local first (purpose := ctx.purpose), and prefers set
#     algebra (receivers & core) to a comprehension, which costs several operations per element.
#   - An object literal costs with the square of its keys (5 keys 11 us, 10 keys 40 us, 25 keys
#     300 us): the context groups what few rules read (ctx.parties, ctx.change).
#
#   Rendering and ordering reasons happen in the gateway, so the old workarounds for sprintf
#   (regopy quotes some string arguments) and for ordering by rank (regopy compares numbers by
#   their JSON text) are gone.
package veiligdelen.decision

# sort() of a set returns a set in regopy 1.5.2 (an array in OPA): sort an array so both agree.
_sorted(s) := sort([x | some x in s])

# Legal bases joined in one order in both engines: regopy compares strings by their JSON text, so
# it orders "Wmo e en f" before "Wmo e" (the space sorts before the closing quote) and OPA after.
# With "~" appended no basis is a prefix of another, and both engines agree.
_joined_or_null(bases) := concat(" | ", [trim_suffix(b, "~") | some b in sort([concat("", [x, "~"]) | some x in bases])]) if {
	count(bases) > 0
} else := null
