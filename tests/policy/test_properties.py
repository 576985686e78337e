"""Property tests: whatever the input, the engine answers a well-formed decision and fails closed."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy import EmbeddedEngine
from tests.policy.conftest import POLICIES, case, share

ENGINE = EmbeddedEngine(POLICIES, pool_size=1)
ALLOWED = share(
    "veilig_thuis",
    case("structureel", "veiligheidsplan", zorg=True, straf=True),
    "veiligheidsbeoordeling",
    "zorg_en_straf_afstemmen",
    ["om", "reclassering", "rvdk"],
    ["conclusie", "risicofactoren"],
)
REQUIRED = [
    ("action",),
    ("actor", "agency"),
    ("case", "flow"),
    ("case", "step"),
    ("case", "tracks", "zorg"),
    ("case", "tracks", "straf"),
    ("case", "subjectRoles"),
    ("case", "involved"),
    ("informationType",),
    ("purpose",),
    ("recipients",),
    ("payloadFields",),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
identifiers = st.sampled_from(
    [
        "share",
        "request",
        "case.open",
        "case.read",
        "case.transition",
        "case.track",
        "politie",
        "veilig_thuis",
        "om",
        "rvdk",
        "acuut",
        "structureel",
        "melding",
        "overdracht",
        "kind",
        'x"y',
        "",
    ]
)


def _well_formed(policy_input: Any) -> None:
    d = ENGINE.decide(policy_input)
    assert isinstance(d.allowed, bool)
    assert d.reasons, "every decision has a reason"
    if d.allowed:
        assert d.legal_basis
        assert "allowed" in d.codes
    for part in d.recipients.values():
        assert part.allowed is False or part.legal_basis
        assert part.reasons


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "action",
                "actor",
                "case",
                "informationType",
                "purpose",
                "recipients",
                "payloadFields",
                "holder",
                "transition",
                "track",
            ]
        ),
        json_values | identifiers,
        max_size=10,
    )
)
def test_arbitrary_input_gets_a_well_formed_answer(policy_input: dict[str, Any]) -> None:
    _well_formed(policy_input)


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(REQUIRED), min_size=1))
def test_removing_required_fields_always_denies(paths: set[tuple[str, ...]]) -> None:
    policy_input = copy.deepcopy(ALLOWED)
    for path in paths:
        node = policy_input
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    d = ENGINE.decide(policy_input)
    assert d.allowed is False
    assert "missing_input" in d.codes
    assert d.obligations == ()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(REQUIRED), json_values)
def test_replacing_a_required_field_never_widens(path: tuple[str, ...], value: Any) -> None:
    baseline = {r for r, p in ENGINE.decide(ALLOWED).recipients.items() if p.allowed}
    policy_input = copy.deepcopy(ALLOWED)
    node = policy_input
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    d = ENGINE.decide(policy_input)
    allowed = {r for r, p in d.recipients.items() if p.allowed}
    assert allowed <= baseline
    for r in allowed:
        assert set(d.recipients[r].fields) <= {"conclusie", "risicofactoren"}
