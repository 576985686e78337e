"""Subject-access reports: the right rows, the right columns, the officer's view, a fixed tree size."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

import audit._internal.report as report_module
from audit import (
    LogEntry,
    LogSigner,
    ReportRow,
    SqlAuditStore,
    canonical_json,
    report_row,
    subject_report,
)
from tests.audit.conftest import make_entry

PERSON, OTHER = "a" * 64, "b" * 64


def row(entry: dict[str, object], index: int = 7) -> ReportRow:
    return report_row(LogEntry(index, canonical_json(entry)))


def test_a_share_flows_from_the_actor_to_the_counterpart() -> None:
    r = row(make_entry(1, action="share", counterpart="rvdk", outcome="authorised"))
    assert (r.index, r.from_agency, r.to_agency) == (7, "veilig_thuis", "rvdk")
    assert (r.actor, r.counterpart) == ("veilig_thuis", "rvdk")
    assert r.legal_basis == "Wmo 2015 art. 5.2.6"
    assert (r.allowed, r.outcome, r.policy_revision) == (True, "authorised", "rev-1")
    assert (r.information_type, r.purpose, r.case_id) == ("melding", "melding_behandelen", "case-1")
    assert r.time == "2026-11-28T18:00:01.123456Z" and r.trace_id == f"{1:032x}"
    assert r.moves_information
    assert r.as_json()["from"] == "veilig_thuis" and r.as_json()["to"] == "rvdk"


def test_a_request_flows_from_the_holder_to_the_requester() -> None:
    r = row(make_entry(2, action="request", counterpart="politie"))
    assert (r.from_agency, r.to_agency) == ("politie", "om")
    ack = row(make_entry(2, action="ack", counterpart="politie"))
    assert (ack.from_agency, ack.to_agency) == ("politie", "om")


def test_actions_that_move_nothing_have_no_direction() -> None:
    r = row(make_entry(3, action="case.read"))
    assert (r.from_agency, r.to_agency) == (None, None)
    assert not r.moves_information
    assert r.actor == "reclassering"


def test_odd_or_missing_fields_become_none() -> None:
    r = row({"action": 5, "decision": "yes", "actor": ["x"], "time": None})
    assert r == ReportRow(7, *([None] * 15))
    assert report_row(LogEntry(0, b"[1, 2]")).action is None
    assert report_row(LogEntry(0, b"not json")).outcome is None


@pytest.fixture
def store(engine: Engine, signer: LogSigner) -> SqlAuditStore:
    """A log of 30 entries on each database (conftest's ``engine``: SQLite, then PostgreSQL)."""
    s = SqlAuditStore(engine, signer)
    s.append(
        [
            make_entry(i, subjects=[PERSON if i % 3 == 0 else OTHER], counterpart="rvdk" if i % 2 else "om")
            for i in range(30)
        ]
    )
    return s


def test_the_report_lists_every_entry_naming_the_person(store: SqlAuditStore) -> None:
    report = subject_report(store, PERSON)
    assert report.tree_size == 30
    assert [r.index for r in report.rows] == list(range(0, 30, 3))
    assert all(r.action == "share" for r in report.exchanges)
    assert subject_report(store, "c" * 64).rows == ()


def test_an_officer_sees_only_rows_naming_their_agency(store: SqlAuditStore) -> None:
    report = subject_report(store, PERSON, visible_to="rvdk")
    # Entry i names rvdk as counterpart when i is odd, and as actor when i % 5 == 4.
    assert [r.index for r in report.rows] == [i for i in range(0, 30, 3) if i % 2 or i % 5 == 4]
    assert all("rvdk" in (r.actor, r.counterpart) for r in report.rows)


def test_filters_narrow_the_report(store: SqlAuditStore) -> None:
    report = subject_report(store, PERSON, filters={"purpose": "melding_behandelen"})
    assert [r.index for r in report.rows] == [3, 9, 15, 21, 27]


def test_the_report_covers_one_tree_size_and_pages_through_the_log(
    store: SqlAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_module, "MAX_PAGE", 2)  # many pages of two
    report = subject_report(store, PERSON, tree_size=13)
    assert [r.index for r in report.rows] == [0, 3, 6, 9, 12]
    store.append([make_entry(30, subjects=[PERSON])])
    assert [r.index for r in subject_report(store, PERSON).rows][-2:] == [27, 30]
