"""Serving the API documentation: the page at `/docs`, its assets under `/docs/static/`.

Both come from the package's `static/` directory through `importlib.resources` (a wheel works
as well as a checkout). The Content-Security-Policy is the dashboard's: scripts, styles and
fetches from this origin only, nothing inline. The script writes every string of the OpenAPI
document as `textContent`, never as markup.
"""

from __future__ import annotations

from fastapi import FastAPI

from darktower.gc.dashboard import CONTENT_SECURITY_POLICY
from darktower.gc.static_page import mount_static_page

__all__ = ["API_DOCS_CSP", "API_DOCS_PATH", "API_DOCS_STATIC_PATH", "mount_api_docs"]

API_DOCS_PATH = "/docs"
API_DOCS_STATIC_PATH = "/docs/static"
# The same rules as the dashboard: the page only reads this GC's /openapi.json and, from the
# try-it forms, calls this GC's API.
API_DOCS_CSP = CONTENT_SECURITY_POLICY

_PACKAGE = __package__ or "darktower.gc.api_docs"


def mount_api_docs(app: FastAPI) -> None:
    """Serve the API documentation on `app`: `GET /docs` and `GET /docs/static/...`.

    `app` must be built with `docs_url=None` (FastAPI's CDN-backed page would shadow this
    one) and serve its OpenAPI document at `/openapi.json`, which the page fetches."""
    mount_static_page(
        app,
        package=_PACKAGE,
        page="docs.html",
        path=API_DOCS_PATH,
        static_path=API_DOCS_STATIC_PATH,
        csp=API_DOCS_CSP,
        name="api_docs",
        extra_headers={"Referrer-Policy": "no-referrer"},
    )
