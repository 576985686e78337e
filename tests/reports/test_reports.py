"""Reports for people, built from a real gateway's log: plain Dutch, refusals with reasons, verifiable."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from pypdf import PdfReader

import audit
from gateway.auth import Principal
from gateway.services.reports import (
    Report,
    build_case_report,
    build_subject_report,
    render_csv,
    render_pdf,
    render_text,
)
from tests.audit import tamper
from tests.e2e.conftest import BSN_KIND, Gateway

OFFICER = Principal(client_id="rvdk-fg", agency="rvdk", role="privacy_officer", scopes=frozenset({"audit"}))
AUDITOR = Principal(
    client_id="auditor", agency="veilig_thuis", role="auditor", scopes=frozenset({"audit:all"})
)
HEX = re.compile(r"\b[0-9a-f]{16,}\b")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
CSV_HEADINGS = [
    "Datum en tijd",
    "Handeling",
    "Door",
    "Van",
    "Aan",
    "Soort informatie",
    "Doel",
    "Grondslag",
    "Besluit",
    "Redenen",
    "Dossier",
    "Omschrijving",
    "Controle",
]


def subject(gw: Gateway, **kw: object) -> Report:
    rt = gw.runtime
    args: dict[str, object] = {"facts": rt.policy.current.facts(), "requested_by": AUDITOR} | kw
    return build_subject_report(rt.audit, rt.pseudonymizer.pseudonym(BSN_KIND), **args)  # type: ignore[arg-type]


def test_the_dutch_report_says_what_happened_in_plain_words(gateway: Gateway, case_id: str) -> None:
    report = subject(gateway)
    text = render_text(report)
    assert "Politie heeft gegevens van het soort ‘Melding’ gedeeld met Veilig Thuis" in text
    assert "voor het doel ‘Fysieke veiligheid herstellen’" in text
    # The refusal, with its reasons in Dutch and the names of the agencies, not their identifiers.
    refused = next(r for r in report.rows if r.allowed is False)
    assert refused.what == "Delen geweigerd" and refused.decision == "geweigerd"
    assert refused.recipient == "niemand (er is niets verstrekt)"
    assert any(
        r.startswith("Ontvanger Raad voor de Kinderbescherming neemt geen deel aan stap Acuut onveilig")
        for r in refused.reasons
    ), refused.reasons
    assert "Geen grondslag voor Politie om Melding te verstrekken aan Raad voor de Kinderbescherming" in (
        refused.reasons
    )
    # data.json marks the politie -> veilig_thuis melding grant unverified: the report says so.
    shared = next(r for r in report.rows if r.what == "Informatie gedeeld")
    assert shared.legal_basis.endswith("— niet geverifieerd") and shared.legal_basis_verified is False
    # Nothing a person cannot read: no None, no raw codes, no hashes, ids or pseudonyms.
    pseudonym = gateway.runtime.pseudonymizer.pseudonym(BSN_KIND)
    for bad in ("None", "REFUSED", "refused", "veilig_thuis", "melding_behandelen", pseudonym, BSN_KIND):
        assert bad not in text, bad
    assert not HEX.search(text) and not UUID.search(text) and case_id not in text
    assert report.verified and "alle" in report.verification and "gecontroleerd" in report.verification
    assert ("Organisaties die informatie ontvingen", "Veilig Thuis (2×)") == report.summary


def test_english_is_available(gateway: Gateway, case_id: str) -> None:
    text = render_text(subject(gateway, lang="en"))
    assert "Politie shared information of the kind ‘Report of (suspected) domestic violence" in text
    assert "Recipient Child Protection Board does not take part in step Acutely unsafe" in text
    assert "None" not in text and "REFUSED" not in text


def test_an_officer_sees_only_entries_naming_its_agency(gateway: Gateway, case_id: str) -> None:
    report = subject(gateway, visible_to="rvdk", technical=True, requested_by=OFFICER)
    assert report.rows
    for row in report.rows:
        entry = gateway.runtime.audit.entry(row.index)
        assert entry is not None
        e = entry.entry
        assert "rvdk" in (e["actor"]["agency"], e.get("counterpart")), e
    header = dict(report.header)
    assert header["Weergave"] == "alleen vermeldingen waarin Raad voor de Kinderbescherming voorkomt"
    assert (
        header["Opgevraagd door"] == "de functionaris gegevensbescherming van Raad voor de Kinderbescherming"
    )


def test_technical_mode_adds_index_hash_trace_and_pseudonym(gateway: Gateway, case_id: str) -> None:
    report = subject(gateway, technical=True)
    rows = list(csv.reader(io.StringIO(render_csv(report).removeprefix("\ufeff")), delimiter=";"))
    headings = rows[0]
    assert headings[: len(CSV_HEADINGS)] == CSV_HEADINGS
    assert headings[len(CSV_HEADINGS) :] == [
        "Volgnummer",
        "Leaf-hash",
        "Trace-id",
        "Beleidsversie",
        "Dossiernummer",
    ]
    indexes = [int(r[headings.index("Volgnummer")]) for r in rows[1:]]
    assert indexes == [r.index for r in report.rows] and indexes == sorted(indexes)
    for r in report.rows:
        assert r.technical is not None and len(r.technical.leaf_hash) == 64
    assert case_id in {r[headings.index("Dossiernummer")] for r in rows[1:]}
    text = render_text(report)
    assert gateway.runtime.pseudonymizer.pseudonym(BSN_KIND) in text
    assert gateway.runtime.settings.log_origin in text  # the signed checkpoint, to check the rows against


def test_csv_opens_in_dutch_excel(gateway: Gateway, case_id: str) -> None:
    data = render_csv(subject(gateway))
    assert data.startswith("\ufeff") and "\r\n" in data
    rows = list(csv.reader(io.StringIO(data.encode("utf-8").decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == CSV_HEADINGS
    by_heading = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    refused = [r for r in by_heading if r["Besluit"] == "geweigerd"]
    assert refused and "neemt geen deel aan stap" in refused[0]["Redenen"]
    assert {r["Dossier"] for r in by_heading} == {"dossier 1"}


def test_the_pdf_reads_back_with_the_dutch_phrases(gateway: Gateway, case_id: str, tmp_path: Path) -> None:
    pdf = render_pdf(subject(gateway))
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    text = " ".join(page.extract_text() for page in reader.pages)
    flat = re.sub(r"\s+", " ", text)
    for expected in (
        "Overzicht van uitwisselingen van uw gegevens",
        "de persoon met het opgegeven BSN",
        "Delen geweigerd",
        "Raad voor de Kinderbescherming",
        "niet geverifieerd",
        "gecontroleerd",
    ):
        assert expected in flat, expected
    assert "None" not in flat and "REFUSED" not in flat and BSN_KIND not in flat


def test_the_case_report_follows_the_case(gateway: Gateway, case_id: str) -> None:
    rt = gateway.runtime
    report = build_case_report(rt.audit, case_id, facts=rt.policy.current.facts(), requested_by=AUDITOR)
    steps = ["Dossier geopend", "Informatie gedeeld", "Delen geweigerd", "Stap gewijzigd"]
    assert [r.what for r in report.rows if r.what in steps] == steps
    (moved,) = [r for r in report.rows if r.what == "Stap gewijzigd"]
    assert moved.sentence == (
        "Politie heeft het dossier van Acuut onveilig, stap fysieke veiligheid naar Acuut onveilig, stap "
        "motorkapoverleg verplaatst."
    )
    assert dict(report.header)["Over"] == f"dossier {case_id}"
    text = render_text(report)
    assert "None" not in text and "REFUSED" not in text and not HEX.search(text)


def test_a_failed_inclusion_check_is_shown_not_hidden(tmp_path: Path) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    audit.metadata.create_all(engine)
    with engine.begin() as conn:
        audit.install_append_only_triggers(conn)
    signer = audit.LogSigner(audit.load_or_create_signing_key(tmp_path / "key.pem"), "example.org/audit")
    store = audit.SqlAuditStore(engine, signer)
    entry = {"type": "case", "action": "case.read", "outcome": "read", "caseId": "c-1", "subjects": ["p-1"]}
    store.append(
        [{**entry, "actor": {"agency": "politie"}, "time": f"2026-12-0{i + 1}T10:00:00Z"} for i in range(3)]
    )
    tamper.drop_triggers(engine)
    edited = json.dumps({**entry, "actor": {"agency": "om"}}).encode()
    tamper.sql(engine, "UPDATE audit_entries SET leaf_data = :d WHERE idx = 1", d=edited)
    facts = json.loads(Path("policies/veiligdelen/facts/data.json").read_text())
    report = build_subject_report(store, "p-1", facts=facts, requested_by=AUDITOR)
    assert report.failed == (1,) and not report.verified
    assert report.verification == "LET OP: bij 1 van de 3 vermeldingen is de controle mislukt (gemarkeerd)"
    assert [r.proof for r in report.rows] == ["gecontroleerd", "CONTROLE MISLUKT", "gecontroleerd"]
    assert "[CONTROLE MISLUKT]" in render_text(report)
    flat = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(report))).pages)
    assert "CONTROLE MISLUKT" in flat and "LET OP" in flat


@pytest.mark.parametrize("lang", ["nl", "en"])
def test_an_entry_of_an_unknown_kind_is_still_a_phrase(lang: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    audit.metadata.create_all(engine)
    signer = audit.LogSigner(audit.load_or_create_signing_key(tmp_path / "key.pem"), "example.org/audit")
    store = audit.SqlAuditStore(engine, signer)
    store.append([{"type": "future", "action": "something.new", "subjects": ["p-1"]}])
    facts = json.loads(Path("policies/veiligdelen/facts/data.json").read_text())
    report = build_subject_report(store, "p-1", facts=facts, requested_by=AUDITOR, lang=lang)  # type: ignore[arg-type]
    text = render_text(report) + render_csv(report)
    assert "None" not in text and "something" not in text and "future" not in text
    (row,) = report.rows
    assert row.what == {"nl": "Andere handeling", "en": "Other action"}[lang]
    assert row.case == {"nl": "geen dossier", "en": "no case"}[lang]
    assert row.when == {"nl": "onbekend tijdstip", "en": "unknown time"}[lang]


def test_without_dejavu_the_pdf_falls_back_to_a_core_font(
    gateway: Gateway, case_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.services import pdf_pages

    monkeypatch.setattr(pdf_pages, "FONT_DIRS", ())
    flat = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(render_pdf(subject(gateway)))).pages)
    assert "Delen geweigerd" in flat and "Raad voor de Kinderbescherming" in flat
