"""Serving the API documentation: the page at `/docs`, its assets under `/docs/static/`.

Both come from the package's `static/` directory through `importlib.resources` (a wheel works
as well as a checkout). The Content-Security-Policy is the dashboard's: scripts, styles and
fetches from this origin only, nothing inline. The script writes every string of the OpenAPI
document as `textContent`, never as markup.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from darktower.gc.dashboard import CONTENT_SECURITY_POLICY

__all__ = ["API_DOCS_CSP", "API_DOCS_PATH", "API_DOCS_STATIC_PATH", "mount_api_docs"]

API_DOCS_PATH = "/docs"
API_DOCS_STATIC_PATH = "/docs/static"
# The same rules as the dashboard: the page only reads this GC's /openapi.json and, from the
# try-it forms, calls this GC's API.
API_DOCS_CSP = CONTENT_SECURITY_POLICY

_PACKAGE = __package__ or "darktower.gc.api_docs"


def _page() -> str:
    return resources.files(_PACKAGE).joinpath("static", "docs.html").read_text("utf-8")


def mount_api_docs(app: FastAPI) -> None:
    """Serve the API documentation on `app`: `GET /docs` and `GET /docs/static/...`.

    `app` must be built with `docs_url=None` (FastAPI's CDN-backed page would shadow this
    one) and serve its OpenAPI document at `/openapi.json`, which the page fetches."""
    page = _page()

    @app.get(API_DOCS_PATH, include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": API_DOCS_CSP,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    app.mount(
        API_DOCS_STATIC_PATH,
        StaticFiles(packages=[(_PACKAGE, "static")]),
        name="api-docs-static",
    )
