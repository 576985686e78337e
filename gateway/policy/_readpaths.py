"""Which parts of the input a policy revision reads, derived from its Rego source when the engine is built.

The decision cache keys on the input's *projection* onto these paths (`ReadPaths.project`), and the
engine evaluates that projection, so two inputs that differ only where the policy never looks (a
client id, a role, whether a track is being opened or closed) are one decision. What the derivation
cannot bound makes it give up: ``ReadPaths.paths`` is None, the key is the whole input, and
``ReadPaths.fallback`` says where and why (the engine logs it and the cache's stats show it).

What counts as a read, over the tokens of every policy module (tests left out, `gateway.policy._regolex`):

- ``input.a.b`` and ``input["a"]["b"]``: the path ``a.b``, prefix-closed (the value there is kept
  whole, arrays and objects under it included); ``input.a[x]`` with a computed index: ``a`` whole;
- ``input`` passed whole to a function of the policy: that function's parameter is read the same way,
  in each of its definitions; assigned whole in a body (``inp := input``): that variable likewise;
- ``object.get(inp, "a", d)`` and ``object.get(inp, ["a", "b"], d)``: the path;
- ``object.get(inp, K, d)`` or ``inp[K]`` where every value ``K`` can take comes from the revision's
  own data or literals (e.g. ``some path in object.keys(data.x.schema[_])`` then ``split(path, ".")``):
  each of those paths, resolved against ``data`` at build time;
- ``is_object(inp)`` and the other type tests on the whole input: nothing (a projection of an object is
  an object).

Anything else the input takes part in as a whole falls back: ``input[x]`` with a key not bounded by
data, a builtin given the whole input (``walk``, ``json.marshal``, ``object.keys``, ``count``, ...),
the input compared, iterated, returned or put in a collection, a parameter pattern that is not a plain
variable, ``import input``, and any ``with`` (it can replace the input or the data the key is bounded
by), and so does a derivation that fails. Falling back, or a larger key, costs only hit rate; a read
the derivation missed would cost a wrong decision (the engine evaluates the projection), which is why
every form it does not know gives up rather than guesses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.policy._regolex import CONTINUES, RegoLexError, Token, statements, tokenize

Path = tuple[str, ...]

TYPE_TESTS = frozenset(
    {"is_object", "is_array", "is_set", "is_string", "is_number", "is_boolean", "is_null", "type_name"}
)
"""Builtins that look only at the type of what they are given: the whole input's type is kept."""

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_MAX_DEPTH = 8
"""How deep value resolution follows variables and function calls before it gives up (falls back)."""


class Unbounded(Exception):
    """The derivation cannot bound what the policy reads: the message says where and why."""


@dataclass(frozen=True)
class ReadPaths:
    """The input paths a revision reads (None: the whole input), and why not, when it falls back."""

    paths: frozenset[Path] | None
    fallback: str | None = None

    @property
    def keys_on(self) -> str:
        """``"read paths"`` or ``"whole input"``: what the decision cache keys on."""
        return "whole input" if self.paths is None else "read paths"

    def dotted(self) -> list[str]:
        """The paths as ``a.b`` strings, sorted (empty when the whole input is the key)."""
        return sorted(".".join(p) for p in self.paths or ())

    def project(self, value: Any) -> Any:
        """``value`` with only what the policy reads: every read path's value, kept whole.

        A path that is absent stays absent; a path that runs into a non-object keeps that value whole
        (the policy cannot look inside it by name). Not an object at all, or no bound: ``value`` itself.
        """
        if self.paths is None or not isinstance(value, Mapping):
            return value
        return _project(value, self._trie)

    @property
    def _trie(self) -> dict[str, Any]:
        trie = self.__dict__.get("_trie_cache")
        if trie is None:
            trie = _build_trie(self.paths or frozenset())
            object.__setattr__(self, "_trie_cache", trie)
        return trie


def _build_trie(paths: frozenset[Path]) -> dict[str, Any]:
    """Nested dicts of path segments; None marks a read leaf (everything under it is kept)."""
    trie: dict[str, Any] = {}
    for path in sorted(paths, key=len):
        node: dict[str, Any] | None = trie
        for i, segment in enumerate(path):
            assert node is not None
            if segment in node and node[segment] is None:
                node = None  # a shorter path already keeps this whole
                break
            if i == len(path) - 1:
                node[segment] = None
            else:
                node = node.setdefault(segment, {})
        del node
    return trie


def _project(value: Mapping[str, Any], trie: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub in trie.items():
        if key not in value:
            continue
        child = value[key]
        out[key] = child if sub is None or not isinstance(child, Mapping) else _project(child, sub)
    return out


def derive(modules: Mapping[str, str], data: Any) -> ReadPaths:
    """The read paths of the policy ``modules`` (tests already left out) with the revision's ``data``."""
    try:
        return ReadPaths(frozenset(_Derivation(modules, data).paths()))
    except Unbounded as e:
        return ReadPaths(None, str(e))
    except Exception as e:  # a form the derivation trips over: the whole input, never a failed load
        return ReadPaths(None, f"the derivation failed ({type(e).__name__}); keyed on the whole input")


# --- the source as statements ----------------------------------------------------------------------


@dataclass
class _Statement:
    """One top-level statement (a rule with its else branches, a package, an import) of one module."""

    file: str
    tokens: list[Token]
    depth: list[int]
    """The bracket depth at each token (an opening bracket counts at the outer depth)."""
    params: list[list[Token]] | None = None
    """A function's head parameters, each as its tokens; None for a rule that is not a function."""
    name: str | None = None
    head_end: int = -1
    """The index of the ``)`` that closes a function's parameters."""

    def where(self, i: int) -> str:
        return f"{self.file}:{self.tokens[i].line}"


def _statements(file: str, text: str) -> list[_Statement]:
    try:
        cut = statements(tokenize(text))
    except RegoLexError as e:
        raise Unbounded(f"{file}: the source does not tokenize ({e})") from e
    out = [_Statement(file, tokens, _depths(tokens)) for tokens in cut]
    for s in out:
        _read_head(s)
    return out


def _depths(tokens: list[Token]) -> list[int]:
    """The bracket depth at each token; a bracket counts at the depth outside it."""
    depths: list[int] = []
    depth = 0
    for t in tokens:
        if t.kind == "punct" and t.text in ")]}":
            depth -= 1
        depths.append(depth)
        if t.kind == "punct" and t.text in _OPENERS:
            depth += 1
    return depths


def _continues(t: Token) -> bool:
    return t.kind == "op" or t.text in CONTINUES


def _read_head(s: _Statement) -> None:
    """Name and parameters of a function definition ``name(p, ...) ...`` (``a.b(...)`` names ``b``)."""
    toks = s.tokens
    if toks[0].kind != "ident":
        return
    i = 0
    while i + 2 < len(toks) and toks[i + 1].text == "." and toks[i + 2].kind == "ident":
        i += 2
    if i + 1 < len(toks) and toks[i + 1].text == "(":
        s.name = toks[i].text
        s.params = _arguments(s, i + 1)[0]
        s.head_end = _closing(s, i + 1)


def _arguments(s: _Statement, open_at: int) -> tuple[list[list[Token]], list[int]]:
    """The arguments of the call or head whose ``(`` is at ``open_at``, and each one's first index."""
    args: list[list[Token]] = []
    starts: list[int] = []
    base = s.depth[open_at] + 1
    current: list[Token] = []
    start = open_at + 1
    i = open_at + 1
    while i < len(s.tokens):
        t, d = s.tokens[i], s.depth[i]
        if d == s.depth[open_at] and t.text == ")":
            break
        if d == base and t.text == ",":
            args.append(current)
            starts.append(start)
            current, start = [], i + 1
        else:
            current.append(t)
        i += 1
    if current or args:
        args.append(current)
        starts.append(start)
    return args, starts


def _closing(s: _Statement, open_at: int) -> int:
    """The index of the bracket that closes the one at ``open_at``."""
    d = s.depth[open_at]
    for i in range(open_at + 1, len(s.tokens)):
        if s.depth[i] == d and s.tokens[i].text == _OPENERS[s.tokens[open_at].text]:
            return i
    raise Unbounded(f"{s.where(open_at)}: unbalanced brackets")


# --- the derivation --------------------------------------------------------------------------------


class _Derivation:
    def __init__(self, modules: Mapping[str, str], data: Any) -> None:
        self.data = data
        self.statements = [s for f, text in sorted(modules.items()) for s in _statements(f, text)]
        self.functions: dict[tuple[str, int], list[_Statement]] = {}
        for s in self.statements:
            if s.name is not None and s.params is not None:
                self.functions.setdefault((s.name, len(s.params)), []).append(s)
        self.packages = {
            tuple(t.text for t in st.tokens[1:] if t.kind == "ident")
            for st in self.statements
            if st.tokens[0].text == "package"
        }
        self.read: set[Path] = set()
        self._seen: set[tuple[int, str]] = set()

    def paths(self) -> set[Path]:
        for s in self.statements:
            for i, t in enumerate(s.tokens):
                if t.text == "with" and t.kind == "keyword":
                    raise Unbounded(f"{s.where(i)}: `with` can replace the input or the data it is read by")
            if s.tokens[0].text == "import" and len(s.tokens) > 1 and s.tokens[1].text == "input":
                raise Unbounded(f"{s.where(0)}: `import input` names the input under another name")
        for s in self.statements:
            if s.tokens[0].text not in {"package", "import"}:
                self._alias(s, "input")
        return self.read

    def _alias(self, s: _Statement, name: str, bound_at: int = -1) -> None:
        """Record every read of ``name`` (the input, or a variable holding it whole) in ``s``; the
        variable's own ``name := input`` is at ``bound_at``."""
        key = (id(s), name)
        if key in self._seen:
            return
        self._seen.add(key)
        for i, t in enumerate(s.tokens):
            if t.text != name or t.kind != "ident" or (i > 0 and s.tokens[i - 1].text == "."):
                continue
            if (name != "input" and i <= s.head_end) or i == bound_at:
                continue  # the parameter itself, or the assignment that made the variable
            self._occurrence(s, i, name)

    def _occurrence(self, s: _Statement, i: int, name: str) -> None:
        toks = s.tokens
        what = "the input" if name == "input" else f"`{name}` (the whole input)"
        path, j, computed = _chain(s, i + 1)
        if path:
            self.read.add(path)  # a computed index after it reads elements of this path: kept whole
            return
        if computed is not None:
            self._bounded(s, computed, f"{s.where(i)}: {what} indexed by a key the data does not bound")
            return
        prev = toks[i - 1] if i > 0 else None
        nxt = toks[j] if j < len(toks) else None
        ends = nxt is None or nxt.line > toks[i].end_line or nxt.text in {"}", ";"}
        if (
            prev is not None
            and prev.text == ":="
            and i >= 2
            and toks[i - 2].kind == "ident"
            and (i < 3 or toks[i - 3].text not in {".", "]"})
            and s.depth[i] > 0
            and ends
        ):
            self._alias(s, toks[i - 2].text, i - 2)  # ``x := input`` in a body: x is read the same way
            return
        call = _enclosing_call(s, i)
        if call is None:
            raise Unbounded(f"{s.where(i)}: {what} is used whole")
        fn, position, args, starts = call
        if fn == "object.get" and position == 0 and len(args) == 3:
            self._object_get(s, args[1], starts[1], what)
            return
        if fn in TYPE_TESTS and position == 0 and len(args) == 1:
            return
        short = fn.rsplit(".", 1)[-1]
        definitions = self.functions.get((short, len(args)))
        if definitions is None or ("." in fn and not fn.startswith("data.")):
            raise Unbounded(f"{s.where(i)}: {what} is passed whole to {fn}")
        for d in definitions:
            assert d.params is not None
            param = d.params[position]
            if len(param) == 1 and param[0].text == "_":
                continue
            if len(param) != 1 or param[0].kind != "ident":
                raise Unbounded(f"{d.where(0)}: {what} is matched against a pattern in {short}'s head")
            self._alias(d, param[0].text)

    def _object_get(self, s: _Statement, key: list[Token], at: int, what: str) -> None:
        literal = _literal_path(key)
        if literal is not None:
            if not literal:
                raise Unbounded(f"{s.where(at)}: object.get on {what} with an empty path returns it whole")
            self.read.add(literal)
            return
        self._bounded(
            s, (at, at + len(key)), f"{s.where(at)}: object.get on {what} with a key the data does not bound"
        )

    def _bounded(self, s: _Statement, span: tuple[int, int], why: str) -> None:
        """A computed key: every value it can take, from the revision's data, is a read path."""
        try:
            values = self._values(s, span, 0)
        except Unbounded as e:
            raise Unbounded(f"{why} ({e})") from e
        for v in values:
            if isinstance(v, str):
                self.read.add((v,))
            elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
                self.read.add(tuple(v))
            else:
                raise Unbounded(why)

    # --- values from data -------------------------------------------------------------------------

    def _values(self, s: _Statement, span: tuple[int, int], depth: int) -> list[Any]:
        """Every value the expression ``s.tokens[span]`` can take (from data and literals), or Unbounded."""
        if depth > _MAX_DEPTH:
            raise Unbounded("too deep")
        a, b = span
        toks = s.tokens[a:b]
        if not toks:
            raise Unbounded("empty")
        literal = _literal(toks)
        if literal is not _NONE:
            return [literal]
        # split(V, "sep")
        if (
            len(toks) == 6
            and toks[0].text == "split"
            and toks[1].text == "("
            and toks[3].text == ","
            and toks[4].kind == "string"
            and toks[5].text == ")"
        ):
            sep = toks[4].value
            out = []
            for v in self._values(s, (a + 2, a + 3), depth + 1):
                if not isinstance(v, str):
                    raise Unbounded("split of a non-string")
                out.append(v.split(sep))
            return out
        # object.keys(E)
        if (
            len(toks) >= 5
            and [t.text for t in toks[:4]] == ["object", ".", "keys", "("]
            and toks[-1].text == ")"
        ):
            if _closing(s, a + 3) != b - 1:
                raise Unbounded("not one call")
            out = []
            for v in self._values(s, (a + 4, b - 1), depth + 1):
                if not isinstance(v, Mapping):
                    raise Unbounded("keys of a non-object")
                out.append(sorted(v))
            return out
        # a call of a function of the policy: every value its definitions can return
        if toks[0].kind == "ident" and len(toks) >= 3 and toks[1].text == "(" and _closing(s, a + 1) == b - 1:
            args, _ = _arguments(s, a + 1)
            definitions = self.functions.get((toks[0].text, len(args)))
            if definitions is None:
                raise Unbounded(f"unknown function {toks[0].text}")
            return [v for d in definitions for v in self._returns(d, depth + 1)]
        # a reference: data.a.b[x], or a variable bound in this statement, then .a["b"][x]
        if toks[0].kind == "ident":
            j = a + 1
            rooted = toks[0].text == "data"
            roots = [self.data] if rooted else self._variable(s, toks[0].text, depth + 1)
            # Below data, a path a package's rules are under is a rule's value, not the data's.
            under: list[str] | None = [] if rooted else None
            while j < b:
                t = s.tokens[j]
                if t.text == "." and j + 1 < b and s.tokens[j + 1].kind in {"ident", "keyword"}:
                    roots = _member(roots, s.tokens[j + 1].text)
                    under = None if under is None else [*under, s.tokens[j + 1].text]
                    j += 2
                elif t.text == "[":
                    close = _closing(s, j)
                    inner = s.tokens[j + 1 : close]
                    if len(inner) == 1 and inner[0].kind == "string":
                        roots = _member(roots, inner[0].value)
                        under = None if under is None else [*under, inner[0].value]
                    else:  # any key: every member (more than the index can pick, never less)
                        self._not_rules(under, wildcard=True)
                        roots = [x for r in roots for x in _members(r)]
                        under = None
                    j = close + 1
                else:
                    raise Unbounded("not a reference")
            self._not_rules(under, wildcard=False)
            return roots
        raise Unbounded("an expression the derivation does not follow")

    def _not_rules(self, under: list[str] | None, *, wildcard: bool) -> None:
        """Unbounded when the data path ``under`` reaches (or, past a wildcard, may reach) a package."""
        if under is None:
            return
        n = len(under)
        for package in self.packages:
            if package[:n] == tuple(under) or (not wildcard and tuple(under[: len(package)]) == package):
                raise Unbounded(f"data.{'.'.join(under)} holds the rules of package {'.'.join(package)}")

    def _variable(self, s: _Statement, name: str, depth: int) -> list[Any]:
        """Every value ``name`` can hold in ``s``, from its one ``:=`` or ``some name in`` binding.

        Only a variable bound once is followed, and only when every index it is used in (``x[name]``)
        is in that binding's scope (its brackets, or its else branch; OPA refuses a second binding in the
        same scope, ``var assigned above``): an index like
        ``data.fields[k]`` with ``k`` not bound there binds it too, over every key, and a binding in
        another scope would then bound the wrong ``k``.
        """
        if s.params is not None and any(len(p) == 1 and p[0].text == name for p in s.params):
            raise Unbounded(f"{name} is a parameter")
        out: list[Any] = []
        sites: list[int] = []
        uses: list[int] = []
        toks = s.tokens
        for i, t in enumerate(toks):
            if t.text != name or t.kind != "ident" or (i > 0 and toks[i - 1].text == "."):
                continue
            prev = toks[i - 1].text if i > 0 else ""
            nxt = toks[i + 1].text if i + 1 < len(toks) else ""
            if nxt == ":=" and prev != "[":
                sites.append(i)
                out.extend(self._values(s, _expression(s, i + 2), depth))
            elif prev in {"some", "every"} and nxt == "in":
                sites.append(i)
                out.extend(m for v in self._values(s, _expression(s, i + 2), depth) for m in _members(v))
            elif (
                (prev in {"some", "every", ","} and nxt in {",", "in"})
                or prev == "some"
                or "=" in {prev, nxt}
            ):
                raise Unbounded(f"{name} is bound in a way the derivation does not follow")
            elif prev == "[":
                uses.append(i)  # an index: it binds the variable if it is not bound yet
        if not sites:
            raise Unbounded(f"{name} is not bound in its rule")
        if len(sites) > 1:
            raise Unbounded(f"{name} is bound more than once in its rule")
        scope = _scope(s, sites[0])
        if any(not (scope[0] < u < scope[1]) for u in uses):
            raise Unbounded(f"{name} indexes a reference outside the scope of its binding")
        return out

    def _returns(self, d: _Statement, depth: int) -> list[Any]:
        """Every value a function definition (and its else branches) can return."""
        out: list[Any] = []
        branch = d.head_end + 1  # the head, then each ``else``: ``:= value`` or, without one, true
        while branch <= len(d.tokens):
            if branch < len(d.tokens) and d.tokens[branch].text == ":=":
                span = _expression(d, branch + 1, stop={"if", "else"})
                out.extend(self._values(d, span, depth))
            else:
                out.append(True)
            nxt = next(
                (
                    k
                    for k in range(branch + 1, len(d.tokens))
                    if d.depth[k] == 0 and d.tokens[k].text == "else"
                ),
                None,
            )
            if nxt is None:
                break
            branch = nxt + 1
        return out


_NONE = object()


def _literal(toks: list[Token]) -> Any:
    """A literal: a string, number, true/false/null, ``{}``, ``[]`` or an array of strings; else _NONE."""
    if len(toks) == 1:
        t = toks[0]
        if t.kind in {"string", "raw_string"}:
            return t.value
        if t.text in {"true", "false", "null"}:
            return {"true": True, "false": False, "null": None}[t.text]
        return _NONE
    if [t.text for t in toks] in (["{", "}"], ["[", "]"]):
        return {} if toks[0].text == "{" else []
    path = _literal_path(toks)
    return list(path) if path is not None else _NONE


def _literal_path(toks: list[Token]) -> Path | None:
    """``"a"`` or ``["a", "b"]`` as a path; None for anything else."""
    if len(toks) == 1 and toks[0].kind in {"string", "raw_string"}:
        return (toks[0].value,)
    if len(toks) >= 2 and toks[0].text == "[" and toks[-1].text == "]":
        inner = toks[1:-1]
        items = inner[0::2]
        commas = inner[1::2]
        if all(t.kind in {"string", "raw_string"} for t in items) and all(c.text == "," for c in commas):
            if len(inner) % 2 == 1 or not inner:
                return tuple(t.value for t in items)
    return None


def _member(roots: list[Any], key: str) -> list[Any]:
    return [r[key] for r in roots if isinstance(r, Mapping) and key in r]


def _members(v: Any) -> Iterator[Any]:
    if isinstance(v, Mapping):
        yield from v.values()
    elif isinstance(v, list):
        yield from v


def _chain(s: _Statement, j: int) -> tuple[Path, int, tuple[int, int] | None]:
    """The constant path after a reference's head at ``j``: ``.a["b"]``; stops at a computed index.

    Returns the path, the index after it, and the span of a computed index right after it (if any).
    """
    toks = s.tokens
    path: list[str] = []
    while j < len(toks):
        t = toks[j]
        if t.text == "." and j + 1 < len(toks) and toks[j + 1].kind in {"ident", "keyword"}:
            path.append(toks[j + 1].text)
            j += 2
        elif t.text == "[":
            close = _closing(s, j)
            inner = toks[j + 1 : close]
            if len(inner) == 1 and inner[0].kind in {"string", "raw_string"}:
                path.append(inner[0].value)
                j = close + 1
            else:
                return tuple(path), j, (j + 1, close)
        else:
            break
    return tuple(path), j, None


def _expression(s: _Statement, start: int, stop: frozenset[str] | set[str] = frozenset()) -> tuple[int, int]:
    """The span of the expression starting at ``start``: to the end of its line at its own depth (or a
    ``;``, a closing bracket, or a word of ``stop`` at that depth)."""
    toks = s.tokens
    if start >= len(toks):
        raise Unbounded("no expression")
    base = s.depth[start]
    end = start
    for i in range(start, len(toks)):
        t, d = toks[i], s.depth[i]
        if d < base or (d == base and (t.text in {";", ","} or t.text in stop)):
            break
        if i > start and d == base and t.line > toks[i - 1].end_line and not _continues(toks[i - 1]):
            break
        if d == base and t.text == "|":
            break
        end = i + 1
    return start, end


def _enclosing_call(s: _Statement, i: int) -> tuple[str, int, list[list[Token]], list[int]] | None:
    """When token ``i`` is by itself an argument of a call ``f(...)``: f's dotted name, which argument,
    all arguments and where each starts."""
    toks = s.tokens
    d = s.depth[i]
    open_at = next(
        (k for k in range(i - 1, -1, -1) if s.depth[k] == d - 1 and toks[k].text in _OPENERS), None
    )
    if open_at is None or toks[open_at].text != "(" or open_at == 0 or toks[open_at - 1].kind != "ident":
        return None
    k = open_at - 1
    names = [toks[k].text]
    while k >= 2 and toks[k - 1].text == "." and toks[k - 2].kind == "ident":
        k -= 2
        names.insert(0, toks[k].text)
    if k > 0 and toks[k - 1].text == ".":
        return None
    args, starts = _arguments(s, open_at)
    for position, (arg, start) in enumerate(zip(args, starts, strict=True)):
        if start == i and len(arg) == 1:
            return ".".join(names), position, args, starts
    return None


def _scope(s: _Statement, i: int) -> tuple[int, int]:
    """The token span of the scope ``s.tokens[i]`` is in: its innermost brackets, or else its branch
    (the rule's head and body up to the next ``else`` at the top level)."""
    level = s.depth[i]
    start = next((j for j in range(i - 1, -1, -1) if s.depth[j] < level), -1)
    end = next((k for k in range(i + 1, len(s.tokens)) if s.depth[k] < level), len(s.tokens))
    if level == 0:
        start = max((j for j in range(i) if s.tokens[j].text == "else"), default=-1)
        end = next(
            (k for k in range(i + 1, len(s.tokens)) if s.tokens[k].text == "else" and s.depth[k] == 0), end
        )
    return start, end
