"""A real browser on a real gateway: Debian's Chromium, headless, driven by Playwright for Python.

The browser is the one ``apt-get install chromium`` puts on the path (``make setup`` and ``.ci/run``
install it), launched by its path: Playwright's own browser download (``playwright install``) is never
used, and a missing Chromium fails these tests rather than skipping them. One browser for the package; one
gateway per module, served by uvicorn on a free loopback port, with one case whose melding went to
Veilig Thuis (allowed) and to the Raad voor de Kinderbescherming (refused).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from gateway.app import create_app
from gateway.console import mint_login_token
from gateway.runtime import Runtime
from tests.console.conftest import BASE, make_runtime, share_case
from tests.live import reserve_socket, serve

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
"""How long one browser action may take at most (a hang guard, not a wait)."""


@pytest.fixture(scope="package")  # closed when tests/browser is done: no event loop left to other tests
def browser() -> Iterator[Browser]:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("no chromium on the PATH: `apt-get install -y chromium` (make setup does it)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@dataclass
class Site:
    """The served gateway, its runtime and the case it holds."""

    base: str
    runtime: Runtime
    case_id: str

    def login(self, browser: Browser, agency: str = "veilig_thuis", role: str = "auditor") -> Page:
        """A fresh browser context, logged in by a one-time link; on the search page."""
        context = new_context(browser, self.base)
        page = context.new_page()
        token = mint_login_token(self.runtime.db, agency, role)
        page.goto(f"{self.base}/console/login?token={token}")
        assert page.url == f"{self.base}/console/", page.url
        return page


def new_context(browser: Browser, base: str, **kw: object) -> BrowserContext:
    context = browser.new_context(  # a Dutch browser: date fields as dd-mm-jjjj, times in Dutch time
        base_url=base,
        viewport={"width": 1280, "height": 900},
        locale="nl-NL",
        timezone_id="Europe/Amsterdam",
        **kw,  # type: ignore[arg-type]
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    rt = make_runtime(Path(tmp_path_factory.mktemp("browser")))
    app = create_app(runtime=rt)
    case_id = share_case(rt, TestClient(app, base_url=BASE))
    rt.audit.checkpoint()  # so the entries' proofs have a signed checkpoint to be checked against
    sock = reserve_socket()
    with serve(app, sock=sock) as base:
        yield Site(base, rt, case_id)
    rt.close()
