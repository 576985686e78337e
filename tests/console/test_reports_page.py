"""The console's reports page: forms with CSRF, files as downloads, every report logged, no BSN echoed."""

from __future__ import annotations

import io

from pypdf import PdfReader

from tests.console.conftest import BSN_SLACHTOFFER, Console, csrf


def _audits(console: Console, action: str) -> list[dict[str, object]]:
    size = console.runtime.audit.size()
    found = [console.runtime.audit.entry(i) for i in range(size)]
    return [e.entry for e in found if e is not None and e.entry.get("action") == action]


def test_a_subject_report_downloads_as_pdf_and_csv_and_is_logged(console: Console) -> None:
    browser = console.login("politie", "privacy_officer")
    form = browser.get("/console/rapportages")
    assert form.status_code == 200
    assert 'action="/console/rapportages/inzage"' in form.text
    token = csrf(form.text)
    before = len(_audits(console, "audit.subject_report"))
    pdf = browser.post(
        "/console/rapportages/inzage", data={"csrf": token, "bsn": BSN_SLACHTOFFER, "format": "pdf"}
    )
    assert pdf.status_code == 200, pdf.text
    assert pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["cache-control"] == "no-store"
    assert pdf.headers["content-disposition"].startswith('attachment; filename="inzage-')
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert BSN_SLACHTOFFER not in text
    assert "Informatie gedeeld" in text or "Delen geweigerd" in text
    csv = browser.post(
        "/console/rapportages/inzage",
        data={"csrf": token, "bsn": BSN_SLACHTOFFER, "format": "csv", "lang": "en"},
    )
    assert csv.status_code == 200
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert csv.headers["content-disposition"].startswith('attachment; filename="subject-report-')
    assert BSN_SLACHTOFFER not in csv.text
    logged = _audits(console, "audit.subject_report")
    assert len(logged) == before + 2
    assert logged[-1]["actor"]["agency"] == "politie"  # type: ignore[index]
    assert logged[-1]["query"] == {"format": "csv", "via": "console"}
    assert logged[-1]["subjects"] == [console.runtime.pseudonymizer.pseudonym(BSN_SLACHTOFFER)]


def test_a_case_report_downloads_and_names_the_case(console: Console) -> None:
    browser = console.login()
    page = browser.get(f"/console/rapportages?caseId={console.case_id}")
    assert f'value="{console.case_id}"' in page.text
    r = browser.post(
        "/console/rapportages/zaak",
        data={"csrf": csrf(page.text), "caseId": console.case_id, "format": "csv"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].startswith('attachment; filename="dossier-')
    head = r.content.decode("utf-8").splitlines()[0]
    assert head.lstrip("\ufeff").startswith("Datum en tijd;Handeling;")
    assert "Delen geweigerd" in r.text  # rvdk's refusal, with its reason
    assert _audits(console, "audit.case_report")[-1]["caseId"] == console.case_id


def test_bad_input_comes_back_as_a_dutch_page_without_the_input(console: Console) -> None:
    browser = console.login()
    token = csrf(browser.get("/console/rapportages").text)
    before = console.runtime.audit.size()
    bad_bsn = browser.post("/console/rapportages/inzage", data={"csrf": token, "bsn": "123456780"})
    assert bad_bsn.status_code == 400
    assert "geen geldig burgerservicenummer" in bad_bsn.text
    assert "123456780" not in bad_bsn.text
    unknown = browser.post("/console/rapportages/zaak", data={"csrf": token, "caseId": BSN_SLACHTOFFER})
    assert unknown.status_code == 404
    assert "geen zaak met dit nummer" in unknown.text
    assert BSN_SLACHTOFFER not in unknown.text
    fmt = browser.post(
        "/console/rapportages/inzage", data={"csrf": token, "bsn": BSN_SLACHTOFFER, "format": "docx"}
    )
    assert fmt.status_code == 400
    assert BSN_SLACHTOFFER not in fmt.text
    too_long = browser.post("/console/rapportages/inzage", data={"csrf": token, "bsn": "9" * 40})
    assert too_long.status_code == 400
    assert "9" * 40 not in too_long.text
    assert console.runtime.audit.size() == before  # nothing refused is logged


def test_the_forms_need_the_session_and_its_csrf_field(console: Console) -> None:
    browser = console.login()
    forged = browser.post("/console/rapportages/inzage", data={"csrf": "x", "bsn": BSN_SLACHTOFFER})
    assert forged.status_code == 403
    stranger = console.client.__class__(console.client.app, base_url=str(console.client.base_url))
    assert stranger.post("/console/rapportages/zaak", data={"caseId": console.case_id}).status_code == 401
    assert stranger.get("/console/rapportages").status_code == 401
