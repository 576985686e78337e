"""What a policy reads of its input, derived from the Rego source (gateway.policy._readpaths): every
form the derivation follows gives its paths, every form it cannot bound falls back to the whole input
and names the place, and the projection keeps exactly the values at the read paths."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy import read_policy
from gateway.policy._readpaths import ReadPaths, derive
from tests.policy.conftest import POLICIES

HEAD = "package p\n\nimport rego.v1\n\n"


def paths(rego: str, data: Any = None) -> set[str]:
    found = derive({"p.rego": HEAD + rego}, data or {})
    assert found.fallback is None, found.fallback
    return set(found.dotted())


def fallback(rego: str, data: Any = None) -> str:
    found = derive({"p.rego": HEAD + rego}, data or {})
    assert found.paths is None and found.keys_on == "whole input"
    assert found.fallback is not None
    return found.fallback


def test_references_are_read_paths() -> None:
    assert paths('r := input.a.b\n\ns if input["c"] == 1\n') == {"a.b", "c"}
    # a computed index below a path reads that path's members: the path is kept whole
    assert paths("r contains x if {\n\tsome i\n\tx := input.list[i]\n}\n") == {"list"}


def test_the_input_passed_to_functions_and_assigned_is_followed() -> None:
    rego = (
        "decide(inp) := d if {\n\td := _ctx(inp)\n}\n\n"
        '_ctx(x) := {"a": x.a, "b": object.get(x, "b", null), "c": object.get(x, ["c", "d"], 0)}\n\n'
        "_ctx(_) := 1 if false\n\n"
        "s if {\n\tv := input\n\tv.e\n\tis_object(v)\n}\n\n"
        "result := decide(input)\n"
    )
    assert paths(rego) == {"a", "b", "c.d", "e"}


def test_a_key_bounded_by_data_reads_what_the_data_names() -> None:
    data = {"p": {"schema": {"share": {"a.b": "string", "c": "array"}, "read": {"d": "string"}}}}
    rego = (
        "_schema(action) := x if {\n\tx := data.p.schema[action]\n} else := {}\n\n"
        "_missing(inp, action) := {path |\n"
        "\tschema := _schema(action)\n"
        "\tsome path in object.keys(schema)\n"
        '\tnot object.get(inp, split(path, "."), null)\n'
        "}\n\n"
        "result := _missing(input, input.action)\n"
    )
    assert paths(rego, data) == {"action", "a.b", "c", "d"}
    # the same key from a variable the rule does not bind: unbounded
    unbound = rego.replace("\tsome path in object.keys(schema)\n", "")
    assert "object.get on `inp` (the whole input) with a key the data does not bound" in fallback(
        unbound, data
    )


@pytest.mark.parametrize(
    ("rego", "why"),
    [
        (
            "r := input[k] if some k in data.p.keys\n",
            "p.rego:5: the input indexed by a key the data does not bound",
        ),
        ("r := input[x]\n", "p.rego:5: the input indexed"),
        ("r := input\n", "p.rego:5: the input is used whole"),
        ("r := walk(input)\n", "p.rego:5: the input is passed whole to walk"),
        ("r := json.marshal(input)\n", "passed whole to json.marshal"),
        ("r := count(input)\n", "passed whole to count"),
        ("r if input == {}\n", "the input is used whole"),
        ("r contains k if some k, _ in input\n", "the input is used whole"),
        ("r := [input]\n", "the input is used whole"),
        ("r := f(input)\n\nf(x) := x\n", "p.rego:7: `x` (the whole input) is used whole"),
        (
            'r := f(input)\n\nf("share") := 1\n',
            "p.rego:7: the input is matched against a pattern in f's head",
        ),
        ("r := g(input)\n", "passed whole to g"),
        (
            "r := object.get(input, input.k, null)\n",
            "object.get on the input with a key the data does not bound",
        ),
        ("r := object.get(input, [], null)\n", "with an empty path returns it whole"),
        ("r := x if {\n\tx := 1 with input.a as 2\n}\n", "p.rego:6: `with` can replace the input"),
        ("r := input.a.b\n\nimport input.a as b\n", "`import input`"),
    ],
)
def test_what_cannot_be_bounded_falls_back_to_the_whole_input(rego: str, why: str) -> None:
    assert why in fallback(rego)


def test_a_key_from_data_not_under_a_package_is_bounded() -> None:
    rego = "r contains input[k] if some k in data.q.keys\n"
    assert paths(rego, {"q": {"keys": ["a", "b"]}}) == {"a", "b"}
    # under data.p are package p's rules: a rule's value is not in the data, so the data bounds nothing
    assert paths(rego, {}) == set()  # no data.q: the rule reads nothing
    why = fallback(rego.replace("data.q", "data.p"), {"p": {"keys": ["a"]}})
    assert "holds the rules of package p" in why


def test_type_tests_on_the_whole_input_read_nothing_more() -> None:
    assert paths("r if is_object(input)\n\ns := type_name(input)\n") == set()


def test_the_policy_reads_no_client_id_role_or_identifier() -> None:
    source = read_policy(POLICIES)
    found = derive(source.policy_modules, source.data)
    assert found.fallback is None
    assert set(found.dotted()) == {
        "action",
        "actor.agency",
        "case.flow",
        "case.involved",
        "case.step",
        "case.subjectRoles",
        "case.tracks.straf",
        "case.tracks.zorg",
        "holder",
        "informationType",
        "origin",
        "payloadFields",
        "purpose",
        "recipients",
        "track.name",
        "track.open",  # only through data.json's inputSchema (rule 8): the data-bounded key
        "transition.flow",
        "transition.step",
    }


def test_the_projection_keeps_the_values_at_the_read_paths_whole() -> None:
    rp = ReadPaths(frozenset({("a",), ("a", "x"), ("b", "c"), ("d", "e")}))
    value = {
        "a": {"x": 1, "y": [2, 3]},
        "b": {"c": [{"deep": True}], "other": 4},
        "d": "not an object",
        "z": "unread",
    }
    assert rp.project(value) == {
        "a": {"x": 1, "y": [2, 3]},
        "b": {"c": [{"deep": True}]},
        "d": "not an object",
    }
    assert rp.project({"z": 1}) == {}  # absent stays absent
    assert rp.project({"b": {"c": None}}) == {"b": {"c": None}}  # null is a value
    assert rp.project(["not", "an", "object"]) == ["not", "an", "object"]
    whole = ReadPaths(None, "why")
    assert whole.project(value) is value and whole.dotted() == []


@pytest.mark.parametrize("keyword", ["in", "if", "contains", "every"])
def test_an_import_ending_in_a_keyword_does_not_swallow_the_next_rule(keyword: str) -> None:
    rego = f"import future.keywords.{keyword}\n\ndeny if input.blocked\n"
    assert paths(rego) == {"blocked"}


def test_an_index_binding_a_key_in_another_branch_is_unbounded() -> None:
    """`data.fields[k]` binds `k` over every key in its branch: the `k := "a"` of the else branch does
    not bound what the first branch reads."""
    rego = (
        'allow if {\n\tdata.fields[k]\n\tinput[k] == "x"\n}'
        ' else := false if {\n\tk := "a"\n\tinput[k] == "y"\n}\n'
    )
    why = fallback(rego, {"fields": {"secret": 1}})
    assert "outside the scope of its binding" in why
    assert "bound in a way" in fallback(
        rego.replace("{\n\tdata.fields[k]", "{\n\tsome k\n\tdata.fields[k]", 1), {"fields": {"secret": 1}}
    )


def test_a_derivation_that_trips_keys_on_the_whole_input(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.policy._readpaths as readpaths

    def trip(*_: Any) -> None:
        raise IndexError("a form the derivation did not expect")

    monkeypatch.setattr(readpaths._Derivation, "paths", trip)
    found = derive({"p.rego": HEAD + "r := input.a\n"}, {})
    assert found.paths is None and found.fallback is not None and "IndexError" in found.fallback
