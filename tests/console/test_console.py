"""The console's pages in-process: login, sessions, CSRF, visibility, search, entries, cases, integrity."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time

import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.cli import app as cli
from gateway.console import sessions
from gateway.services.trail import CallContext, make_entry
from gateway.tracing import from_header
from tests.audit.tamper import drop_triggers
from tests.console.conftest import BASE, BSN_SLACHTOFFER, Console, csrf, make_runtime


def _entries(console: Console, start: int = 0) -> list[dict[str, object]]:
    return [e.entry for e in console.runtime.audit.iter_entries(start)]


def test_a_login_link_works_once_and_leaves_the_address_bar(console: Console) -> None:
    browser = TestClient(console.client.app, base_url=BASE)
    token = sessions.mint_login_token(console.runtime.db, "politie", "privacy_officer")
    r = browser.get(f"/console/login?token={token}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert browser.get("/console/").status_code == 200
    again = TestClient(console.client.app, base_url=BASE).get(f"/console/login?token={token}")
    assert again.status_code == 410 and "Deze inloglink is al gebruikt" in again.text
    unknown = TestClient(console.client.app, base_url=BASE).get("/console/login?token=nietsnut")
    assert unknown.status_code == 400 and "ongeldig" in unknown.text


def test_an_expired_link_is_refused(console: Console) -> None:
    token = sessions.mint_login_token(console.runtime.db, "politie", "auditor")
    with console.runtime.db.begin() as conn:
        conn.execute(sa.update(sessions.login_links).values(expires_at=dt.datetime.now(dt.UTC)))
    r = TestClient(console.client.app, base_url=BASE).get(f"/console/login?token={token}")
    assert r.status_code == 410 and "verlopen" in r.text


def test_sessions_expire_idle_and_absolutely(console: Console, monkeypatch: object) -> None:
    browser = console.login()
    assert browser.get("/console/").status_code == 200
    now = time.time()
    for later in (now + sessions.IDLE_SECONDS + 5, now + sessions.ABSOLUTE_SECONDS + 5):
        monkeypatch.setattr(sessions.time, "time", lambda later=later: later)  # type: ignore[attr-defined]
        r = browser.get("/console/")
        assert r.status_code == 401 and "niet ingelogd" in r.text
        monkeypatch.undo()  # type: ignore[attr-defined]
        browser = console.login()
    assert TestClient(console.client.app, base_url=BASE).get("/console/integriteit").status_code == 401


def test_every_form_needs_the_sessions_csrf_token(console: Console) -> None:
    browser = console.login()
    for path, data in [
        ("/console/zoeken", {"bsn": BSN_SLACHTOFFER}),
        ("/console/integriteit/controle", {}),
        ("/console/logout", {}),
    ]:
        for token in (None, "vervalst"):
            r = browser.post(path, data=data | ({"csrf": token} if token else {}))
            assert r.status_code == 403 and "Het formulier is verlopen" in r.text, path
    assert browser.get("/console/").status_code == 200  # still logged in: the forged logout did nothing


def test_an_officer_sees_its_agencys_entries_an_auditor_all(console: Console) -> None:
    url = f"/console/?caseId={console.case_id}"
    auditor = console.login("om", "auditor").get(url)
    politie = console.login("politie", "privacy_officer").get(url)
    om = console.login("om", "privacy_officer").get(url)
    assert auditor.status_code == politie.status_code == om.status_code == 200
    assert "Raad voor de Kinderbescherming" in auditor.text and "geweigerd" in auditor.text
    assert politie.text.count("/console/entries/") >= 3  # opened, shared to veilig_thuis, refused to rvdk
    assert "/console/entries/" not in om.text and "Geen vermeldingen gevonden" in om.text
    rvdk_refusal = next(
        i
        for i, e in enumerate(_entries(console))
        if e.get("counterpart") == "rvdk" and e.get("action") == "share"
    )
    assert console.login("om", "privacy_officer").get(f"/console/entries/{rvdk_refusal}").status_code == 404
    assert console.login("rvdk", "privacy_officer").get(f"/console/entries/{rvdk_refusal}").status_code == 200


def test_a_bsn_is_searched_by_post_and_never_shown_logged_or_put_in_a_url(
    console: Console, caplog: object
) -> None:
    browser = console.login("politie", "privacy_officer")
    before = console.runtime.audit.size()
    with caplog.at_level(logging.DEBUG):  # type: ignore[attr-defined]
        r = browser.post(
            "/console/zoeken", data={"csrf": csrf(browser.get("/console/").text), "bsn": BSN_SLACHTOFFER}
        )
    assert r.status_code == 200
    assert BSN_SLACHTOFFER not in r.text and BSN_SLACHTOFFER not in str(r.url)
    assert all(BSN_SLACHTOFFER not in str(h.url) for h in r.history)
    assert "Resultaten voor het opgegeven BSN" in r.text and console.case_id[:8] in r.text
    assert BSN_SLACHTOFFER not in caplog.text  # type: ignore[attr-defined]
    pseudonym = console.runtime.pseudonymizer.pseudonym(BSN_SLACHTOFFER)
    lookup = _entries(console, before)[0]
    assert lookup["action"] == "audit.search" and lookup["subjects"] == [pseudonym]
    assert BSN_SLACHTOFFER not in json.dumps(_entries(console))
    bad = browser.post("/console/zoeken", data={"csrf": csrf(r.text), "bsn": "123456789"})
    assert bad.status_code == 400 and "geen geldig burgerservicenummer" in bad.text
    assert "123456789" not in bad.text


def test_filters_and_paging_by_cursor(tmp_path: object) -> None:
    rt = make_runtime(tmp_path)  # type: ignore[arg-type]
    try:
        ctx = CallContext(principal=_principal(), trace=from_header(None))
        rt.audit_append(
            [
                make_entry(
                    ctx,
                    type_="exchange",
                    action="share",
                    outcome="authorised" if i % 3 else "refused",
                    purpose="melding_behandelen",
                    information_type="melding",
                    counterpart="veilig_thuis",
                    decision={
                        "allowed": bool(i % 3),
                        "reasons": [],
                        "legalBasis": None,
                        "policyRevision": "r",
                    },
                )
                for i in range(120)
            ]
        )
        browser = TestClient(create_app(runtime=rt), base_url=BASE)
        token = sessions.mint_login_token(rt.db, "politie", "auditor")
        browser.get(f"/console/login?token={token}")
        seen = []
        url: str | None = "/console/?purpose=melding_behandelen"
        while url is not None:
            r = browser.get(url)
            assert r.status_code == 200
            seen += [int(i) for i in re.findall(r'href="/console/entries/(\d+)"', r.text)]
            m = re.search(r'href="(/console/\?[^"]*cursor=\d+)" rel="next"', r.text)
            url = m.group(1).replace("&amp;", "&") if m else None
        assert seen == list(range(120))
        refused = browser.get("/console/?purpose=melding_behandelen&decision=geweigerd").text
        assert refused.count("refused-row") == 40
        assert "✓ toegestaan" not in refused
        assert browser.get("/console/?purpose=geen_doel").status_code == 400
        assert browser.get("/console/?from=gisteren").status_code == 400
    finally:
        rt.close()


def _principal():  # type: ignore[no-untyped-def]
    from gateway.auth import Principal

    return Principal(client_id="politie-system", agency="politie", role="agency_system", scopes=frozenset())


def test_an_entry_shows_dutch_reasons_basis_and_a_verified_proof(console: Console) -> None:
    browser = console.login()
    entries = _entries(console)
    refused = next(i for i, e in enumerate(entries) if e.get("counterpart") == "rvdk")
    allowed = next(i for i, e in enumerate(entries) if e.get("counterpart") == "veilig_thuis")
    r = browser.get(f"/console/entries/{refused}")
    assert r.status_code == 200 and "geweigerd" in r.text and "Geverifieerd" in r.text
    assert "Redenen" in r.text and " is not " not in r.text  # the reasons in Dutch, not the logged English
    ok = browser.get(f"/console/entries/{allowed}").text
    assert "Wmo 2015 art. 5.2.6" in ok and "niet geverifieerd" in ok  # data.json: verified false
    assert "Fysieke veiligheid herstellen" in ok
    assert "Search the processing log" in browser.get("/console/?lang=en").text


def test_a_changed_entry_is_shown_unverified(tmp_path: object) -> None:
    rt = make_runtime(tmp_path)  # type: ignore[arg-type]
    try:
        ctx = CallContext(principal=_principal(), trace=from_header(None))
        rt.audit_append(
            [make_entry(ctx, type_="exchange", action="share", outcome="authorised") for _ in range(5)]
        )
        rt.audit.checkpoint()
        drop_triggers(rt.db)
        with rt.db.begin() as conn:
            conn.execute(
                sa.text("UPDATE audit_entries SET leaf_data = :d WHERE idx = 2"),
                {
                    "d": json.dumps(
                        {"action": "share", "actor": {"agency": "politie"}, "outcome": "x"}
                    ).encode()
                },
            )
        browser = TestClient(create_app(runtime=rt), base_url=BASE)
        browser.get(f"/console/login?token={sessions.mint_login_token(rt.db, 'politie', 'auditor')}")
        r = browser.get("/console/entries/2")
        assert r.status_code == 200 and "NIET geverifieerd" in r.text
        assert "Geverifieerd:" in browser.get("/console/entries/1").text
    finally:
        rt.close()


def test_the_case_picture_marks_refusals_in_more_than_colour(console: Console) -> None:
    r = console.login().get(f"/console/cases/{console.case_id}")
    assert r.status_code == 200
    svg = r.text[r.text.index("<svg") : r.text.index("</svg>")]
    assert "<title" in svg and "<desc" in svg
    refused = re.findall(r'<g class="exchange refused">.*?</g>', svg, re.S)
    allowed = re.findall(r'<g class="exchange allowed">.*?</g>', svg, re.S)
    assert len(refused) == 1 and "stroke-dasharray" in refused[0] and "GEWEIGERD" in refused[0]
    assert len(allowed) == 1 and "stroke-dasharray" not in allowed[0]
    assert "Tijdlijn" in r.text and "Zaak geopend" in r.text


def test_every_page_view_about_a_case_or_entry_is_logged(console: Console) -> None:
    browser = console.login("politie", "privacy_officer")
    before = console.runtime.audit.size()
    browser.get(f"/console/cases/{console.case_id}")
    browser.get("/console/entries/1")
    views = _entries(console, before)
    assert [v["action"] for v in views] == ["console.case", "console.entry"]
    pseudonyms = {console.runtime.pseudonymizer.pseudonym(BSN_SLACHTOFFER)}
    assert all(v["type"] == "audit" and v["caseId"] == console.case_id for v in views)
    assert pseudonyms <= set(views[0]["subjects"])  # type: ignore[arg-type]
    assert views[0]["actor"] == {"agency": "politie", "clientId": "console:console-link"}
    assert browser.get("/console/cases/bestaat-niet").status_code == 404
    assert console.runtime.audit.size() == before + 2  # a case that does not exist is not logged


def test_errors_are_dutch_pages_never_a_traceback(console: Console) -> None:
    browser = console.login()
    for path, status, words in [
        ("/console/bestaat-niet", 404, "Niet gevonden"),
        ("/console/entries/abc", 404, "Niet gevonden"),
        ("/console/entries/999999", 404, "Niet gevonden"),
        ("/console/?from=gisteren", 400, "Ongeldige invoer"),
        ("/console/?cursor=99999999", 404, "bestaat niet"),
    ]:
        r = browser.get(path)
        assert r.status_code == status and words in r.text, path
        assert r.headers["content-type"].startswith("text/html") and "Traceback" not in r.text
    assert browser.put("/console/").status_code == 405


def test_integrity_runs_a_verification_with_progress_and_keeps_its_outcome(console: Console) -> None:
    browser = console.login()
    page = browser.get("/console/integriteit")
    assert "Laatste ondertekende controlepunt" in page.text
    r = browser.post("/console/integriteit/controle", data={"csrf": csrf(page.text)})
    assert r.status_code == 200
    runner = console.client.app.routes  # the console app's runner is on the mounted app's state
    mounted = next(m for m in runner if getattr(m, "path", "") == "/console")
    assert mounted.app.state.verifications.wait(60)  # type: ignore[attr-defined]
    done = browser.get("/console/integriteit").text
    assert "In orde" in done and 'http-equiv="refresh"' not in done


def test_console_link_prints_a_one_time_url(tmp_path: object) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "console-link",
            "--agency",
            "politie",
            "--role",
            "privacy_officer",
            "--url",
            BASE,
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"http://127\.0\.0\.1:8000/console/login\?token=[\w-]{40,}", result.stdout)
    bad = CliRunner().invoke(
        cli, ["console-link", "--agency", "politie", "--role", "admin", "--data-dir", str(tmp_path)]
    )
    assert bad.exit_code == 2
