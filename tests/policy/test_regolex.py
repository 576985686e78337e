"""gateway/policy/_regolex.py: Rego's tokens, with lines and columns, strings and comments kept apart."""

from __future__ import annotations

import pytest

from gateway.policy import read_policy
from gateway.policy._regolex import RegoLexError, Token, statements, tokenize
from gateway.settings import REPO_ROOT


def kinds(text: str) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in tokenize(text)]


def test_a_rule_with_every_kind_of_token() -> None:
    text = (
        'allow if {\n\tsome x in input.a[0]\n\tx.n >= 1.5e3 # a comment := 1\n\ty := `raw\n"s"` != "q\\"r"\n}'
    )
    assert kinds(text) == [
        ("ident", "allow"),
        ("keyword", "if"),
        ("punct", "{"),
        ("keyword", "some"),
        ("ident", "x"),
        ("keyword", "in"),
        ("ident", "input"),
        ("punct", "."),
        ("ident", "a"),
        ("punct", "["),
        ("number", "0"),
        ("punct", "]"),
        ("ident", "x"),
        ("punct", "."),
        ("ident", "n"),
        ("op", ">="),
        ("number", "1.5e3"),
        ("ident", "y"),
        ("op", ":="),
        ("raw_string", '`raw\n"s"`'),
        ("op", "!="),
        ("string", '"q\\"r"'),
        ("punct", "}"),
    ]


def test_lines_and_columns_are_one_based_and_count_a_raw_strings_newlines() -> None:
    tokens = tokenize('a := `x\ny`\n  b := "c"')
    assert [(t.text, t.line, t.col) for t in tokens] == [
        ("a", 1, 1),
        (":=", 1, 3),
        ("`x\ny`", 1, 6),
        ("b", 3, 3),
        (":=", 3, 5),
        ('"c"', 3, 8),
    ]
    assert tokens[2].end_line == 2


def test_what_looks_like_code_inside_strings_and_comments_is_not_code() -> None:
    tokens = tokenize('msg := "x := 1 # not a comment" # y := 2\nz := `# {`')
    assert [t.kind for t in tokens] == ["ident", "op", "string", "ident", "op", "raw_string"]
    assert tokens[2].value == "x := 1 # not a comment" and tokens[5].value == "# {"


def test_values_decode_escapes() -> None:
    (string,) = tokenize('"tab\\t\\u00e9\\\\"')
    assert string.value == "tab\té\\"
    assert Token("ident", "x", 1, 1).value == "x"


def test_numbers_stop_before_a_ref_dot_and_minus_is_an_operator() -> None:
    assert kinds("x[0].y - -1") == [
        ("ident", "x"),
        ("punct", "["),
        ("number", "0"),
        ("punct", "]"),
        ("punct", "."),
        ("ident", "y"),
        ("op", "-"),
        ("op", "-"),
        ("number", "1"),
    ]


def test_newline_tokens_on_request() -> None:
    assert [t.kind for t in tokenize("a\n\nb", newlines=True)] == ["ident", "newline", "newline", "ident"]
    assert [t.kind for t in tokenize("a # c\nb", newlines=True)] == ["ident", "newline", "ident"]


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ('x := "open', 1, 6, "unterminated string"),
        ('x := "a\nb"', 1, 6, "unterminated string"),
        ("\n  y := `open", 2, 8, "unterminated raw string"),
        ("x := 1 ^ 2", 1, 8, "illegal character '^'"),
    ],
)
def test_what_is_no_token_is_refused_by_line_and_column(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(RegoLexError) as e:
        tokenize(text)
    assert (e.value.line, e.value.col, e.value.message) == (line, col, message)
    assert str(e.value) == f"{line}:{col}: {message}"


def test_every_module_of_the_repositorys_policy_tokenizes() -> None:
    source = read_policy(REPO_ROOT / "policies")
    for name, text in source.modules.items():
        tokens = tokenize(text)
        assert tokens[0].text == "package", name
        assert sum(t.text == "{" for t in tokens) == sum(t.text == "}" for t in tokens), name


def firsts(text: str, *, newlines: bool = False) -> list[str]:
    """Each statement's source, its tokens joined by spaces."""
    return [" ".join(t.text for t in s) for s in statements(tokenize(text, newlines=newlines))]


def test_statements_end_with_their_line_unless_rego_continues_them() -> None:
    text = (
        "package p\n"
        "import future.keywords.in\n"
        "a := 1\n"
        "b := x if {\n  x := 2\n} else := 3\n"
        "c := 1 +\n  2\n"
        "d := f(1)\n  with input as {}\n"
        "e contains x if\n  some x in [1]\n"
        "g := 1"
    )
    assert firsts(text) == [
        "package p",
        "import future . keywords . in",
        "a := 1",
        "b := x if { x := 2 } else := 3",
        "c := 1 + 2",
        "d := f ( 1 ) with input as { }",
        "e contains x if some x in [ 1 ]",
        "g := 1",
    ]


def test_an_import_never_continues_into_the_next_line() -> None:
    for keyword in ("in", "if", "contains", "every"):
        text = f"package p\nimport future.keywords.{keyword}\nallow := true\n"
        assert firsts(text)[-1] == "allow := true", keyword


def test_newlines_stay_inside_brackets_and_go_between_statements() -> None:
    cut = statements(tokenize("a if {\n  x\n  y\n}\n\nb := 1\n", newlines=True))
    assert [[t.kind for t in s].count("newline") for s in cut] == [3, 0]
    assert [s[0].text for s in cut] == ["a", "b"]


@pytest.mark.parametrize(("text", "where"), [("a := [1}", (1, 8)), ("a := (1", (1, 6)), ("a := 1)", (1, 7))])
def test_brackets_that_do_not_match_are_an_error_with_their_place(text: str, where: tuple[int, int]) -> None:
    with pytest.raises(RegoLexError) as e:
        statements(tokenize(text))
    assert (e.value.line, e.value.col) == where
