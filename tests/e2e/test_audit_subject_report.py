"""Subject-access reports over HTTP and from the command line, against a running gateway."""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit import leaf_hash, verify_checkpoint, verify_inclusion
from gateway.cli import app as cli
from tests.e2e.conftest import BSN_KIND, BSN_PLEGER, BSN_SLACHTOFFER, Gateway, shared_case

NOBODY = "999990044"  # valid under the elfproef, in no case


def test_the_report_lists_every_exchange_with_agencies_purpose_and_legal_basis(gateway: Gateway) -> None:
    case_id = shared_case(gateway)
    with gateway.as_("auditor") as a:
        r = a.post("/v1/audit/subject-report", json={"bsn": BSN_KIND, "caseId": case_id})
    assert r.status_code == 200, r.text
    body = r.json()
    rows = body["entries"]
    shares = [row for row in rows if row["action"] == "share"]
    assert {(s["from"], s["to"], s["outcome"]) for s in shares} == {
        ("politie", "veilig_thuis", "authorised"),
        ("politie", "rvdk", "refused"),
    }
    delivered = next(s for s in shares if s["to"] == "veilig_thuis")
    assert delivered["informationType"] == "melding"
    assert delivered["purpose"] == "veiligheid_herstellen"
    assert delivered["legalBasis"] and delivered["allowed"] is True
    assert delivered["policyRevision"] and delivered["caseId"] == case_id
    assert delivered["time"].endswith("Z") and len(delivered["traceId"]) == 32
    # The case being opened is about the person too, and moves no information between agencies.
    opened = next(row for row in rows if row["action"] == "case.open")
    assert (opened["actor"], opened["from"], opened["to"]) == ("politie", None, None)
    assert [row["index"] for row in rows] == sorted(row["index"] for row in rows)
    assert body["next"] is None


def test_every_row_is_provable_against_the_reports_checkpoint(gateway: Gateway) -> None:
    shared_case(gateway)
    with gateway.as_("auditor") as a:
        vkey = a.get("/v1/audit/verifier-key").text.strip()
        body = a.post("/v1/audit/subject-report", json={"bsn": BSN_PLEGER}).json()
        cp = verify_checkpoint(body["checkpoint"], vkey)
        assert cp.size == body["treeSize"] and body["entries"]
        for row in body["entries"][-3:]:
            assert row["index"] < cp.size
            leaf = base64.b64decode(a.get(f"/v1/audit/entries/{row['index']}").json()["leafData"])
            proof = a.get(
                "/v1/audit/proofs/inclusion", params={"index": row["index"], "treeSize": cp.size}
            ).json()
            hashes = [base64.b64decode(h) for h in proof["hashes"]]
            assert verify_inclusion(leaf_hash(leaf), row["index"], cp.size, hashes, cp.root)


def test_the_lookup_itself_is_logged_under_the_persons_pseudonym(gateway: Gateway) -> None:
    with gateway.as_("om-fg") as officer:
        first = officer.post("/v1/audit/subject-report", json={"bsn": NOBODY}).json()
        second = officer.post("/v1/audit/subject-report", json={"bsn": NOBODY}).json()
    # Nobody's data was exchanged; but the officer's first lookup is in the second report.
    assert [r["action"] for r in first["entries"]] == ["audit.subject_report"]
    lookups = [r for r in second["entries"] if r["action"] == "audit.subject_report"]
    assert len(lookups) == 2 and {r["actor"] for r in lookups} == {"om"}
    assert lookups[0]["outcome"] == "reported"


def test_an_officer_sees_only_rows_naming_their_agency(gateway: Gateway) -> None:
    case_id = shared_case(gateway)
    with gateway.as_("rvdk-fg") as rvdk, gateway.as_("reclassering-fg") as reclassering:
        rows = rvdk.post("/v1/audit/subject-report", json={"bsn": BSN_SLACHTOFFER, "caseId": case_id})
        none = reclassering.post("/v1/audit/subject-report", json={"bsn": BSN_SLACHTOFFER, "caseId": case_id})
    assert rows.status_code == 200
    entries = rows.json()["entries"]
    assert entries and all("rvdk" in (r["actor"], r["counterpart"]) for r in entries)
    assert any(r["action"] == "share" and r["allowed"] is False for r in entries)
    # reclassering took no part: its officer sees only their own lookup, which names the case.
    only_own = none.json()["entries"]
    assert [(r["action"], r["actor"], r["caseId"]) for r in only_own] == [
        ("audit.subject_report", "reclassering", case_id)
    ]


def test_paging_through_a_long_report(gateway: Gateway) -> None:
    shared_case(gateway)
    with gateway.as_("auditor") as a:
        whole = a.post("/v1/audit/subject-report", json={"bsn": BSN_KIND, "limit": 1000}).json()
        seen: list[int] = []
        cursor = None
        while True:
            body: dict[str, object] = {"bsn": BSN_KIND, "limit": 2}
            if cursor:
                body["cursor"] = cursor
            page = a.post("/v1/audit/subject-report", json=body).json()
            seen += [r["index"] for r in page["entries"]]
            cursor = page["next"]
            if cursor is None:
                break
    expected = [r["index"] for r in whole["entries"]]
    # Each first page logs one more lookup; every row of the whole report comes back in order.
    assert seen[: len(expected)] == expected


def test_a_bsn_never_shows_up_in_an_error_or_a_log(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with gateway.as_("auditor") as a:
        bad = a.post("/v1/audit/subject-report", json={"bsn": "123456789"})
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["errors"][0]["field"] == "bsn"
        assert "123456789" not in bad.text
        assert a.post("/v1/audit/subject-report", json={}).status_code == 400
        assert a.get("/v1/audit/subject-report").status_code == 405  # no route takes a BSN in a URL
        ok = a.post("/v1/audit/subject-report", json={"bsn": BSN_KIND})
    assert ok.status_code == 200 and BSN_KIND not in ok.text
    server_side = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server_side, "the gateway's own log records should be captured"
    assert not [m for m in server_side if "123456789" in m or BSN_KIND in m]
    with gateway.agency("politie") as system:  # an agency system has no audit scope
        assert system.post("/v1/audit/subject-report", json={"bsn": BSN_KIND}).status_code == 403


# -- the command line, on the running gateway's data directory ---------------------------------------


def data_dir(gw: Gateway) -> Path:
    return gw.runtime.settings.data_dir


def test_cli_report_reads_the_bsn_from_stdin(gateway: Gateway) -> None:
    case_id = shared_case(gateway)
    args = ["audit", "subject-report", "--bsn", "-", "--data-dir", str(data_dir(gateway))]
    result = CliRunner().invoke(cli, args, input=BSN_KIND)
    assert result.exit_code == 0, result.output
    out = result.output
    assert BSN_KIND not in out
    # Plain Dutch: no raw codes, no ids or hashes unless asked for.
    assert "Politie heeft gegevens van het soort ‘Melding’ gedeeld met Veilig Thuis" in out
    assert "Politie wilde gegevens van het soort ‘Melding’ delen met Raad voor de Kinderbescherming" in out
    assert "Redenen: Ontvanger Raad voor de Kinderbescherming neemt geen deel aan stap" in out
    assert "REFUSED" not in out and "None" not in out and case_id not in out
    # rvdk was refused every time: it received nothing, and the summary says so by leaving it out.
    (summary,) = [line for line in out.splitlines() if line.startswith("Organisaties die informatie")]
    assert re.fullmatch(r"Organisaties die informatie ontvingen: Veilig Thuis \(\d+×\)", summary), summary
    technical = CliRunner().invoke(cli, [*args, "--technical"], input=BSN_KIND)
    assert technical.exit_code == 0, technical.output
    assert f"Dossiernummer {case_id}" in technical.output
    note = technical.output[technical.output.index(gateway.runtime.settings.log_origin) :]
    assert verify_checkpoint(note, gateway.runtime.signer.verifier_key()).size > 0


def test_cli_report_as_json_for_one_agency(gateway: Gateway) -> None:
    shared_case(gateway)
    result = CliRunner().invoke(
        cli,
        ["audit", "subject-report", "--json", "--agency", "rvdk", "--data-dir", str(data_dir(gateway))],
        input=BSN_PLEGER + "\n",  # no --bsn: asked for with the input hidden
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output[result.output.index("{") :])
    rows = body["entries"]
    assert rows and all("rvdk" in (r["actor"], r["counterpart"]) for r in rows)
    # The lookup is on record as the operator's, made in rvdk's view.
    assert rows[-1]["action"] == "audit.subject_report"
    assert (rows[-1]["actor"], rows[-1]["counterpart"]) == ("operator", "rvdk")
    signed = verify_checkpoint(body["checkpoint"], gateway.runtime.signer.verifier_key())
    assert signed.size == body["treeSize"]


def test_cli_refuses_a_bad_bsn_without_repeating_it(gateway: Gateway) -> None:
    result = CliRunner().invoke(
        cli, ["audit", "subject-report", "--bsn", "123456789", "--data-dir", str(data_dir(gateway))]
    )
    assert result.exit_code == 2
    assert "not a valid BSN" in result.output and "123456789" not in result.output


def test_cli_refuses_to_invent_a_pseudonym_secret(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["audit", "subject-report", "--bsn", "-", "--data-dir", str(tmp_path)], input=BSN_KIND
    )
    assert result.exit_code == 2
    assert "no pseudonym secret" in result.output
    assert not (tmp_path / "pseudonym.key").exists()


def test_cli_help_warns_about_shell_history() -> None:
    result = CliRunner().invoke(cli, ["audit", "subject-report", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "shell history" in result.output
