"""The console in Chromium: login by link, a search by BSN, an entry's proof, a case's picture, the
reports as downloads, the keyboard alone, axe-core's checks, and (on request) the docs' screenshots.

``VEILIG_DELEN_SCREENSHOTS=1`` (``make screenshots``) also writes docs/console/*.png.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Site, new_context
from tests.console.conftest import BSN_SLACHTOFFER

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
SHOTS = os.environ.get("VEILIG_DELEN_SCREENSHOTS") == "1"
AXE = Axe()


def shot(page: Page, name: str) -> None:
    """Save the whole page as docs/console/<name>.png when screenshots are asked for."""
    if SHOTS:
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical WCAG 2.1 A/AA findings on the page, one line each."""
    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    result = AXE.run(page, options={**options, "resultTypes": ["violations"]})
    found = result.response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def test_login_search_by_bsn_entry_proof_and_case_picture(site: Site, browser: Browser) -> None:
    page = site.login(browser)
    expect(page.locator("h1")).to_have_text("Zoeken in het verwerkingslogboek")
    page.fill("#bsn", BSN_SLACHTOFFER)
    page.press("#bsn", "Enter")  # the form submits from the keyboard
    expect(page.locator("#resultaten")).to_be_visible()
    rows = page.locator("table.results tbody tr")
    assert rows.count() >= 2
    expect(page.locator("tr.refused-row").first).to_contain_text(re.compile("geweigerd", re.I))
    html = page.content()
    assert BSN_SLACHTOFFER not in html
    assert BSN_SLACHTOFFER not in page.url
    assert page.input_value("#bsn") == ""
    assert serious_violations(page) == []
    shot(page, "zoeken")

    page.locator("tr.refused-row td a").first.click()
    expect(page).to_have_url(re.compile(r"/console/entries/\d+$"))
    proof = page.locator("section.proof")
    expect(proof).to_have_class(re.compile(r"\bproof-ok\b"))
    expect(proof).to_contain_text("Geverifieerd")
    expect(page.locator("ul.reasons li").first).to_be_visible()  # the refusal's reason, in Dutch
    assert serious_violations(page) == []
    shot(page, "vermelding")

    page.goto(f"/console/cases/{site.case_id}")
    svg = page.locator(".picture svg")
    expect(svg).to_be_visible()
    expect(svg.locator("g.exchange.refused text")).to_contain_text("GEWEIGERD")
    assert svg.locator("g.exchange.refused [stroke-dasharray]").count() == 1
    assert svg.locator("g.exchange:not(.refused)").count() >= 1
    box = svg.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert serious_violations(page) == []
    shot(page, "zaak")
    page.context.close()


def test_reports_download_as_pdf_and_csv(site: Site, browser: Browser) -> None:
    page = site.login(browser, "politie", "privacy_officer")
    page.get_by_role("link", name="Rapportages").click()
    expect(page.locator("h1")).to_have_text("Rapportages")
    assert serious_violations(page) == []
    shot(page, "rapportages")
    page.fill("#rep-bsn", BSN_SLACHTOFFER)
    with page.expect_download() as pdf_download:
        page.press("#rep-bsn", "Enter")  # Enter takes the form's first button: PDF
    pdf = pdf_download.value
    assert re.fullmatch(r"inzage-\d{8}-\d{4}\.pdf", pdf.suggested_filename)
    assert Path(pdf.path()).read_bytes().startswith(b"%PDF")
    assert BSN_SLACHTOFFER not in page.content()

    page.fill("#rep-case", site.case_id)
    with page.expect_download() as csv_download:
        page.locator("form[action$='/rapportages/zaak'] button[value=csv]").click()
    csv = csv_download.value
    assert re.fullmatch(r"dossier-\d{8}-\d{4}\.csv", csv.suggested_filename)
    text = Path(csv.path()).read_bytes().decode("utf-8")
    headings = "Datum en tijd;Handeling;Door;Van;Aan;Soort informatie;Doel;Grondslag;Besluit;Redenen"
    assert text.startswith("\ufeff" + headings)
    assert "Delen geweigerd" in text

    page.fill("#rep-bsn", "123456780")  # not a BSN (elfproef): a Dutch error, the number not shown back
    page.press("#rep-bsn", "Enter")
    expect(page.locator(".error-summary")).to_contain_text("geen geldig burgerservicenummer")
    assert "123456780" not in page.content()
    page.context.close()


def test_keyboard_only_skip_link_nav_form_and_visible_focus(site: Site, browser: Browser) -> None:
    page = site.login(browser)

    def focused() -> dict[str, str]:
        return page.evaluate(
            """() => { const e = document.activeElement; const s = getComputedStyle(e);
                return {tag: e.tagName, id: e.id, text: (e.textContent || '').trim(), cls: e.className,
                        href: e.getAttribute('href') || '', outline: s.outlineStyle,
                        width: s.outlineWidth, shadow: s.boxShadow}; }"""
        )

    order = []
    for _ in range(12):
        page.keyboard.press("Tab")
        now = focused()
        order.append(now)
        assert now["outline"] == "solid" and now["width"] == "3px", f"focus not visible on {now}"
        if now["id"] == "bsn":
            break
    assert order[0]["cls"] == "skip" and order[0]["href"] == "#inhoud"
    texts = [o["text"] for o in order]
    assert texts.index("Zoeken") < texts.index("Integriteit") < texts.index("Rapportages")
    assert order[-1]["id"] == "bsn", "Tab never reached the search form"
    # The skip link moves the focus to the main content.
    page.keyboard.press("Shift+Tab")
    page.goto(f"{site.base}/console/integriteit")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "inhoud"
    # A search by keyboard: type a case id, Enter.
    page.goto(f"{site.base}/console/")
    page.focus("#caseId")
    page.keyboard.type(site.case_id)
    page.keyboard.press("Enter")
    expect(page.locator("#resultaten")).to_be_visible()
    assert page.locator("table.results tbody tr").count() >= 2
    page.context.close()


def test_integrity_and_login_pages_pass_axe(site: Site, browser: Browser) -> None:
    page = site.login(browser)
    page.goto("/console/integriteit")
    page.get_by_role("button", name="Volledige controle starten").click()
    done = page.locator("section[aria-labelledby=controle] .badge.ok")
    expect(done).to_be_visible(timeout=30_000)  # the page refreshes itself until the run is done
    assert serious_violations(page) == []
    shot(page, "integriteit")
    page.context.close()

    stranger = new_context(browser, site.base).new_page()
    stranger.goto("/console/")
    expect(stranger.locator("h1")).to_have_text("Inloggen")
    assert serious_violations(stranger) == []
    stranger.goto("/console/login?token=used-or-made-up")
    expect(stranger.locator("h1")).not_to_have_text("Zoeken in het verwerkingslogboek")
    stranger.context.close()


def test_the_api_docs_render_without_any_other_host(site: Site, browser: Browser) -> None:
    context = new_context(browser, site.base)
    elsewhere: list[str] = []

    def only_here(route, request) -> None:  # type: ignore[no-untyped-def]
        if request.url.startswith(site.base):
            route.continue_()
        else:
            elsewhere.append(request.url)
            route.abort()

    context.route("**/*", only_here)
    page = context.new_page()
    page.goto("/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Veilig Delen gateway")
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() > 10
    assert elsewhere == []
    context.close()


@pytest.mark.parametrize("lang", ["en"])
def test_english_is_one_click_away(site: Site, browser: Browser, lang: str) -> None:
    page = site.login(browser)
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.get_by_role("link", name="Reports")).to_be_visible()
    page.context.close()


def test_the_decision_table_and_its_diff_pass_axe(site: Site, browser: Browser) -> None:
    from tests.console.test_decision_table import archive_modified_copy

    modified = archive_modified_copy(site.runtime)
    page = site.login(browser, "politie", "privacy_officer")
    page.get_by_role("link", name="Beslistabel").click()
    expect(page.locator("h1")).to_have_text("Beslistabel")
    if SHOTS:
        DOCS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS / "beslistabel.png"))  # the first screen: the full table is long
    row = page.locator("#rij-melding--veilig_thuis--rvdk")
    expect(row).to_contain_text("✓ geverifieerd")
    row.locator("summary").click()  # the steps open without JavaScript
    expect(row.locator("ul.steps li").first).to_be_visible()
    assert serious_violations(page) == []
    # The table fits the window: no column is cut off at the right.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.select_option("#van", site.runtime.policy.current.revision)
    page.select_option("#naar", modified)
    page.get_by_role("button", name="Vergelijken").click()
    expect(page.locator("#verschil-samenvatting")).to_have_text("1 rij gewijzigd, 0 toegevoegd, 0 vervallen.")
    expect(page.locator("tr.changed-row")).to_have_count(1)
    expect(page.locator("tr.changed-row td.changed")).to_have_count(2)
    assert serious_violations(page) == []
    shot(page, "beslistabel-verschil")
    page.context.close()
