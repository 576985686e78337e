"""``/v1/docs``: Swagger UI for the API, served by the gateway itself so it works on a closed network.

FastAPI's own docs page loads Swagger UI's script and stylesheet (and a favicon) from public CDNs; an
agency's network often reaches none of them. Here the same page (`get_swagger_ui_html`) points at the
files of the ``swagger-ui-bundle-v2`` package (Swagger UI 5, Apache-2.0, kept by the Connexion
maintainers), served under ``/v1/docs/``; the online validator badge is switched off, so the page asks
nothing of any other host.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
"""The files of the package the page needs, and their media types; nothing else is served."""

DOCS = "/v1/docs"


def install(app: FastAPI, openapi_url: str = "/v1/openapi.json") -> None:
    """Serve the docs page at ``/v1/docs`` and its three files below it."""
    folder = Path(str(swagger_ui_path))

    @app.get(DOCS, include_in_schema=False)
    async def _docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{DOCS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None, "defaultModelsExpandDepth": 0},
        )

    @app.get(DOCS + "/{name}", include_in_schema=False)
    async def _asset(name: str) -> FileResponse:
        media = ASSETS.get(name)
        if media is None:
            raise HTTPException(status_code=404)
        # The files change only with the package: a day in a browser's cache spares 1.5 MB per visit.
        cache = {"Cache-Control": "public, max-age=86400"}
        return FileResponse(folder / name, media_type=media, headers=cache)
