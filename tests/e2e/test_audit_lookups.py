"""Every lookup of a person leaves a trace, and no request text reaches the permanent log (DESIGN §7).

A subject-access report and a search by BSN are processings of that person's data: every page of either,
over HTTP or from the command line, appends an entry naming the requester and the pseudonym before any
data is returned. Filters are identifiers the gateway checks; indexes and cursors are integers in
0..2^63-1. Everything over real HTTP against a running gateway.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app as cli
from tests.e2e.conftest import BSN_KIND, BSN_PLEGER, BSN_SLACHTOFFER, Gateway, shared_case

LOOKUPS = {"/v1/audit/subject-report": "audit.subject_report", "/v1/audit/search": "audit.search"}
TOO_BIG = str(2**63)
LARGEST = str(2**63 - 1)
BEYOND = "9" * 18  # a well-formed cursor, far past the end of the log
# A BSN smuggled into a filter: it must never reach the log (the subjects themselves are pseudonymised).
SMUGGLED = BSN_SLACHTOFFER


def raw_log(gw: Gateway) -> list[bytes]:
    """The exact hashed bytes of every entry, as an auditor exports them."""
    with gw.as_("auditor") as a:
        r = a.get("/v1/audit/export")
    assert r.status_code == 200
    return [base64.b64decode(json.loads(line)["leafData"]) for line in r.text.splitlines()]


def lookups(gw: Gateway, action: str) -> list[dict[str, Any]]:
    return [e for e in (json.loads(raw) for raw in raw_log(gw)) if e.get("action") == action]


@pytest.mark.parametrize("path", list(LOOKUPS))
def test_every_page_is_logged_before_it_is_answered(gateway: Gateway, path: str) -> None:
    shared_case(gateway)
    action = LOOKUPS[path]
    pseudonym = gateway.runtime.pseudonymizer.pseudonym(BSN_KIND)
    before = len(lookups(gateway, action))
    with gateway.as_("veilig_thuis-fg") as officer:
        first = officer.post(path, json={"bsn": BSN_KIND, "limit": 1})
        assert first.status_code == 200, first.text
        assert len(lookups(gateway, action)) == before + 1
        cursor = first.json()["next"]
        assert cursor, "one row per page: there is a second page"
        second = officer.post(path, json={"bsn": BSN_KIND, "limit": 1, "cursor": cursor})
        assert second.status_code == 200, second.text
        assert len(lookups(gateway, action)) == before + 2
        # "0" is a cursor too: the whole log from the start, and just as much a lookup.
        again = officer.post(path, json={"bsn": BSN_KIND, "cursor": "0"})
        assert again.status_code == 200 and again.json()["entries"]
    logged = lookups(gateway, action)
    assert len(logged) == before + 3
    for e in logged[before:]:
        assert e["type"] == "audit" and e["subjects"] == [pseudonym]
        assert e["actor"] == {"agency": "veilig_thuis", "clientId": "veilig_thuis-fg"}
        assert e["outcome"] in ("reported", "searched") and e["status"] == "ok"
    assert [e["query"]["cursor"] for e in logged[before:]] == [0, int(cursor.split("-")[0]), 0]


@pytest.mark.parametrize("path", list(LOOKUPS))
def test_paging_one_row_at_a_time_ends(gateway: Gateway, path: str) -> None:
    # Each page logs a lookup that names the person; paging must still reach an end.
    shared_case(gateway)
    with gateway.as_("auditor") as a:
        whole = a.post(path, json={"bsn": BSN_PLEGER, "limit": 1000}).json()["entries"]
        seen: list[int] = []
        body: dict[str, Any] = {"bsn": BSN_PLEGER, "limit": 1}
        for _ in range(len(whole) + 5):  # a hang guard, not a timing assumption
            page = a.post(path, json=body).json()
            seen += [e["index"] for e in page["entries"]]
            if page["next"] is None:
                break
            body["cursor"] = page["next"]
        else:
            pytest.fail("paging did not end")
    # The whole report, and the first page's own lookup after it; later pages' lookups are for later.
    assert seen[:-1] == [e["index"] for e in whole] and seen[-1] > seen[-2]


def test_the_command_line_report_is_logged_as_the_operator(gateway: Gateway) -> None:
    shared_case(gateway)
    pseudonym = gateway.runtime.pseudonymizer.pseudonym(BSN_KIND)
    data_dir = str(gateway.runtime.settings.data_dir)
    before = len(lookups(gateway, "audit.subject_report"))
    run = CliRunner().invoke(
        cli,
        ["audit", "subject-report", "--bsn", "-", "--agency", "rvdk", "--data-dir", data_dir],
        input=BSN_KIND,
    )
    assert run.exit_code == 0, run.output
    logged = lookups(gateway, "audit.subject_report")
    assert len(logged) == before + 1
    (entry,) = logged[before:]
    # The operator at the command line made the lookup, in rvdk's view: not rvdk itself.
    assert entry["actor"] == {"agency": "operator", "clientId": "gateway-cli"}
    assert entry["counterpart"] == "rvdk" and entry["subjects"] == [pseudonym]
    # An agency that does not exist is refused, and nothing is logged.
    bad = CliRunner().invoke(
        cli,
        ["audit", "subject-report", "--bsn", "-", "--agency", SMUGGLED, "--data-dir", data_dir],
        input=BSN_KIND,
    )
    assert bad.exit_code == 2 and SMUGGLED not in bad.output
    assert len(lookups(gateway, "audit.subject_report")) == before + 1


@contextmanager
def audit_writes_fail(gw: Gateway) -> Iterator[None]:
    """The database refuses every new audit entry (a fault at the database, not a mock)."""
    db = Path(gw.runtime.settings.data_dir) / "gateway.db"
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute(
            "CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_entries "
            "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )
        conn.commit()
        yield
    finally:
        conn.execute("DROP TRIGGER IF EXISTS test_refuse_audit")
        conn.commit()
        conn.close()


@pytest.mark.parametrize("path", list(LOOKUPS))
def test_no_audit_no_answer(gateway: Gateway, path: str) -> None:
    shared_case(gateway)
    with gateway.as_("auditor") as a:
        with audit_writes_fail(gateway):
            r = a.post(path, json={"bsn": BSN_KIND})
            assert r.status_code == 503, r.text
            assert r.json()["type"].endswith("/audit-unavailable")
            assert "entries" not in r.json()
        assert a.post(path, json={"bsn": BSN_KIND}).status_code == 200


def test_the_command_line_gives_no_report_without_logging_it(gateway: Gateway) -> None:
    data_dir = str(gateway.runtime.settings.data_dir)
    with audit_writes_fail(gateway):
        run = CliRunner().invoke(
            cli, ["audit", "subject-report", "--bsn", "-", "--data-dir", data_dir], input=BSN_KIND
        )
    assert run.exit_code == 1
    assert "audit log could not be written" in run.output and "Traceback" not in run.output
    assert "Subject-access report" not in run.output


# -- filters are validated identifiers --------------------------------------------------------------

FILTERS = ["caseId", "purpose", "type", "informationType", "agency"]


@pytest.mark.parametrize("field", FILTERS)
@pytest.mark.parametrize("path", [*LOOKUPS, "/v1/audit/entries"])
def test_a_bsn_in_a_filter_is_refused_and_never_logged(gateway: Gateway, path: str, field: str) -> None:
    with gateway.as_("auditor") as a:
        if path == "/v1/audit/entries":
            r = a.get(path, params={field: SMUGGLED})
        else:
            r = a.post(path, json={"bsn": BSN_KIND, field: SMUGGLED})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == field
    assert SMUGGLED not in r.text
    assert not [raw for raw in raw_log(gateway) if SMUGGLED.encode() in raw]


@pytest.mark.parametrize("field", ["purpose", "type", "informationType"])
def test_an_unknown_identifier_is_refused(gateway: Gateway, field: str) -> None:
    with gateway.as_("auditor") as a:
        for path in LOOKUPS:
            r = a.post(path, json={"bsn": BSN_KIND, field: "no_such_thing"})
            assert r.status_code == 400, r.text
            assert r.json()["errors"][0]["field"] == field
        assert a.get("/v1/audit/entries", params={field: "no_such_thing"}).status_code == 400


def test_a_case_id_is_logged_only_when_it_names_a_case(gateway: Gateway) -> None:
    case_id = shared_case(gateway)
    # Shaped like a case id, but made up, with a BSN in it: answered (nothing matches), never written.
    made_up = f"00000000-0000-4000-8000-{SMUGGLED}000"
    with gateway.as_("auditor") as a:
        for path in LOOKUPS:
            real = a.post(path, json={"bsn": BSN_KIND, "caseId": case_id, "purpose": "veiligheid_herstellen"})
            assert real.status_code == 200, real.text
            fake = a.post(path, json={"bsn": BSN_KIND, "caseId": made_up})
            assert fake.status_code == 200 and fake.json()["entries"] == []
            assert SMUGGLED not in fake.text
    assert not [raw for raw in raw_log(gateway) if SMUGGLED.encode() in raw]
    report = lookups(gateway, "audit.subject_report")
    assert report[-2]["caseId"] == case_id and report[-2]["query"]["purpose"] == "veiligheid_herstellen"
    # The filter is the lookup's, not a processing for that purpose: it is not the entry's purpose.
    assert "purpose" not in report[-2]
    assert "caseId" not in report[-1]


def test_report_rows_hold_only_what_the_gateway_wrote(gateway: Gateway) -> None:
    case_id = shared_case(gateway)
    with gateway.as_("auditor") as a:
        body = {
            "bsn": BSN_KIND,
            "caseId": case_id,
            "agency": "politie",
            "type": "exchange",
            "informationType": "melding",
            "from": "2000-01-01T00:00:00+02:00",
        }
        r = a.post("/v1/audit/subject-report", json=body)
    assert r.status_code == 200, r.text
    rows = r.json()["entries"]
    assert rows and {row["type"] for row in rows} == {"exchange"}
    for row in rows:
        assert row["caseId"] == case_id and row["informationType"] == "melding"
        assert row["purpose"] == "veiligheid_herstellen"
    logged = lookups(gateway, "audit.subject_report")[-1]
    assert logged["query"] == {
        "agency": "politie",
        "type": "exchange",
        "informationType": "melding",
        "from": "1999-12-31T22:00:00.000000Z",
        "cursor": 0,
        "limit": 100,
    }


# -- indexes, cursors and limits: 0..2^63-1, else a 400 naming the field ------------------------------

BAD_NUMBERS = [TOO_BIG, "-1", "abc", "1e3", "9" * 5000, "1.5"]


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_an_entry_index_out_of_range_is_a_400(gateway: Gateway, value: str) -> None:
    with gateway.as_("auditor") as a:
        r = a.get(f"/v1/audit/entries/{value}")
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "index"


def test_the_largest_index_is_beyond_the_log(gateway: Gateway) -> None:
    with gateway.as_("auditor") as a:
        assert a.get(f"/v1/audit/entries/{LARGEST}").status_code == 404
        # In range, but a tree the log has not reached: nothing there, like an index past the end.
        r = a.get("/v1/audit/proofs/inclusion", params={"index": 0, "treeSize": LARGEST})
        assert r.status_code == 404 and r.json()["errors"][0]["field"] == "treeSize"
        r = a.get("/v1/audit/proofs/consistency", params={"from": 1, "to": LARGEST})
        assert r.status_code == 404 and r.json()["errors"][0]["field"] == "to"
        r = a.get("/v1/audit/export", params={"start": LARGEST})
        assert r.status_code == 200 and r.text == ""


PROOF_PARAMS = [
    ("/v1/audit/proofs/inclusion", "index", {"index": 0, "treeSize": 1}),
    ("/v1/audit/proofs/inclusion", "treeSize", {"index": 0, "treeSize": 1}),
    ("/v1/audit/proofs/consistency", "from", {"from": 1, "to": 1}),
    ("/v1/audit/proofs/consistency", "to", {"from": 1, "to": 1}),
    ("/v1/audit/export", "start", {}),
    ("/v1/audit/export", "end", {}),
    ("/v1/audit/entries", "limit", {}),
    ("/v1/audit/entries", "cursor", {}),
]


@pytest.mark.parametrize("value", [*BAD_NUMBERS, ""])
@pytest.mark.parametrize(("path", "field", "others"), PROOF_PARAMS)
def test_query_numbers_out_of_range_are_a_400(
    gateway: Gateway, path: str, field: str, others: dict[str, Any], value: str
) -> None:
    with gateway.as_("auditor") as a:
        r = a.get(path, params={**others, field: value})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field


@pytest.mark.parametrize("path", list(LOOKUPS))
@pytest.mark.parametrize(
    "cursor",
    [
        TOO_BIG,
        LARGEST,
        f"0-{TOO_BIG}",
        "-1",
        "abc",
        "1e3",
        "9" * 5000,
        "",
        " 1",
        "1-2-3",
        5,
        None,
        f"0-{LARGEST}",
        BEYOND,
        f"0-{BEYOND}",
    ],
)
def test_a_bad_cursor_is_refused_before_anything_is_logged(gateway: Gateway, path: str, cursor: Any) -> None:
    before = len(raw_log(gateway))
    with gateway.as_("auditor") as a:
        r = a.post(
            path, json={"bsn": BSN_KIND, "cursor": cursor} if cursor is not None else {"bsn": BSN_KIND}
        )
        if cursor is None:
            # No cursor at all is fine; an explicit JSON null is too (the first page).
            assert r.status_code == 200
            return
        # Well-formed but past the end of the log names no page (404); anything else is malformed (400),
        # 2^63-1 too: a cursor has at most 18 digits, always within the database's integers.
        assert r.status_code == (404 if cursor in (BEYOND, f"0-{BEYOND}") else 400), r.text
        assert r.json()["errors"][0]["field"] == "cursor"
        assert len(raw_log(gateway)) == before


@pytest.mark.parametrize("path", list(LOOKUPS))
@pytest.mark.parametrize("limit", [0, -1, 2**63, 1001, "5", 2e3, 2.5, True, None, float("inf")])
def test_a_bad_limit_in_a_body_is_refused(gateway: Gateway, path: str, limit: Any) -> None:
    with gateway.as_("auditor") as a:
        r = a.post(
            path,
            content=json.dumps({"bsn": BSN_KIND, "limit": limit}),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400, r.text
        if limit != float("inf"):  # "Infinity" is not JSON at all: refused before any field
            assert r.json()["errors"][0]["field"] == "limit"
        # 5.0 is the integer 5 to JSON Schema, and so to the gateway.
        assert a.post(path, json={"bsn": BSN_KIND, "limit": 5.0}).status_code == 200


@pytest.mark.parametrize("path", list(LOOKUPS))
def test_a_cursor_bound_below_its_start_is_an_empty_page(gateway: Gateway, path: str) -> None:
    before = len(lookups(gateway, LOOKUPS[path]))
    with gateway.as_("auditor") as a:
        r = a.post(path, json={"bsn": BSN_KIND, "cursor": "2-1"})
    assert r.status_code == 200 and (r.json()["entries"], r.json()["next"]) == ([], None)
    assert len(lookups(gateway, LOOKUPS[path])) == before + 1  # still a lookup of the person


@pytest.mark.parametrize("path", list(LOOKUPS))
@pytest.mark.parametrize("when", [0, 1764000000, True, {"t": 1}, "0.5", "1764000000", "2026-12-01"])
def test_a_time_is_rfc3339_text(gateway: Gateway, path: str, when: Any) -> None:
    with gateway.as_("auditor") as a:
        for field in ("from", "to"):
            r = a.post(path, json={"bsn": BSN_KIND, field: when})
            assert r.status_code == 400, r.text
            assert r.json()["errors"][0]["field"] == field
            if isinstance(when, str):
                r = a.get("/v1/audit/entries", params={field: when})
                assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, r.text


def test_a_time_range_that_ends_before_it_starts_matches_nothing(gateway: Gateway) -> None:
    shared_case(gateway)
    with gateway.as_("auditor") as a:
        r = a.get("/v1/audit/entries", params={"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["entries"] == []


def test_a_proof_that_cannot_exist_is_not_found(gateway: Gateway) -> None:
    shared_case(gateway)
    with gateway.as_("auditor") as a:
        r = a.get("/v1/audit/proofs/inclusion", params={"index": 1, "treeSize": 1})
        assert r.status_code == 404 and r.json()["errors"][0]["field"] == "index"
        r = a.get("/v1/audit/proofs/consistency", params={"from": 2, "to": 1})
        assert r.status_code == 404 and r.json()["errors"][0]["field"] == "from"


def test_a_cursor_beyond_the_log_on_the_listing(gateway: Gateway) -> None:
    with gateway.as_("auditor") as a:
        for cursor in (TOO_BIG, LARGEST, "-1", "1e3", "9" * 5000, "0-1"):
            r = a.get("/v1/audit/entries", params={"cursor": cursor})
            assert r.status_code == 400 and r.json()["errors"][0]["field"] == "cursor", (cursor, r.text)
        r = a.get("/v1/audit/entries", params={"cursor": BEYOND})
        assert r.status_code == 404 and r.json()["errors"][0]["field"] == "cursor"
        assert "beyond the log" in r.json()["errors"][0]["message"]


def test_no_lookup_route_takes_a_bsn_in_the_url(gateway: Gateway) -> None:
    with gateway.as_("auditor") as a:
        r = a.get("/v1/audit/search", params={"bsn": BSN_KIND})
    assert r.status_code == 405
