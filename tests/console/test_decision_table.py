"""The console's decision table: rows with basis and verified marks, the PDF, the diff of two revisions
(the repository's and an archived, modified copy), and no page without a login."""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from gateway.policy._source import read_policy
from gateway.runtime import Runtime
from gateway.services.policy_archive import archive_revision
from tests.console.conftest import BASE, Console

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _row(html: str, row_id: str) -> str:
    """The <tr> with this id, as text."""
    m = re.search(rf'<tr[^>]* id="{re.escape(row_id)}">(.*?)</tr>', html, re.DOTALL)
    assert m, f"no row {row_id}"
    return m.group(1)


def archive_modified_copy(rt: Runtime) -> str:
    """Archive the repository's policy with one grant's basis and fields changed; its revision."""
    target = Path(tempfile.mkdtemp(prefix="policy-")) / "policies"
    try:
        shutil.copytree(POLICIES, target)
        data_file = target / "veiligdelen" / "facts" / "data.json"
        data = json.loads(data_file.read_text(encoding="utf-8"))
        grant = data["grants"]["melding"]["rvdk"]["veilig_thuis"]
        grant["legalBasis"] = "Wmo 2015 art. 4.1.1 lid 2 sub e"
        grant["fields"].remove("melderType")
        data_file.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        source = read_policy(target)
    finally:
        shutil.rmtree(target.parent)
    archive_revision(rt.db, source, activated=False)  # archived, as a reload would, but never served
    return source.revision


@pytest.fixture(scope="module")
def modified(console: Console) -> str:
    """An archived revision: the repository's policy with one grant's basis and fields changed."""
    return archive_modified_copy(console.runtime)


def test_the_page_shows_each_grant_with_its_basis_and_verified_mark(console: Console) -> None:
    browser = console.login("politie", "privacy_officer")
    r = browser.get("/console/beslistabel")
    assert r.status_code == 200, r.text
    assert "<h1>Beslistabel</h1>" in r.text
    assert 'href="/console/beslistabel" aria-current="page"' in r.text
    assert console.runtime.policy.current.revision in r.text
    verified = _row(r.text, "rij-melding--veilig_thuis--rvdk")
    assert "Burgerlijk Wetboek Boek 1 artikel 1:240" in verified
    assert "Onderzoek kinderbescherming" in verified
    assert "identiteit van het kind" in verified and "bsn:kind" not in verified
    assert "30 dagen" in verified and "✓ geverifieerd" in verified
    unverified = _row(r.text, "rij-melding--politie--veilig_thuis")
    assert "✗ niet geverifieerd" in unverified and "niet waar zij weigert" in unverified
    assert "grondslag niet nagegaan" in unverified
    grants = json.loads((POLICIES / "veiligdelen" / "facts" / "data.json").read_text())["grants"]
    count = sum(len(s) for receivers in grants.values() for s in receivers.values())
    assert len(re.findall(r'<tr id="rij-', r.text)) == count
    assert 'href="/console/beslistabel.pdf"' in r.text
    assert browser.get("/console/beslistabel", params={"lang": "en"}).status_code == 200


def test_the_pdf_is_the_same_table_in_dutch(console: Console) -> None:
    browser = console.login("veilig_thuis", "auditor")
    r = browser.get("/console/beslistabel.pdf")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-disposition"].startswith('attachment; filename="beslistabel-')
    reader = PdfReader(io.BytesIO(r.content))
    flat = " ".join(" ".join(p.extract_text().split()) for p in reader.pages)
    assert flat.startswith(f"Beslistabel Veilig Delen Revisie {console.runtime.policy.current.revision}")
    assert (
        "Wet politiegegevens (Wpg) artikel 18 lid 1 juncto Besluit politiegegevens (Bpg) artikel 4:2" in flat
    )
    assert "Veilig Thuis → Raad voor de Kinderbescherming Verificatie geverifieerd" in flat
    assert "niet geverifieerd: de rijtest toetst alleen waar de rij toestaat" in flat
    assert "identiteit van het kind" in flat and "bsn:kind" not in flat
    assert f"pagina 1/{len(reader.pages)}" in flat and len(reader.pages) > 5


def test_the_diff_shows_exactly_the_changed_row_and_its_columns(console: Console, modified: str) -> None:
    browser = console.login("politie", "privacy_officer")
    page = browser.get("/console/beslistabel")
    assert f'<option value="{modified}"' in page.text  # the archived revision is offered
    active = console.runtime.policy.current.revision
    r = browser.get("/console/beslistabel/verschil", params={"van": active, "naar": modified})
    assert r.status_code == 200, r.text
    assert "1 rij gewijzigd, 0 toegevoegd, 0 vervallen." in r.text
    assert re.findall(r'<tr class="(\w+)-row" id="([^"]+)"', r.text) == [
        ("changed", "gewijzigd-melding--veilig_thuis--rvdk")
    ]
    row = _row(r.text, "gewijzigd-melding--veilig_thuis--rvdk")
    assert "gewijzigd: grondslag, gegevens" in row
    changed = re.findall(r'<td class="changed">(.*?)</td>', row, re.DOTALL)
    assert len(changed) == 2
    assert "Burgerlijk Wetboek" in changed[0].split("<ins>")[0]  # was
    assert "Burgerlijk Wetboek" not in changed[0].split("<ins>")[1]  # wordt
    assert "melderType" in changed[1].split("<ins>")[0] and "melderType" not in changed[1].split("<ins>")[1]
    # The archived revision's own table, and the same revision on both sides.
    archived = browser.get("/console/beslistabel", params={"revisie": modified})
    assert archived.status_code == 200 and "(actief)" not in archived.text.split("<h2")[0]
    same = browser.get("/console/beslistabel/verschil", params={"van": modified, "naar": modified})
    assert "Geen verschil" in same.text


def test_bad_and_unknown_revisions_are_dutch_error_pages(console: Console) -> None:
    browser = console.login()
    bad = browser.get("/console/beslistabel/verschil", params={"van": "999990019", "naar": "x"})
    assert bad.status_code == 400
    assert "geen geldige revisie" in bad.text and "999990019" not in bad.text
    unknown = browser.get("/console/beslistabel.pdf", params={"revisie": "sha256:" + "0" * 64})
    assert unknown.status_code == 404
    missing = browser.get("/console/beslistabel/verschil")
    assert missing.status_code == 400


def test_no_table_without_a_login(console: Console) -> None:
    stranger = TestClient(console.client.app, base_url=BASE)
    for path in ("/console/beslistabel", "/console/beslistabel.pdf", "/console/beslistabel/verschil"):
        r = stranger.get(path)
        assert r.status_code == 401, path
        assert "Beslistabel Veilig Delen" not in r.text and "%PDF" not in r.text
