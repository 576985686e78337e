"""Rendering reasons: every template of data.json renders in English and Dutch with its arguments, the
order is by rank then message, and a bad template or a reason that does not fit fails the load."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.policy import EmbeddedEngine, MalformedDecision, PolicyCompileError, read_policy
from gateway.policy._render import TemplateError, Templates, load_templates
from tests.policy.conftest import POLICIES, case, share

FACTS = read_policy(POLICIES).facts
FACTS_FILE = Path("veiligdelen") / "facts" / "data.json"


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates.from_facts(FACTS)


@pytest.mark.parametrize("name", sorted(FACTS["messages"]))
def test_every_template_renders_in_both_languages(templates: Templates, name: str) -> None:
    entry = FACTS["messages"][name]
    arity = entry["message"].count("%v")
    assert entry["messageNl"].count("%v") == arity
    args = [f"<arg{i}>" for i in range(arity)]
    rank, en, code, nl = templates.render({"template": name, "args": args})
    assert code == entry["code"] and rank == FACTS["reasonCodes"][code]["rank"]
    for text in (en, nl):
        assert "%" not in text
        # Each argument lands once, in order, where its placeholder was.
        assert [text.index(a) for a in args] == sorted(text.index(a) for a in args)
    assert en == entry["message"].replace("%v", "{}").format(*args)
    assert nl == entry["messageNl"].replace("%v", "{}").format(*args)
    with pytest.raises(MalformedDecision):
        templates.render({"template": name, "args": [*args, "one too many"]})
    if arity:
        with pytest.raises(MalformedDecision):
            templates.render({"template": name, "args": args[:-1]})


def test_every_reason_code_has_a_template(templates: Templates) -> None:
    codes = {templates[name].code for name in templates.names()}
    assert codes == set(FACTS["reasonCodes"])


def test_reasons_are_ordered_by_rank_then_message_without_duplicates(templates: Templates) -> None:
    items: list[Any] = [
        {"template": "allowed_exchange", "args": ["om", "t", "politie", "p", "b"]},
        {"template": "unknown_agency", "args": ["zz"]},
        {"template": "unknown_agency", "args": ["aa"]},
        {"template": "missing_input", "args": ["purpose"]},
        {"template": "unknown_agency", "args": ["aa"]},
    ]
    rendered = templates.reasons(items)
    assert [(r["code"], r["message"]) for r in rendered] == [
        ("missing_input", "Missing or malformed input field(s): purpose"),
        ("unknown_agency", "Unknown agency aa"),
        ("unknown_agency", "Unknown agency zz"),
        ("allowed", "om may receive t from politie for the purpose p on the legal basis b"),
    ]
    assert rendered[1]["messageNl"] == "Onbekende organisatie aa"


def test_a_mistyped_argument_is_written_as_json_and_strings_as_they_are(templates: Templates) -> None:
    _, en, _, _ = templates.render({"template": "unknown_step", "args": [{"a": [1, None]}, 'x"y\\%v']})
    assert en == 'Unknown step {"a": [1, null]}/x"y\\%v'


@pytest.mark.parametrize(
    "item",
    [None, "unknown_agency", {"template": "nope", "args": []}, {"template": "unknown_agency"}, {"args": []}],
)
def test_a_reason_that_fits_no_template_is_malformed(templates: Templates, item: Any) -> None:
    with pytest.raises(MalformedDecision):
        templates.reasons([item])


def _broken(change: Any) -> dict[str, Any]:
    facts = copy.deepcopy(FACTS)
    change(facts)
    return facts


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda f: f["messages"]["unknown_agency"].pop("messageNl"), "messages.unknown_agency.messageNl"),
        (lambda f: f["messages"]["unknown_agency"].update(message=""), "messages.unknown_agency.message"),
        (
            lambda f: f["messages"]["unknown_step"].update(messageNl="Onbekende stap %v"),
            "messages.unknown_step",
        ),
        (
            lambda f: f["messages"]["unknown_step"].update(message="Step %s/%v"),
            "messages.unknown_step.message",
        ),
        (lambda f: f["messages"]["unknown_step"].update(code="no_such_code"), "messages.unknown_step.code"),
        (
            lambda f: f["reasonCodes"]["unknown_track"].pop("rank"),
            "reasonCodes.unknown_track",
        ),  # and its template
    ],
    ids=["no-dutch", "empty-english", "placeholder-count", "other-directive", "unknown-code", "no-rank"],
)
def test_a_bad_template_is_refused(change: Any, field: str) -> None:
    with pytest.raises(TemplateError) as info:
        Templates.from_facts(_broken(change))
    fields = [e["field"] for e in info.value.errors]
    assert fields[0] == field
    assert fields[1:] == (["messages.unknown_track.code"] if field.startswith("reasonCodes") else [])


def test_a_policy_giving_a_template_the_wrong_number_of_arguments_is_refused() -> None:
    source = read_policy(POLICIES)
    modules = dict(source.policy_modules)
    name = "veiligdelen/decision/context.rego"
    text = modules[name]
    assert '_reason("unknown_action", [ctx.action])' in text
    modules[name] = text.replace('_reason("unknown_action", [ctx.action])', '_reason("unknown_action", [])')
    with pytest.raises(PolicyCompileError) as info:
        load_templates(source.facts, modules)
    (error,) = info.value.errors or []
    assert error["field"].startswith(name + ":")
    assert "takes 1 arguments, the policy gives 0" in error["message"]
    modules[name] = text.replace('_reason("unknown_action"', '_reason("unknown_actoin"')
    with pytest.raises(PolicyCompileError, match="no message template 'unknown_actoin'"):
        load_templates(source.facts, modules)


def test_the_real_policy_passes_the_load_check() -> None:
    source = read_policy(POLICIES)
    load_templates(source.facts, source.policy_modules)


def test_a_data_json_missing_a_language_never_reaches_a_request(policy_copy: Path) -> None:
    path = policy_copy / FACTS_FILE
    facts = json.loads(path.read_text(encoding="utf-8"))
    del facts["messages"]["samenloop_required"]["messageNl"]
    path.write_text(json.dumps(facts), encoding="utf-8")
    with pytest.raises(PolicyCompileError) as info:
        EmbeddedEngine(policy_copy, pool_size=1, timeout=None)
    assert info.value.errors == [
        {
            "field": "messages.samenloop_required.messageNl",
            "message": "is missing (every template needs an English message and a Dutch messageNl)",
        }
    ]


def test_the_engine_renders_both_languages(engine: EmbeddedEngine) -> None:
    d = engine.decide(share("politie", case(), "melding", "veiligheid_herstellen", ["nobody"]))
    (reason,) = d.recipients["nobody"].reasons
    assert (reason.code, reason.message, reason.message_nl) == (
        "unknown_agency",
        "Unknown agency nobody",
        "Onbekende organisatie nobody",
    )
