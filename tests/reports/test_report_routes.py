"""Reports over HTTP (Accept: application/pdf, text/csv) and from the command line, each one logged."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from pypdf import PdfReader
from typer.testing import CliRunner

from gateway.api.audit import wanted_format
from gateway.cli import app as cli
from tests.e2e.conftest import BSN_KIND, Gateway


def test_accept_picks_the_format() -> None:
    assert wanted_format(None) == "json"
    assert wanted_format("*/*") == "json"
    assert wanted_format("application/pdf") == "pdf"
    assert wanted_format("text/csv;q=0.5, application/pdf;q=0.9") == "pdf"
    assert wanted_format("text/csv, application/json") == "csv"
    assert wanted_format("image/png") == "json"


def test_subject_report_as_pdf_and_csv(gateway: Gateway, case_id: str) -> None:
    with gateway.as_("auditor") as a:
        pdf = a.post(
            "/v1/audit/subject-report", json={"bsn": BSN_KIND}, headers={"Accept": "application/pdf"}
        )
        data = a.post("/v1/audit/subject-report", json={"bsn": BSN_KIND}, headers={"Accept": "text/csv"})
        body = a.post("/v1/audit/subject-report", json={"bsn": BSN_KIND}).json()
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"].startswith('attachment; filename="inzage-')
    assert pdf.headers["cache-control"] == "no-store"
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Delen geweigerd" in text and "een auditor (Veilig Thuis)" in text
    assert data.status_code == 200 and data.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(data.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:2] == ["Datum en tijd", "Handeling"] and len(rows) > 3
    # JSON keeps its contract, and its refused rows now carry their reasons, also in Dutch with names.
    refused = next(r for r in body["entries"] if r["allowed"] is False)
    assert refused["outcome"] == "refused" and refused["to"] == "rvdk"
    nl = [r["messageNl"] for r in refused["reasons"]]
    assert any(m.startswith("Ontvanger Raad voor de Kinderbescherming neemt geen deel") for m in nl), nl
    # Each file was a lookup of the person, logged before it was made.
    lookups = [r for r in body["entries"] if r["action"] == "audit.subject_report"]
    assert len(lookups) >= 3 and {r["outcome"] for r in lookups} == {"reported"}


def test_case_report_for_an_officer_holds_only_its_agency(gateway: Gateway, case_id: str) -> None:
    with gateway.as_("rvdk-fg") as officer, gateway.as_("auditor") as auditor:
        mine = officer.post("/v1/audit/case-report", json={"caseId": case_id})
        whole = auditor.post("/v1/audit/case-report", json={"caseId": case_id})
        pdf = officer.post(
            "/v1/audit/case-report", json={"caseId": case_id}, headers={"Accept": "application/pdf"}
        )
        unknown = officer.post(
            "/v1/audit/case-report", json={"caseId": "00000000-0000-4000-8000-000000000000"}
        )
        bad = officer.post("/v1/audit/case-report", json={"caseId": BSN_KIND})
        english = auditor.post(
            "/v1/audit/case-report?lang=en", json={"caseId": case_id}, headers={"Accept": "text/csv"}
        )
    assert mine.status_code == 200, mine.text
    rows = mine.json()["entries"]
    assert rows and all("rvdk" in (r["actor"], r["counterpart"]) for r in rows)
    assert len(whole.json()["entries"]) > len(rows)
    # The lookup is logged, naming the case: the officer's own entry is the last of its report.
    assert (rows[-1]["action"], rows[-1]["actor"], rows[-1]["caseId"]) == (
        "audit.case_report",
        "rvdk",
        case_id,
    )
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert pdf.headers["content-disposition"].startswith('attachment; filename="dossier-')
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert (
        bad.status_code == 400 and bad.json()["errors"][0]["field"] == "caseId" and BSN_KIND not in bad.text
    )
    assert english.status_code == 200 and "Date and time;Action" in english.content.decode("utf-8-sig")
    with gateway.agency("politie") as system:  # an agency system has no audit scope
        assert system.post("/v1/audit/case-report", json={"caseId": case_id}).status_code == 403


def test_cli_writes_pdf_and_csv_files(gateway: Gateway, case_id: str, tmp_path: Path) -> None:
    data_dir = str(gateway.runtime.settings.data_dir)
    pdf_file, csv_file = tmp_path / "inzage.pdf", tmp_path / "dossier.csv"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "audit",
            "subject-report",
            "--bsn",
            "-",
            "--format",
            "pdf",
            "-o",
            str(pdf_file),
            "--data-dir",
            data_dir,
        ],
        input=BSN_KIND,
    )
    assert result.exit_code == 0, result.output
    assert os.stat(pdf_file).st_mode & 0o777 == 0o600
    text = " ".join(p.extract_text() for p in PdfReader(pdf_file).pages)
    assert "de beheerder van de gateway" in text and "Informatie gedeeld" in text
    result = runner.invoke(
        cli, ["audit", "case-report", case_id, "--format", "csv", "-o", str(csv_file), "--data-dir", data_dir]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(csv_file.read_text(encoding="utf-8-sig")), delimiter=";"))
    assert rows[1][1] == "Dossier geopend"
    assert rows[-1][1] == "Dossieroverzicht opgevraagd"  # the report's own lookup, logged first
    text_out = runner.invoke(cli, ["audit", "case-report", case_id, "--data-dir", data_dir])
    assert text_out.exit_code == 0 and "Stap gewijzigd" in text_out.output and "None" not in text_out.output
    no_file = runner.invoke(cli, ["audit", "case-report", case_id, "--format", "pdf", "--data-dir", data_dir])
    assert no_file.exit_code == 2 and "error: a pdf report needs --output FILE" in no_file.output
    unknown = runner.invoke(cli, ["audit", "case-report", BSN_KIND, "--data-dir", data_dir])
    assert unknown.exit_code == 1 and "error: no case with that id" in unknown.output
    assert BSN_KIND not in unknown.output
