"""Decision.from_result: the checks every engine's output passes before the gateway acts on it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy import Decision, MalformedDecision

REASON = {"code": "allowed", "message": "m", "messageNl": "n"}
DENY = {"code": "no_legal_basis", "message": "m", "messageNl": "n"}


def result(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "allowed": True,
        "reasons": [REASON],
        "legalBasis": "Wmo 2015 art. 4.1.1 lid 2 sub e",
        "obligations": [{"code": "strip_fields", "recipient": "politie", "fields": ["a"]}],
        "recipients": {
            "politie": {
                "allowed": True,
                "reasons": [REASON],
                "legalBasis": "Wmo 2015 art. 4.1.1 lid 2 sub e",
                "purpose": "p",
                "fields": ["a"],
            }
        },
    }
    return base | overrides


SHARE = {"action": "share", "recipients": ["politie"]}


def test_a_well_formed_result_is_accepted() -> None:
    d = Decision.from_result(result(), "sha256:x", SHARE)
    assert d.allowed and d.codes == ["allowed"] and d.policy_revision == "sha256:x"
    assert d.to_json()["recipients"]["politie"]["legalBasis"] == "Wmo 2015 art. 4.1.1 lid 2 sub e"


@pytest.mark.parametrize(
    "bad",
    [
        result(allowed="true"),
        result(reasons=[{"code": "allowed"}]),
        result(legalBasis=None),
        result(allowed=False, reasons=[]),
        result(obligations=[{"recipient": "politie"}]),
        result(recipients=[]),
        result(
            recipients={"politie": {"allowed": True, "reasons": [REASON], "legalBasis": None, "fields": []}}
        ),
        result(recipients={"politie": {"allowed": False, "reasons": [], "legalBasis": None, "fields": []}}),
        result(
            recipients={"politie": {"allowed": False, "reasons": [DENY], "legalBasis": None, "fields": ["a"]}}
        ),
        result(recipients={}),
        result(allowed=False, reasons=[DENY]),
    ],
)
def test_malformed_results_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(MalformedDecision):
        Decision.from_result(bad, "sha256:x", SHARE)


def test_fail_closed_denies_every_requested_receiver() -> None:
    d = Decision.fail_closed(
        "engine_error", "sha256:x", {"action": "share", "recipients": ["om", "om", 3, "rvdk"]}
    )
    assert not d.allowed and d.engine_failure
    assert list(d.recipients) == ["om", "rvdk"]
    assert all(not p.allowed and p.reasons[0].code == "engine_error" for p in d.recipients.values())
    request = Decision.fail_closed(
        "undefined_decision", "sha256:x", {"action": "request", "actor": {"agency": "om"}}
    )
    assert list(request.recipients) == ["om"]
