"""Policy work is bounded by construction (issue 7, finding 1).

Evaluation time grew with the square of the number of payload field names, and the deadline only
stopped the caller waiting: two shares of 100,000 keys kept both interpreters busy for minutes and
every agency was denied ``engine_timeout``. Now (1) the policy sees only the field names the facts
know, so a hostile payload costs the engine nothing, and (2) an evaluation that still overruns is
killed with its worker process, which is replaced, so it cannot keep an interpreter busy.

Real HTTP, real regopy, real worker processes; the timeouts here are hang guards, never speed claims.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.policy import ENGINE_TIMEOUT, EmbeddedEngine
from gateway.services.process import ProcessFacts
from tests.e2e.conftest import AGENCIES, Gateway, start_gateway
from tests.live import serve

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
HANG_GUARD = 120.0  # seconds; only so a regression fails instead of hanging, never a speed claim
HOSTILE_KEYS = 100_000
MELDING = {
    "datumTijd": "2026-11-28T02:14:00Z",
    "locatie": "fictief adres",
    "aard": "fysiek geweld",
    "meldingstekst": "Buren melden geschreeuw.",
    "nietBestaandVeld": "mag niemand bereiken",
}
MELDING_FIELDS = ["aard", "datumTijd", "locatie", "meldingstekst"]  # what the row lets Veilig Thuis have


def running(pid: int) -> bool:
    """Whether ``pid`` is a live (not reaped, not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"hang guard: {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose body limit lets a hostile payload through to the policy step."""
    policy_dir = tmp_path_factory.mktemp("policy") / "policies"
    shutil.copytree(POLICIES, policy_dir)
    runtime, sock = start_gateway(
        tmp_path_factory.mktemp("gateway"), max_body_bytes=64 * 1024 * 1024, policy_dir=policy_dir
    )
    app = create_app(runtime=runtime)
    with serve(app, sock=sock) as base:
        gateway = Gateway(base=base, runtime=runtime)
        for agency in AGENCIES:
            gateway.register(f"{agency}-system", agency, "agency_system")
        gateway.register("author", "veilig_thuis", "policy_author")
        yield gateway
        gateway.http.close()
    runtime.close()


def hostile_keys() -> dict[str, str]:
    return {f"veld{i:06d}": "x" for i in range(HOSTILE_KEYS)}


def test_hostile_shares_do_not_stall_another_agency(gw: Gateway) -> None:
    case_id = gw.open_case()
    answers: list[httpx.Response] = []
    errors: list[BaseException] = []
    names = sorted(hostile_keys())

    def hostile(kind: str) -> None:
        try:
            with gw.agency("veilig_thuis") as vt:
                vt.timeout = httpx.Timeout(HANG_GUARD)
                if kind == "share":
                    r = vt.post(
                        f"/v1/cases/{case_id}/shares",
                        json={
                            "informationType": "melding",
                            "purpose": "veiligheid_herstellen",
                            "recipients": ["politie"],
                            "payload": hostile_keys() | {"aard": "fysiek geweld"},
                        },
                    )
                else:  # the what-if takes field names only: the same quadratic cost, in a smaller body
                    r = vt.post(
                        "/v1/decisions",
                        json={
                            "caseId": case_id,
                            "action": "share",
                            "informationType": "melding",
                            "purpose": "veiligheid_herstellen",
                            "recipient": "politie",
                            "payloadFields": names,
                        },
                    )
            answers.append(r)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=hostile, args=(kind,)) for kind in ["share", "what-if"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD)
    assert not errors, errors
    assert len(answers) == 6
    known = ProcessFacts(gw.runtime.policy.current.facts()).field_names()
    for r in answers:
        # Refused at the edge (a field limit) or decided: never a 500, never a stalled engine.
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200 and "results" in r.json():
            [result] = r.json()["results"]
            assert set(result.get("fields") or []) <= known
        if r.status_code == 200:
            assert ENGINE_TIMEOUT not in r.text

    # Ten ordinary shares from another agency, each decided and delivered as always.
    with gw.agency("politie") as politie:
        for _ in range(10):
            r = politie.post(
                f"/v1/cases/{case_id}/shares",
                json={
                    "informationType": "melding",
                    "purpose": "veiligheid_herstellen",
                    "recipients": ["veilig_thuis"],
                    "payload": MELDING,
                },
            )
            assert r.status_code == 200, r.text
            [result] = r.json()["results"]
            assert [x["code"] for x in result["reasons"]] == ["allowed"], result["reasons"]
            assert result["allowed"] is True
            assert result["fields"] == MELDING_FIELDS
    assert gw.runtime.policy.current.health() is None


def test_the_policy_sees_only_field_names_the_facts_know(gw: Gateway) -> None:
    # The what-if shows the strip obligation: what was removed is bounded by the facts, not the request.
    # The identity pseudo-fields (bsn:<role>) come from the case's subjects only: this case has no kind,
    # so a bsn:kind among the request's names (a name the facts know) must not reach the engine.
    case_id = gw.open_case(with_kind=False)
    with gw.agency("politie") as politie:
        r = politie.post(
            "/v1/decisions",
            json={
                "caseId": case_id,
                "action": "share",
                "informationType": "melding",
                "purpose": "veiligheid_herstellen",
                "recipient": "veilig_thuis",
                "payloadFields": [
                    *MELDING,
                    "bsn:kind",
                    "bsn:onbekend",
                    *(f"onbekend{i}" for i in range(150)),
                ],
            },
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["allowed"] is True
    case_roles = ["bsn:pleger", "bsn:slachtoffer"]  # the case's subjects' roles, and only those
    assert body["recipients"]["veilig_thuis"]["fields"] == sorted([*MELDING_FIELDS, *case_roles])
    [strip] = [o for o in body["obligations"] if o["code"] == "strip_fields"]
    # nietBestaandVeld, bsn:kind, bsn:onbekend and the 150 unknown names never reached the policy:
    # nothing to strip.
    assert strip["removed"] == []


def test_a_reload_stops_the_old_engines_workers(gw: Gateway) -> None:
    old = gw.runtime.policy.current
    assert isinstance(old, EmbeddedEngine)
    old_pids = old.worker_pids()
    assert old_pids and all(running(p) for p in old_pids)
    with gw.as_("author") as author:
        r = author.post("/v1/policies/reload")
    assert r.status_code == 200, r.text
    new = gw.runtime.policy.current
    assert new is not old and isinstance(new, EmbeddedEngine)
    wait_until(lambda: not any(running(p) for p in old_pids), "the old engine's workers exit")
    assert all(running(p) for p in new.worker_pids())
    with gw.agency("politie") as politie:
        case = politie.post(
            "/v1/cases", json={"flow": "acuut", "subjects": [{"role": "slachtoffer", "bsn": "999990019"}]}
        )
    assert case.status_code == 201, case.text


# --- a policy that loops: the stuck worker is killed and replaced --------------------------------------

_DENY = (
    '_deny := {"allowed": false, "reasons": [{"template": "x", "args": []}], '
    '"legalBasis": null, "obligations": [], "recipients": {}}\n\n'
)
# Hundreds of millions of steps for regopy (hours), in constant memory: an evaluation that never ends.
_SPIN = (
    "result := _deny if not input.spin\n\n"
    "result := _deny if {\n\tinput.spin\n"
    "\tcount([1 | some i in numbers.range(1, 30000); some j in numbers.range(1, 30000); i * j < 0]) == 0\n}\n"
)


@pytest.fixture
def slow_policy(tmp_path: Path) -> Path:
    directory = tmp_path / "slow"
    (directory / "veiligdelen" / "decision").mkdir(parents=True)
    (directory / "veiligdelen" / "decision" / "decision.rego").write_text(
        "package veiligdelen.decision\n\n" + _DENY + _SPIN, encoding="utf-8"
    )
    # The one message template the deny names (the gateway renders reasons from data.json).
    (directory / "veiligdelen" / "facts").mkdir(parents=True)
    (directory / "veiligdelen" / "facts" / "data.json").write_text(
        '{"reasonCodes": {"x": {"rank": 1}}, '
        '"messages": {"x": {"code": "x", "message": "m", "messageNl": "n"}}}',
        encoding="utf-8",
    )
    return directory


def test_a_stuck_evaluation_is_killed_and_its_worker_replaced(slow_policy: Path) -> None:
    engine = EmbeddedEngine(slow_policy, pool_size=1, timeout=1.0)
    try:
        [stuck] = engine.worker_pids()
        assert engine.health() is None
        d = engine.decide({"spin": True, "action": "share", "recipients": ["om"]})
        assert d.codes == [ENGINE_TIMEOUT]
        assert d.engine_failure and d.recipients["om"].allowed is False
        # The worker that was evaluating is gone at once (killed and reaped), not left spinning...
        assert not running(stuck)
        # ... and until its replacement has compiled the revision, no worker can decide.
        assert engine.health() == "stalled"
        wait_until(lambda: engine.health() is None, "a replacement worker starts")
        [replacement] = engine.worker_pids()
        assert replacement != stuck and running(replacement)
        assert engine.decide({}).codes == ["x"]  # the next decision succeeds
    finally:
        engine.close()
    assert not running(replacement)
    assert engine.worker_pids() == []
    assert engine.health() == "closed"
    assert engine.decide({}).codes == ["engine_unavailable"]  # fail closed after close


def test_stuck_evaluations_leave_the_other_workers_deciding(slow_policy: Path) -> None:
    # Two workers, one stuck: the other keeps deciding, and health says so.
    engine = EmbeddedEngine(slow_policy, pool_size=2, timeout=30.0)
    try:
        done = threading.Event()
        outcome: list[list[str]] = []

        def spin() -> None:
            outcome.append(engine.decide({"spin": True}).codes)
            done.set()

        threading.Thread(target=spin, daemon=True).start()
        wait_until(lambda: any(w is not None for w in _busy(engine)), "the spinning decision starts")
        for _ in range(10):
            assert engine.decide({}).codes == ["x"]
        assert engine.health() is None  # one worker is busy within its deadline, one is free
    finally:
        engine.close()
    assert done.wait(HANG_GUARD)
    assert outcome == [["engine_unavailable"]]  # closing killed the spinning worker: still a deny


def _busy(engine: EmbeddedEngine) -> list[Any]:
    pool = engine._workers
    assert pool is not None
    with pool._lock:
        return [w.busy_since for w in pool._workers]
