"""The lawyers' decision table: one row per grant, the basis written out, verified marks from the row
tests, the diff of two revisions, and `gateway policy table --format html|pdf --diff`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from typer.testing import CliRunner

from gateway.cli.policy import app
from gateway.policy._lawtable import LawTable, diff_tables, law_table, written_out
from gateway.policy._source import PolicySource, read_policy, source_from_bytes
from gateway.services.policy_archive import ARCHIVE_DIRECTORY
from tests.policy.conftest import POLICIES

runner = CliRunner()
ROWS_TEST = "veiligdelen/decision/rows_test.rego"
DATA = Path("veiligdelen") / "facts" / "data.json"


def _table(source: PolicySource, tests: dict[str, str] | None = None) -> LawTable:
    return law_table(source.facts, source.test_modules if tests is None else tests, source.revision)


def _row(table: LawTable, type_: str, sender: str, receiver: str) -> Any:
    (row,) = [r for r in table.rows if r.key == (type_, sender, receiver)]
    return row


def _edit_facts(policy_dir: Path, change: Any) -> None:
    path = policy_dir / DATA
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data["grants"])
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def test_one_row_per_grant_with_its_basis_purposes_fields_identities_and_retention() -> None:
    source = read_policy(POLICIES)
    grants = source.facts["grants"]
    count = sum(len(senders) for receivers in grants.values() for senders in receivers.values())
    table = _table(source)
    assert len(table.rows) == count
    row = _row(table, "melding", "veilig_thuis", "rvdk")
    assert (row.information_type_name, row.sender_name, row.receiver_name) == (
        "Melding",
        "Veilig Thuis",
        "Raad voor de Kinderbescherming",
    )
    assert row.legal_basis == "Wmo 2015 art. 4.1.1 lid 2 sub e en f; BW Boek 1 art. 1:240"
    assert row.legal_basis_written_out == (
        "Wet maatschappelijke ondersteuning 2015 (Wmo 2015) artikel 4.1.1 lid 2 sub e en f; "
        "Burgerlijk Wetboek Boek 1 artikel 1:240"
    )
    assert row.purpose_names == ("Onderzoek kinderbescherming",)
    assert "melderType" in row.fields and not any(f.startswith("bsn:") for f in row.fields)
    assert row.identity_labels == ("identiteit van het kind",)
    assert row.retention_days == 30
    assert row.conditions == ("alleen als er een kind in de zaak is",)
    assert [s.step for s in row.steps] == ["onderzoek", "veiligheidsmaatregelen", "veiligheidsplan"]
    assert row.verification.verified, row.verification
    criminal = _row(table, "strafrechtelijke_informatie", "politie", "reclassering")
    assert criminal.retention_days == 14
    assert criminal.identity_labels == ("identiteit van de pleger",)


def test_laws_are_written_out_and_unknown_texts_stay_as_written() -> None:
    assert written_out("Wpg art. 18 lid 1 j° Bpg art. 4:2 lid 1 sub g") == (
        "Wet politiegegevens (Wpg) artikel 18 lid 1 juncto "
        "Besluit politiegegevens (Bpg) artikel 4:2 lid 1 sub g"
    )
    assert written_out("Wjsg; Besluit Wjsg") == (
        "Wet justitiële en strafvorderlijke gegevens (Wjsg); "
        "Besluit justitiële en strafvorderlijke gegevens (Besluit Wjsg)"
    )
    assert written_out("Reclasseringsregeling 1995 art. 8") == "Reclasseringsregeling 1995 artikel 8"


def test_verified_needs_a_current_row_test_that_allows_and_refuses() -> None:
    source = read_policy(POLICIES)
    table = _table(source)
    # The melding from politie to Veilig Thuis serves every purpose of its steps: its test only allows.
    allows_only = _row(table, "melding", "politie", "veilig_thuis").verification
    assert not allows_only.verified
    assert allows_only.reason == "de rijtest toetst alleen waar de rij toestaat, niet waar zij weigert"
    rows_test = source.test_modules[ROWS_TEST]
    name = "test_row_melding__veilig_thuis__rvdk if {"
    assert name in rows_test
    without = law_table(
        source.facts, {ROWS_TEST: rows_test.replace(name, "test_other if {")}, source.revision
    )
    assert (
        _row(without, "melding", "veilig_thuis", "rvdk").verification.reason == "geen rijtest voor deze rij"
    )
    # Only that row loses its mark: the others' tests are still there.
    assert without.verified_count == table.verified_count - 1
    no_tests = law_table(source.facts, None, source.revision)
    assert no_tests.verified_count == 0 and not no_tests.tests_known
    assert table.verified_count > 30


def test_a_changed_purpose_makes_exactly_that_rows_test_stale_and_a_changed_basis_does_not(
    policy_copy: Path,
) -> None:
    def change(grants: dict[str, Any]) -> None:
        grants["veiligheidsplan"]["rvdk"]["veilig_thuis"]["purposes"].remove("maatregelen_afstemmen")
        grants["maatregel"]["politie"]["veilig_thuis"]["legalBasis"] = "Wmo 2015 art. 4.1.1 lid 2 sub e en g"

    before = _table(read_policy(POLICIES))
    _edit_facts(policy_copy, change)
    after = _table(read_policy(policy_copy))  # rows_test.rego not regenerated
    flipped = [
        r.key for r, was in zip(after.rows, before.rows, strict=True) if r.verification != was.verification
    ]
    assert flipped == [("veiligheidsplan", "veilig_thuis", "rvdk")]
    stale = _row(after, "veiligheidsplan", "veilig_thuis", "rvdk").verification
    assert stale.reason == "de rijtest is verouderd (gateway policy row-tests)"
    assert _row(after, "maatregel", "veilig_thuis", "politie").verification.verified


def test_the_diff_names_added_removed_and_changed_rows_and_columns(policy_copy: Path) -> None:
    def change(grants: dict[str, Any]) -> None:
        grants["melding"]["rvdk"]["veilig_thuis"]["legalBasis"] = "Wmo 2015 art. 4.1.1 lid 2 sub e"
        grants["melding"]["rvdk"]["veilig_thuis"]["fields"].remove("melderType")
        del grants["maatregel"]["reclassering"]["om"]
        grants["melding"]["om"] = {"veilig_thuis": dict(grants["melding"]["politie"]["veilig_thuis"])}

    old = _table(read_policy(POLICIES))
    _edit_facts(policy_copy, change)
    new = _table(read_policy(policy_copy))
    diff = diff_tables(old, new)
    assert [(c.new.key, c.columns) for c in diff.changed] == [
        (("melding", "veilig_thuis", "rvdk"), ("legal_basis", "fields"))
    ]
    assert diff.changed[0].column_names == ("grondslag", "gegevens")
    assert [r.key for r in diff.removed] == [("maatregel", "om", "reclassering")]
    assert [r.key for r in diff.added] == [("melding", "veilig_thuis", "om")]
    assert diff_tables(old, old).empty


def test_an_archived_revisions_files_give_the_same_table() -> None:
    source = read_policy(POLICIES)
    raw = [(rel, (POLICIES / rel).read_bytes()) for rel in source.files]
    archived = source_from_bytes(ARCHIVE_DIRECTORY, raw)  # as load_revision rebuilds a revision
    assert archived.revision == source.revision
    assert law_table(archived.facts, archived.test_modules, archived.revision) == _table(source)


def test_cli_html_shows_the_console_rows(tmp_path: Path) -> None:
    html = tmp_path / "beslistabel.html"
    result = runner.invoke(
        app, ["table", "--policy-dir", str(POLICIES), "--format", "html", "--out", str(html)]
    )
    assert result.exit_code == 0, result.output
    text = html.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and "<style>" in text
    row = text.split('id="rij-melding--veilig_thuis--rvdk"', 1)[1].split("</tr>", 1)[0]
    assert "Burgerlijk Wetboek Boek 1 artikel 1:240" in row and "✓ geverifieerd" in row
    assert "identiteit van het kind" in row


def test_cli_diff_and_errors(policy_copy: Path) -> None:
    _edit_facts(policy_copy, lambda g: g["melding"]["rvdk"]["veilig_thuis"].update(retentionDays=7))
    result = runner.invoke(app, ["table", "--policy-dir", str(policy_copy), "--diff", str(POLICIES)])
    assert result.exit_code == 0, result.output
    assert "1 rij gewijzigd, 0 toegevoegd, 0 vervallen." in result.output
    assert "- **Melding: Veilig Thuis → Raad voor de Kinderbescherming** (gewijzigd: bewaartermijn)" in (
        result.output
    )
    assert "bewaartermijn: was 30 dagen\n    wordt 7 dagen" in result.output
    # The diff as a PDF (the whole table's PDF is read back in tests/console/test_decision_table.py).
    pdf = policy_copy.parent / "verschil.pdf"
    args = ["table", "--policy-dir", str(policy_copy), "--diff", str(POLICIES), "-f", "pdf", "-o", str(pdf)]
    assert runner.invoke(app, args).exit_code == 0
    flat = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(pdf.read_bytes())).pages)
    assert flat.startswith("Verschil in de beslistabel Van revisie " + read_policy(POLICIES).revision)
    assert "Bewaartermijn, was 30 dagen wordt 7 dagen" in flat and "pagina 1/1" in flat
    bad = runner.invoke(app, ["table", "--policy-dir", str(POLICIES), "--format", "docx"])
    assert bad.exit_code == 2 and "choose one of markdown, html, pdf" in bad.output
    markdown = runner.invoke(app, ["table", "--policy-dir", str(POLICIES)])
    assert markdown.output.startswith("<!-- decision-table:start")
