"""Explanations: every message template of data.json is produced by some decision, in English and Dutch,
with every placeholder filled, and the sentence names the rule that decided."""

from __future__ import annotations

import re
from typing import Any

from gateway.policy import EmbeddedEngine
from tests.policy.conftest import actor, case, request, share
from tests.policy.test_engine import CASES

PLAN = case("structureel", "veiligheidsplan", zorg=True)


def _transition(agency: str, the_case: dict[str, Any], step: str) -> dict[str, Any]:
    return {
        "action": "case.transition",
        "actor": actor(agency),
        "case": the_case,
        "transition": {"step": step},
    }


# Inputs for the templates that CASES (one per reason code) does not reach.
EXTRA: list[dict[str, Any]] = [
    share("veilig_thuis", case(), "melding", "veiligheid_herstellen", ["politie"]),  # allowed, verified
    {"action": "case.open", "actor": actor("politie"), "case": case()},
    {"action": "case.read", "actor": actor("politie"), "case": case()},
    _transition("politie", case(), "motorkapoverleg"),
    _transition("om", case(), "motorkapoverleg"),  # not_authorised_transition
    {"action": "case.track", "actor": actor("politie"), "track": {"name": "straf", "open": True}},
    {"action": "case.track", "actor": actor("rvdk"), "track": {"name": "zorg", "open": True}},
    share("politie", case("acuut", "overdracht"), "overdrachtsdossier", "overdracht", ["veilig_thuis"]),
    share(
        "politie", case("acuut", "onderzoek"), "overdrachtsdossier", "veiligheid_herstellen", ["veilig_thuis"]
    ),
    share(
        "veilig_thuis", PLAN, "veiligheidsplan", "zorg_en_straf_afstemmen", ["om"]
    ),  # samenloop_participant
    request("om", PLAN, "maatregel", "maatregelen_afstemmen", "veilig_thuis"),
    share("politie", case(), "melding", "onderzoek_strafbare_feiten", ["veilig_thuis"]),
    share("politie", case(), "melding", "veiligheid_herstellen", [5]),  # nobody to decide: by default
]


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + ".+".join(re.escape(part) for part in template.split("%v")) + "$")


def test_every_template_is_produced_in_both_languages(engine: EmbeddedEngine) -> None:
    messages: dict[str, dict[str, str]] = engine.facts()["messages"]
    patterns = {name: (_pattern(m["message"]), _pattern(m["messageNl"])) for name, m in messages.items()}
    produced: dict[str, set[str]] = {}
    for policy_input in [c[1] for c in CASES] + EXTRA:
        d = engine.decide(policy_input)
        assert not d.engine_failure, policy_input
        reasons = list(d.reasons) + [r for part in d.recipients.values() for r in part.reasons]
        for reason in reasons:
            en, nl = reason.message, reason.message_nl
            assert "%!" not in en + nl and "%v" not in en + nl, reason  # every placeholder filled
            assert '"' not in en + nl, reason  # no argument came out quoted
            matches = [
                name
                for name, (p_en, p_nl) in patterns.items()
                if messages[name]["code"] == reason.code and p_en.match(en) and p_nl.match(nl)
            ]
            assert matches, reason  # the sentence is one of data.json's, for its own code
            for name in matches:
                produced.setdefault(name, set()).add(reason.code)
    assert set(messages) - set(produced) == set()


def test_a_refusal_names_the_rule_in_both_languages(engine: EmbeddedEngine) -> None:
    d = engine.decide(share("veilig_thuis", PLAN, "veiligheidsplan", "zorg_en_straf_afstemmen", ["om"]))
    assert [r.to_json() for r in d.recipients["om"].reasons] == [
        {
            "code": "samenloop_required",
            "message": "om takes part in step structureel/veiligheidsplan only under samenloop "
            "(both the zorg and the straf track open)",
            "messageNl": "om neemt alleen deel aan stap structureel/veiligheidsplan bij samenloop van zorg "
            "en straf (zorg- en strafspoor beide open)",
        },
        {
            "code": "samenloop_required",
            "message": "veiligheidsplan goes to om only under samenloop "
            "(both the zorg and the straf track open)",
            "messageNl": "veiligheidsplan gaat alleen naar om bij samenloop van zorg en straf "
            "(zorg- en strafspoor beide open)",
        },
    ]
