"""The rules ``opa check --strict`` adds, as our own pass over the Rego source (OPA's Go bindings have no
strict option and no AST, and no ``opa`` binary can be installed here).

It reads each module with the tokenizer (`_regolex`), groups brackets, splits rules into head, body and
``else`` branches and expressions, and keeps scopes as OPA's compiler does (``v1/ast/compile.go``
``rewriteLocalVars``): a rule's arguments span its ``else`` chain; each body is a scope whose ``:=``
variables count as used when they appear again in that body, a nested comprehension or ``every``, a
``with`` value, or the head (ref, key, value) of that rule or ``else`` branch; each comprehension and
``every`` body is a scope of its own. Found, with OPA's codes and messages:

- ``assigned var x unused``: a ``:=`` variable (also in a comprehension or ``every`` body) never used
  afterwards; ``_`` is a wildcard and never unused;
- ``declared var x unused``: ``some x``, or an ``every`` key or value, never used (OPA reports it
  without ``--strict``; regopy does not);
- ``unused argument x. (hint: use _ (wildcard variable) instead)``: a function argument no branch uses;
- ``import data.x unused`` (``future.*`` and ``rego.*`` imports are exempt, as in OPA) and
  ``import must not shadow import data.x`` (two imports with one name);
- ``rules must not shadow input``, ``args must not shadow input`` and ``variables must not shadow input``
  (``:=``), and the same for ``data``;
- ``deprecated built-in function calls in expression: any`` (OPA's deprecated built-ins).

One rule OPA does not have, named with our own code ``strict_shadowed_import``: a local ``:=`` or
``some`` variable with the name of one of the module's imports. OPA lets the local win silently, so the
rule no longer reads what the import names.

Not checked: ``var x assigned above`` and ``referenced above`` (OPA's Go compiler finds them; regopy
refuses them too), a local that shadows a rule of the package (Rego allows it and the project's
policies use it for values named after their rule), and template strings (``$"..."``, not used here).
A module the pass cannot read (unbalanced brackets, a stray character) gives no strict finding: the
compiler's parse error names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from gateway.policy._regolex import RegoLexError, Token, statements, tokenize

if TYPE_CHECKING:
    from gateway.policy._check import Finding

COMPILE = "rego_compile_error"
TYPE = "rego_type_error"
OUR_SHADOW = "strict_shadowed_import"

ROOT_DOCUMENTS = frozenset({"input", "data"})
DEPRECATED_BUILTINS = frozenset(
    {
        "any",
        "all",
        "re_match",
        "net.cidr_overlap",
        "set_diff",
        "cast_array",
        "cast_set",
        "cast_string",
        "cast_boolean",
        "cast_null",
        "cast_object",
    }
)
"""OPA's deprecated built-ins (docs "Compiler Strict Mode"; ``capabilities.json`` marks them)."""

_CLOSE = {"(": ")", "[": "]", "{": "}"}


@dataclass
class Group:
    """A bracketed run of nodes: ``open`` is ``(``, ``[`` or ``{``; newlines inside are kept."""

    open: Token
    items: list[Node]

    @property
    def line(self) -> int:
        return self.open.line


Node: TypeAlias = Token | Group


class _Unreadable(Exception):
    """The module's brackets do not balance: leave it to the compiler's parse error."""


def _group(tokens: list[Token]) -> list[Node]:
    stack: list[tuple[Token | None, list[Node]]] = [(None, [])]
    for token in tokens:
        if token.kind == "punct" and token.text in _CLOSE:
            stack.append((token, []))
        elif token.kind == "punct" and token.text in ")]}":
            opener, items = stack.pop()
            if opener is None or _CLOSE[opener.text] != token.text:
                raise _Unreadable
            stack[-1][1].append(Group(opener, items))
        else:
            stack[-1][1].append(token)
    if len(stack) != 1:
        raise _Unreadable
    return stack[0][1]


def _is(node: Node | None, kind: str, text: str | None = None) -> bool:
    return isinstance(node, Token) and node.kind == kind and (text is None or node.text == text)


def _is_group(node: Node | None, open_text: str) -> bool:
    return isinstance(node, Group) and node.open.text == open_text


def _line(node: Node) -> int:
    return node.line


def _split(items: list[Node], *separators: str) -> list[list[Node]]:
    """``items`` cut at top-level ``newline`` tokens and the given punctuation; empty parts dropped."""
    parts: list[list[Node]] = [[]]
    for node in items:
        if _is(node, "newline") or (
            isinstance(node, Token) and node.kind == "punct" and node.text in separators
        ):
            parts.append([])
        else:
            parts[-1].append(node)
    return [p for p in parts if p]


@dataclass
class _Decl:
    name: str
    line: int
    kind: str  # "assigned" (:=), "declared" (bare some, every's key and value), "bound" (some .. in), "arg"
    count: int = 1


@dataclass
class _Scope:
    parent: _Scope | None
    decls: dict[str, _Decl] = field(default_factory=dict)

    def lookup(self, name: str) -> _Decl | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.decls:
                return scope.decls[name]
            scope = scope.parent
        return None


@dataclass(frozen=True)
class _Import:
    name: str
    text: str
    line: int
    root: str


class _ModuleCheck:
    """One module's strict findings; ``run`` walks it once."""

    def __init__(self, file: str, statements: list[list[Node]]) -> None:
        self.file = file
        self.statements = statements
        self.findings: list[tuple[int, str, str]] = []  # (line, code, message)
        self.imports: list[_Import] = []
        self.global_uses: set[str] = set()

    def add(self, line: int, code: str, message: str) -> None:
        self.findings.append((line, code, message))

    def run(self) -> None:
        for statement in self.statements:
            first = statement[0]
            if _is(first, "keyword", "package"):
                continue
            if _is(first, "keyword", "import"):
                self.read_import(statement)
            else:
                self.read_rule(statement)
        self.check_imports()

    # imports -----------------------------------------------------------------------------------------

    def read_import(self, statement: list[Node]) -> None:
        path = statement[1:]
        alias: str | None = None
        for i, node in enumerate(path):
            if _is(node, "keyword", "as") and i + 1 < len(path) and isinstance(path[i + 1], Token):
                alias = path[i + 1].text  # type: ignore[union-attr]
                path = path[:i]
                break
        if not path or not isinstance(path[0], Token):
            return
        text = "import " + "".join(_source_text(n) for n in path) + (f" as {alias}" if alias else "")
        name = alias or _last_segment(path)
        if name is not None:
            self.imports.append(_Import(name, text, statement[0].line, path[0].text))

    def check_imports(self) -> None:
        seen: dict[str, _Import] = {}
        for imp in self.imports:
            if imp.name in seen:
                self.add(imp.line, COMPILE, f"import must not shadow {seen[imp.name].text}")
                continue
            seen[imp.name] = imp
            if imp.root not in {"future", "rego"} and imp.name not in self.global_uses:
                self.add(imp.line, COMPILE, f"{imp.text} unused")

    # rules -------------------------------------------------------------------------------------------

    def read_rule(self, statement: list[Node]) -> None:
        branches: list[list[Node]] = [[]]
        for node in statement:
            if _is(node, "keyword", "else"):
                branches.append([])
            else:
                branches[-1].append(node)
        head = branches[0]
        if head and _is(head[0], "keyword", "default"):
            head = head[1:]
        if not head or not _is(head[0], "ident"):
            return
        rule_line = head[0].line
        name = head[0].text  # type: ignore[union-attr]
        if name in ROOT_DOCUMENTS:
            self.add(rule_line, COMPILE, f"rules must not shadow {name} (use a different rule name)")
        i = 1
        ref: list[Node] = []  # the head ref's bracketed parts: their vars are the head's
        while i < len(head):
            node = head[i]
            if _is(node, "punct", ".") and i + 1 < len(head):
                i += 2
            elif _is_group(node, "["):
                ref.append(node)
                i += 1
            else:
                break
        args_scope = _Scope(None)
        is_function = i < len(head) and _is_group(head[i], "(")
        if is_function:
            self.declare_args(head[i], args_scope)  # type: ignore[arg-type]
            i += 1
        self.read_branch(head[i:], ref, args_scope)
        for branch in branches[1:]:
            self.read_branch(branch, [], args_scope)
        for decl in args_scope.decls.values():
            if decl.count <= 1:
                self.add(
                    rule_line,
                    COMPILE,
                    f"unused argument {decl.name}. (hint: use _ (wildcard variable) instead)",
                )

    def declare_args(self, group: Group, scope: _Scope) -> None:
        for arg in _split(group.items, ","):
            if len(arg) == 1 and _is(arg[0], "ident"):
                token = arg[0]
                assert isinstance(token, Token)
                if token.text in ROOT_DOCUMENTS:
                    msg = f"args must not shadow {token.text} (use a different variable name)"
                    self.add(token.line, COMPILE, msg)
                    continue
            for token in _pattern_vars(arg):
                if token.text in scope.decls:
                    scope.decls[token.text].count += 1  # f(x, x): OPA counts the second as a use
                elif token.text != "_":
                    scope.decls[token.text] = _Decl(token.text, token.line, "arg")

    def read_branch(self, nodes: list[Node], ref: list[Node], args_scope: _Scope) -> None:
        """One head's rest (``:= value``, ``contains term``, ``if`` and a body) in its own scope."""
        scope = _Scope(args_scope)
        head_terms: list[Node] = list(ref)
        body: list[list[Node]] | None = None
        i = 0
        if i < len(nodes) and (
            _is(nodes[i], "op", ":=") or _is(nodes[i], "op", "=") or _is(nodes[i], "keyword", "contains")
        ):
            i += 1
            start = i
            while i < len(nodes) and not _is(nodes[i], "keyword", "if"):
                i += 1
            head_terms += nodes[start:i]
        if i < len(nodes) and _is(nodes[i], "keyword", "if"):
            i += 1
        rest = nodes[i:]
        if len(rest) == 1 and _is_group(rest[0], "{"):
            body = _expressions(rest[0].items)  # type: ignore[union-attr]
        elif rest:
            body = [rest]
        if body is not None:
            self.walk_body(body, scope)
        self.walk_terms(head_terms, scope)
        self.check_scope(scope)

    # bodies and expressions ----------------------------------------------------------------------------

    def walk_body(self, expressions: list[list[Node]], scope: _Scope) -> None:
        for expression in expressions:
            self.walk_expression(expression, scope)

    def walk_expression(self, expression: list[Node], scope: _Scope) -> None:
        main, modifiers = _cut_with(expression)
        for target, value in modifiers:
            self.global_ref_head(target)
            self.walk_terms(value, scope)
        if not main:
            return
        line = _line(main[0])
        if _is(main[0], "keyword", "not"):
            self.walk_terms(main[1:], scope)
        elif _is(main[0], "keyword", "some"):
            self.walk_some(main[1:], scope, line)
        elif _is(main[0], "keyword", "every"):
            self.walk_every(main[1:], scope)
        else:
            at = next((k for k, n in enumerate(main) if _is(n, "op", ":=")), None)
            if at is None:
                self.walk_terms(main, scope)
                return
            lhs, rhs = main[:at], main[at + 1 :]
            self.walk_terms(rhs, scope)
            if len(lhs) == 1 and _is(lhs[0], "ident") and lhs[0].text in ROOT_DOCUMENTS:  # type: ignore[union-attr]
                name = lhs[0].text  # type: ignore[union-attr]
                self.add(line, COMPILE, f"variables must not shadow {name} (use a different variable name)")
                return
            for token in _pattern_vars(lhs):
                self.declare(scope, token, line, "assigned")

    def walk_some(self, nodes: list[Node], scope: _Scope, line: int) -> None:
        at = next((k for k, n in enumerate(nodes) if _is(n, "keyword", "in")), None)
        if at is None:
            for part in _split(nodes, ","):
                for token in _pattern_vars(part):
                    self.declare(scope, token, line, "declared")
            return
        self.walk_terms(nodes[at + 1 :], scope)
        for part in _split(nodes[:at], ","):
            for token in _pattern_vars(part):
                self.declare(scope, token, line, "bound")

    def walk_every(self, nodes: list[Node], scope: _Scope) -> None:
        if not nodes or not _is_group(nodes[-1], "{"):
            self.walk_terms(nodes, scope)
            return
        body = nodes[-1]
        assert isinstance(body, Group)
        at = next((k for k, n in enumerate(nodes) if _is(n, "keyword", "in")), len(nodes) - 1)
        self.walk_terms(nodes[at + 1 : -1], scope)
        inner = _Scope(scope)
        expressions = _expressions(body.items)
        # OPA names an unused key or value at the every body's first expression
        line = _line(expressions[0][0]) if expressions else body.line
        for part in _split(nodes[:at], ","):
            for token in _pattern_vars(part):
                self.declare(inner, token, line, "declared")
        self.walk_body(expressions, inner)
        self.check_scope(inner)

    def declare(self, scope: _Scope, token: Token, line: int, kind: str) -> None:
        if token.text == "_":
            return
        for imp in self.imports:
            if imp.name == token.text:
                msg = f"variable {token.text} shadows {imp.text} (use a different variable name)"
                self.add(line, OUR_SHADOW, msg)
        if token.text not in scope.decls:  # a second := is OPA's "assigned above"; not ours to report
            scope.decls[token.text] = _Decl(token.text, line, kind)

    def check_scope(self, scope: _Scope) -> None:
        for decl in scope.decls.values():
            if decl.count > 1:
                continue
            if decl.kind == "assigned":
                self.add(decl.line, COMPILE, f"assigned var {decl.name} unused")
            elif decl.kind == "declared":
                self.add(decl.line, COMPILE, f"declared var {decl.name} unused")

    # terms -------------------------------------------------------------------------------------------

    def walk_terms(self, nodes: list[Node], scope: _Scope) -> None:
        i = 0
        while i < len(nodes):
            node = nodes[i]
            if isinstance(node, Group):
                self.walk_group(node, scope)
                i += 1
                continue
            if node.kind != "ident" or (i > 0 and _is(nodes[i - 1], "punct", ".")):
                i += 1
                continue
            dotted, j = _dotted(nodes, i)
            if j < len(nodes) and _is_group(nodes[j], "("):  # a call: its name is no variable
                if dotted in DEPRECATED_BUILTINS:
                    self.add(node.line, TYPE, f"deprecated built-in function calls in expression: {dotted}")
                self.global_uses.add(node.text)
            else:
                self.use(node.text, scope)
            i += 1

    def walk_group(self, group: Group, scope: _Scope) -> None:
        bar = next((k for k, n in enumerate(group.items) if _is(n, "op", "|")), None)
        if group.open.text == "(" or bar is None:
            self.walk_terms([n for n in group.items if not _is(n, "newline")], scope)
            return
        inner = _Scope(scope)
        self.walk_body(_expressions(group.items[bar + 1 :]), inner)
        self.walk_terms([n for n in group.items[:bar] if not _is(n, "newline")], inner)
        self.check_scope(inner)

    def use(self, name: str, scope: _Scope) -> None:
        decl = scope.lookup(name)
        if decl is not None:
            decl.count += 1
        else:
            self.global_uses.add(name)

    def global_ref_head(self, target: list[Node]) -> None:
        if target and _is(target[0], "ident"):
            self.global_uses.add(target[0].text)  # type: ignore[union-attr]


_CONTINUED_BY = ("in", "as", "with", "not", "some", "every")


def _expressions(items: list[Node]) -> list[list[Node]]:
    """A body's expressions: lines and ``;``; a line that starts with ``with``, or follows one that ends
    in an operator or ``in``/``as``/``with``/``not``/``some``/``every``, joined to the one before."""
    expressions: list[list[Node]] = []
    for part in _split(items, ";"):
        if expressions:
            last = expressions[-1][-1]
            ends_open = _is(last, "op") or any(_is(last, "keyword", k) for k in _CONTINUED_BY)
            if ends_open or _is(part[0], "keyword", "with"):
                expressions[-1].extend(part)
                continue
        expressions.append(part)
    return expressions


def _cut_with(expression: list[Node]) -> tuple[list[Node], list[tuple[list[Node], list[Node]]]]:
    """An expression and its ``with target as value`` modifiers."""
    cuts = [k for k, n in enumerate(expression) if _is(n, "keyword", "with")]
    if not cuts:
        return expression, []
    modifiers: list[tuple[list[Node], list[Node]]] = []
    for start, end in zip(cuts, [*cuts[1:], len(expression)], strict=True):
        part = expression[start + 1 : end]
        at = next((k for k, n in enumerate(part) if _is(n, "keyword", "as")), len(part))
        modifiers.append((part[:at], part[at + 1 :]))
    return expression[: cuts[0]], modifiers


def _dotted(nodes: list[Node], i: int) -> tuple[str, int]:
    """The dotted name starting at ``nodes[i]`` (``net.cidr_overlap``) and the index after it."""
    parts = [nodes[i].text]  # type: ignore[union-attr]
    j = i + 1
    while j + 1 < len(nodes) and _is(nodes[j], "punct", ".") and isinstance(nodes[j + 1], Token):
        parts.append(nodes[j + 1].text)  # type: ignore[union-attr]
        j += 2
    return ".".join(parts), j


def _pattern_vars(nodes: list[Node]) -> Iterator[Token]:
    """The variables a pattern binds: a name, or the names inside an array or object (values only)."""
    for k, node in enumerate(nodes):
        if isinstance(node, Group):
            if node.open.text == "{":
                for entry in _split(node.items, ","):
                    colon = next((m for m, n in enumerate(entry) if _is(n, "punct", ":")), -1)
                    yield from _pattern_vars(entry[colon + 1 :])
            elif node.open.text == "[" and k == 0:
                for entry in _split(node.items, ","):
                    yield from _pattern_vars(entry)
        elif node.kind == "ident" and k == 0 and len(nodes) == 1:
            yield node


def _source_text(node: Node) -> str:
    if isinstance(node, Token):
        return node.text
    inner = "".join(_source_text(n) for n in node.items if not _is(n, "newline"))
    return node.open.text + inner + _CLOSE[node.open.text]


def _last_segment(path: list[Node]) -> str | None:
    last = path[-1]
    if isinstance(last, Token):
        return last.text if last.kind in ("ident", "keyword") else None
    strings = [n for n in last.items if isinstance(n, Token) and n.kind == "string"]
    return strings[0].value if len(last.items) == 1 and strings else None


def strict_findings(modules: dict[str, str]) -> list[Finding]:
    """Every strict finding of every module, by file and line."""
    from gateway.policy._check import Finding

    findings: list[Finding] = []
    for file, text in sorted(modules.items()):
        try:
            cut = [_group(tokens) for tokens in statements(tokenize(text, newlines=True))]
        except (RegoLexError, _Unreadable):
            continue
        check = _ModuleCheck(file, cut)
        check.run()
        findings += [
            Finding(file, line, code, message) for line, code, message in sorted(set(check.findings))
        ]
    return findings
