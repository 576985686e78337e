"""The audit API: entries, search by BSN, agency scoping, checkpoint, proofs and export."""

from __future__ import annotations

import base64
import json

import httpx

from audit import canonical_json, leaf_hash, verify_checkpoint, verify_consistency, verify_inclusion
from gateway.auth import Principal
from gateway.services.trail import CallContext, make_entry
from gateway.tracing import from_header
from tests.e2e.conftest import BSN_KIND, BSN_PLEGER, BSN_SLACHTOFFER, Gateway, shared_case


def test_entries_are_the_exact_hashed_bytes(gateway: Gateway) -> None:
    case_id = shared_case(gateway)
    with gateway.as_("auditor") as a:
        page = a.get("/v1/audit/entries", params={"caseId": case_id}).json()
    assert page["entries"]
    for item in page["entries"]:
        raw = base64.b64decode(item["leafData"])
        assert json.loads(raw) == item["entry"]
        assert canonical_json(item["entry"]) == raw  # RFC 8785: parsing and re-canonicalising is stable
        for field in [
            "time",
            "type",
            "traceId",
            "spanId",
            "actor",
            "action",
            "outcome",
            "processingActivity",
        ]:
            assert field in item["entry"], field
    indexes = [i["index"] for i in page["entries"]]
    assert indexes == sorted(indexes)
    with gateway.as_("auditor") as a:
        one = a.get(f"/v1/audit/entries/{indexes[0]}").json()
        assert one == page["entries"][0]
        assert a.get("/v1/audit/entries/999999999").status_code == 404


def test_no_bsn_anywhere_in_the_log(gateway: Gateway) -> None:
    shared_case(gateway)
    with gateway.as_("auditor") as a:
        r = a.get("/v1/audit/export")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    everything = b"".join(base64.b64decode(x["leafData"]) for x in lines)
    for bsn in [BSN_SLACHTOFFER, BSN_PLEGER, BSN_KIND]:
        assert bsn.encode() not in everything


def test_search_by_bsn_in_the_body(gateway: Gateway) -> None:
    case_id = shared_case(gateway)
    with gateway.as_("auditor") as a:
        r = a.post("/v1/audit/search", json={"bsn": BSN_KIND, "caseId": case_id})
        assert r.status_code == 200
        entries = r.json()["entries"]
        assert entries and all(e["entry"]["caseId"] == case_id for e in entries)
        assert entries[-1]["entry"]["action"] == "audit.search"  # the search is on record, and shown
        other = a.post("/v1/audit/search", json={"bsn": "999990044"})
        # Nobody's data was exchanged: only the search itself, a lookup of that person, names them.
        assert [e["entry"]["action"] for e in other.json()["entries"]] == ["audit.search"]
        bad = a.post("/v1/audit/search", json={"bsn": "12345"})
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["field"] == "bsn"
        assert "12345" not in bad.text


def test_paging_with_cursor(gateway: Gateway) -> None:
    shared_case(gateway)
    seen: list[int] = []
    cursor = None
    with gateway.as_("auditor") as a:
        while True:
            params: dict[str, object] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = a.get("/v1/audit/entries", params=params).json()
            seen += [e["index"] for e in page["entries"]]
            cursor = page["next"]
            if not cursor:
                break
        assert seen == list(range(len(seen)))
        assert a.get("/v1/audit/entries", params={"cursor": "garbage!"}).status_code == 400
        assert a.get("/v1/audit/entries", params={"limit": 0}).status_code == 400


def test_privacy_officer_sees_only_entries_naming_their_agency(gateway: Gateway) -> None:
    shared_case(gateway)
    with gateway.as_("reclassering-fg") as officer:
        entries = officer.get("/v1/audit/entries", params={"limit": 1000}).json()["entries"]
        for e in entries:
            assert "reclassering" in {e["entry"]["actor"]["agency"], e["entry"].get("counterpart")}
        both = officer.get("/v1/audit/entries", params={"agency": "politie", "limit": 1000}).json()["entries"]
        for e in both:  # filtering on another agency narrows, it never widens
            named = {e["entry"]["actor"]["agency"], e["entry"].get("counterpart")}
            assert {"reclassering", "politie"} <= named
        assert officer.get("/v1/audit/export").status_code == 403
    with gateway.as_("rvdk-fg") as officer:
        entries = officer.get("/v1/audit/entries", params={"limit": 1000}).json()["entries"]
        assert entries, "the refused share to rvdk names rvdk"


def test_checkpoint_and_proofs_verify(gateway: Gateway) -> None:
    shared_case(gateway)
    with gateway.as_("auditor") as a:
        vkey = a.get("/v1/audit/verifier-key").text.strip()
        note1 = a.get("/v1/audit/checkpoint").text
        cp1 = verify_checkpoint(note1, vkey)
        shared_case(gateway)
        note2 = a.get("/v1/audit/checkpoint").text
        cp2 = verify_checkpoint(note2, vkey)
        assert cp2.size > cp1.size
        index = cp1.size - 1
        item = a.get(f"/v1/audit/entries/{index}").json()
        proof = a.get("/v1/audit/proofs/inclusion", params={"index": index, "treeSize": cp2.size}).json()
        assert proof["index"] == index and proof["treeSize"] == cp2.size
        hashes = [base64.b64decode(h) for h in proof["hashes"]]
        assert verify_inclusion(
            leaf_hash(base64.b64decode(item["leafData"])), index, cp2.size, hashes, cp2.root
        )
        cons = a.get("/v1/audit/proofs/consistency", params={"from": cp1.size, "to": cp2.size}).json()
        assert verify_consistency(
            cp1.size, cp2.size, [base64.b64decode(h) for h in cons["hashes"]], cp1.root, cp2.root
        )
        assert a.get("/v1/audit/proofs/inclusion", params={"index": 5, "treeSize": 2}).status_code == 404
        # A tree the log has not reached: nothing there (404), like an index past the end.
        assert (
            a.get("/v1/audit/proofs/consistency", params={"from": 10**9, "to": 10**9 + 1}).status_code == 404
        )
    assert httpx.get(f"{gateway.base}/v1/audit/checkpoint").status_code == 401


def test_entries_carry_the_logboek_and_decision_log_fields(gateway: Gateway) -> None:
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    case_id = gateway.open_case()  # no traceparent: the gateway starts the trace
    with gateway.agency("politie") as c:
        r = c.post(
            f"/v1/cases/{case_id}/shares",
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
            json={
                "informationType": "melding",
                "purpose": "veiligheid_herstellen",
                "recipients": ["veilig_thuis", "rvdk"],
                "payload": {"aard": "fysiek geweld"},
            },
        )
    assert r.status_code == 200
    with gateway.as_("auditor") as a:
        page = a.get("/v1/audit/entries", params={"caseId": case_id}).json()
    opened, *rest = [e["entry"] for e in page["entries"]]
    assert opened["action"] == "case.open" and opened["status"] == "ok"
    assert "foreignOperation" not in opened and "parentSpanId" not in opened
    shares = [e for e in rest if e["action"] == "share"]
    allowed = {s["counterpart"]: s["decision"]["allowed"] for s in shares}
    assert allowed == {"veilig_thuis": True, "rvdk": False}
    # The allowed share was also pushed: that entry carries out the decision and names it by its refs.
    (message_id,) = [s["refs"]["messageId"] for s in shares if s["decision"]["allowed"]]
    pushes = [e for e in rest if e["action"] != "share"]
    assert [(e["type"], e["action"], e["counterpart"]) for e in pushes] == [
        ("delivery", "push", "veilig_thuis")
    ]
    assert pushes[0]["traceId"] == trace_id and pushes[0]["refs"]["messageId"] == message_id
    for s in shares:
        assert s["traceId"] == trace_id and s["parentSpanId"] == caller_span
        assert len(s["spanId"]) == 16 and s["spanId"] != caller_span
        assert s["foreignOperation"] == {"traceId": trace_id, "spanId": caller_span, "entity": "politie"}
        assert s["processingActivity"] == "veilig-delen:veiligheid_herstellen"
        # A refusal is a decision carried out, not an error (Authorization Decision Log).
        assert s["status"] == "ok"
        assert s["decision"]["policyRevision"] and s["decision"]["reasons"]


def test_the_gateways_own_failure_is_an_error_status() -> None:
    ctx = CallContext(
        principal=Principal("politie-system", "politie", "agency_system", frozenset({"exchange"})),
        trace=from_header(None),
    )
    failed = make_entry(ctx, type_="delivery", action="push", outcome="push_failed")
    refused = make_entry(ctx, type_="exchange", action="share", outcome="refused")
    assert (failed["status"], refused["status"]) == ("error", "ok")
