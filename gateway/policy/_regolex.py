"""A Rego tokenizer: the lexical layer under the strict pass (`_strict.py`) and any tool that reads Rego.

    >>> [(t.kind, t.text) for t in tokenize('x := a["b"] # note')]
    [('ident', 'x'), ('op', ':='), ('ident', 'a'), ('punct', '['), ('string', '"b"'), ('punct', ']')]

It follows OPA's scanner (``v1/ast/internal/scanner``): comments (``#`` to the end of the line) are
skipped; strings keep their quotes and escapes in ``text`` (``Token.value`` decodes them); raw strings
(backticks) may span lines and have no escapes; numbers are unsigned (``-1`` is ``op`` then
``number``); ``true``, ``false`` and ``null`` are keywords. Lines and columns are 1-based, columns count
characters. Newlines separate Rego expressions, so ``tokenize(..., newlines=True)`` keeps them as
``newline`` tokens; by default they are dropped (a token's ``line`` still tells where it is).

``statements`` cuts a module's tokens into its top-level statements (package, imports, rules with their
``else`` branches): the one place that decides where a Rego statement ends, for the strict pass and the
read-path derivation (`_readpaths.py`) alike.

API (stable: add to it, do not change it): ``tokenize``, ``statements``, ``Token``, ``RegoLexError``,
``KEYWORDS``, ``CONTINUES`` and the kind names below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Literal

TokenKind = Literal["ident", "keyword", "string", "raw_string", "number", "op", "punct", "newline"]

KEYWORDS: Final = frozenset(
    {
        "package",
        "import",
        "as",
        "default",
        "else",
        "not",
        "some",
        "with",
        "if",
        "contains",
        "in",
        "every",
        "true",
        "false",
        "null",
    }
)
"""Rego v1's reserved words (``if``, ``contains``, ``in`` and ``every`` included) and its literals."""

OPERATORS: Final = (":=", "==", "!=", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "%", "&", "|")
"""Longest first where one is a prefix of another: ``:=`` before ``:``, ``==`` before ``=``."""

PUNCTUATION: Final = frozenset("()[]{},;:.")


@dataclass(frozen=True)
class Token:
    """One token: its kind, its exact source text, and where it starts (1-based line and column)."""

    kind: TokenKind
    text: str
    line: int
    col: int

    @property
    def value(self) -> str:
        """A string's or raw string's content (escapes decoded); any other token's text."""
        if self.kind == "string":
            decoded: str = json.loads(self.text)  # Rego strings are JSON strings
            return decoded
        if self.kind == "raw_string":
            return self.text[1:-1]
        return self.text

    @property
    def end_line(self) -> int:
        """The line the token ends on (a raw string may span lines)."""
        return self.line + self.text.count("\n")


class RegoLexError(ValueError):
    """Text that is no Rego token (an unterminated string, a stray character), or brackets that do not
    match (`statements`). ``str()`` is one line."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(f"{line}:{col}: {message}")
        self.line = line
        self.col = col
        self.message = message


def _is_ident_start(c: str) -> bool:
    return c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z")


def _is_ident_part(c: str) -> bool:
    return _is_ident_start(c) or ("0" <= c <= "9")


def tokenize(text: str, *, newlines: bool = False) -> list[Token]:
    """Every token of ``text`` in order; comments skipped, ``newline`` tokens only if ``newlines``."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    line, line_start = 1, 0

    def add(kind: TokenKind, start: int, end: int, at_line: int, at_col: int) -> None:
        tokens.append(Token(kind, text[start:end], at_line, at_col))

    while i < n:
        c = text[i]
        col = i - line_start + 1
        if c == "\n":
            if newlines:
                add("newline", i, i + 1, line, col)
            i += 1
            line, line_start = line + 1, i
        elif c in " \t\r\f":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif _is_ident_start(c):
            j = i + 1
            while j < n and _is_ident_part(text[j]):
                j += 1
            add("keyword" if text[i:j] in KEYWORDS else "ident", i, j, line, col)
            i = j
        elif "0" <= c <= "9":
            j = _scan_number(text, i)
            add("number", i, j, line, col)
            i = j
        elif c == '"':
            j = i + 1
            while True:
                if j >= n or text[j] == "\n":
                    raise RegoLexError(line, col, "unterminated string")
                if text[j] == "\\":
                    j += 2
                    continue
                if text[j] == '"':
                    break
                j += 1
            add("string", i, j + 1, line, col)
            i = j + 1
        elif c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise RegoLexError(line, col, "unterminated raw string")
            add("raw_string", i, j + 1, line, col)
            for k in range(i, j):  # the next token's line and column count the raw string's newlines
                if text[k] == "\n":
                    line, line_start = line + 1, k + 1
            i = j + 1
        else:
            op = next((o for o in OPERATORS if text.startswith(o, i)), None)
            if op is not None:
                add("op", i, i + len(op), line, col)
                i += len(op)
            elif c in PUNCTUATION:
                add("punct", i, i + 1, line, col)
                i += 1
            else:
                raise RegoLexError(line, col, f"illegal character {c!r}")
    return tokens


CONTINUES: Final = frozenset(
    {",", "if", "else", ":=", "=", "contains", "in", "not", "some", "every", "with", "as"}
)
"""Tokens that, ending a line, continue the statement on the next line (so does any operator)."""

_CLOSE: Final = {"(": ")", "[": "]", "{": "}"}


def statements(tokens: list[Token]) -> list[list[Token]]:
    """``tokens`` (of one module) cut into its top-level statements, in order.

    A statement ends with its line, outside brackets, unless the next line starts with ``else`` or
    ``with``, or the line ends in an operator or one of `CONTINUES`. A ``package`` or ``import`` line
    always ends with its line (``import future.keywords.in`` ends in a keyword that would otherwise
    continue it into the next rule). ``newline`` tokens (``tokenize(..., newlines=True)``) are kept
    inside brackets, where they separate expressions, and dropped between them. Raises `RegoLexError`
    for brackets that do not match.
    """
    out: list[list[Token]] = []
    current: list[Token] = []
    opened: list[Token] = []
    last: Token | None = None
    for t in tokens:
        if t.kind == "newline":
            if opened:
                current.append(t)
            continue
        if not opened and last is not None and t.line > last.end_line:
            header = current[0].text in ("package", "import")
            goes_on = not header and (
                (t.kind == "keyword" and t.text in ("else", "with"))
                or last.kind == "op"
                or last.text in CONTINUES
            )
            if not goes_on:
                out.append(current)
                current = []
        if t.kind == "punct" and t.text in ")]}":
            if not opened or _CLOSE[opened.pop().text] != t.text:
                raise RegoLexError(t.line, t.col, f"unmatched {t.text!r}")
        current.append(t)
        last = t
        if t.kind == "punct" and t.text in _CLOSE:
            opened.append(t)
    if opened:
        raise RegoLexError(opened[-1].line, opened[-1].col, f"unclosed {opened[-1].text!r}")
    if current:
        out.append(current)
    return out


def _scan_number(text: str, i: int) -> int:
    """The end of the number starting at ``i``: digits, a fraction only if a digit follows the dot."""
    n = len(text)
    j = i
    while j < n and text[j].isdigit():
        j += 1
    if j + 1 < n and text[j] == "." and text[j + 1].isdigit():
        j += 1
        while j < n and text[j].isdigit():
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k].isdigit():
            j = k
            while j < n and text[j].isdigit():
                j += 1
    return j
